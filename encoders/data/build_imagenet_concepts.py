"""Build `imagenet_concepts.json`: the ImageNet-1k classes and the WordNet concepts above them.

Run at development time, never at run time (nothing is downloaded or read from WordNet when Loupe
serves a query):

    apt-get install wordnet-base          # Debian's WordNet 3.0 database, in /usr/share/wordnet
    pip install nltk==3.10.4              # its WordNet reader reads those files offline
    python encoders/data/build_imagenet_concepts.py [--wordnet /usr/share/wordnet]

Sources:
- class order: timm 1.0.31, `timm/data/_info/imagenet_synsets.txt` (the 1,000 ImageNet-1k WordNet
  ids in the order of the classifier's outputs; checked against the EfficientNet-Lite0 checkpoint
  on scikit-image's photos: chelsea → tabby cat, coffee → espresso). Copied here as `wnids` so that
  timm is not needed to read it.
- hierarchy and names: WordNet 3.0 (Princeton), Debian package `wordnet-base`.

Output: {"classes": [{"wnid", "name"}...1000], "concepts": {synset name: {"lemmas": [...],
"classes": [class indices under it]}}} for every synset that is a class or an ancestor of one
(hypernyms and instance hypernyms, transitively).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "imagenet_concepts.json"


def _timm_wnids() -> list[str]:
    import timm  # development-time only: the class order's source

    return (Path(timm.__file__).parent / "data/_info/imagenet_synsets.txt").read_text().split()


# WordNet 3.0's lexicographer files, lexnames(5WN). Debian's wordnet-base ships the database but not
# this index of it, which nltk's reader opens first; it is written next to links to the data files.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive "
    "noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity "
    "noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition "
    "verb.communication verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}


def _staged(wordnet_root: Path, staging: Path) -> Path:
    """The Debian files, copied into `staging/wordnet` (nltk refuses links that leave its root),
    with a `lexnames` file added."""
    target = staging / "wordnet"
    target.mkdir()
    for source in wordnet_root.iterdir():
        if source.is_file():
            shutil.copyfile(source, target / source.name)
    lines = [f"{i:02d}\t{name}\t{_CATEGORY[name.split('.')[0]]}" for i, name in enumerate(LEXNAMES)]
    (target / "lexnames").write_text("\n".join(lines) + "\n")
    return target


def build(wordnet_root: Path, wnids: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as staging:
        root = _staged(wordnet_root, Path(staging))
        # nltk ≥ 3.10 reads only below its data roots: the staging directory is made one.
        os.environ["NLTK_DATA"] = staging
        from nltk.corpus.reader.wordnet import WordNetCorpusReader  # a development-time package, not a requirement; after NLTK_DATA is set

        class Reader(WordNetCorpusReader):
            def map_wn(self, version="wordnet"):
                """No mapping to another WordNet (nltk would load its own downloaded copy to map
                multilingual data onto this one): these files are the only WordNet used."""
                return None

        return _concepts(Reader(str(root), None), wnids)


def _concepts(wordnet, wnids: list[str]) -> dict:
    concepts: dict[str, dict] = {}
    classes = []
    for index, wnid in enumerate(wnids):
        synset = wordnet.synset_from_pos_and_offset(wnid[0], int(wnid[1:]))
        classes.append({"wnid": wnid, "name": synset.lemma_names()[0].replace("_", " ")})
        closure = {synset, *synset.closure(lambda s: s.hypernyms() + s.instance_hypernyms())}
        for node in closure:
            entry = concepts.setdefault(node.name(), {"lemmas": [n.replace("_", " ") for n in node.lemma_names()],
                                                      "classes": []})
            entry["classes"].append(index)
    return {"source": "WordNet 3.0 (Debian wordnet-base) over timm's ImageNet-1k class order",
            "classes": classes, "concepts": dict(sorted(concepts.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wordnet", type=Path, default=Path("/usr/share/wordnet"))
    args = parser.parse_args()
    data = build(args.wordnet, _timm_wnids())
    OUTPUT.write_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False) + "\n")
    print(f"{OUTPUT}: {len(data['classes'])} classes, {len(data['concepts'])} concepts, {OUTPUT.stat().st_size} bytes")


if __name__ == "__main__":
    main()
