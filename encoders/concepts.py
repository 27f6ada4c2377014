"""Words → ImageNet classes, through WordNet, for text search on an image classifier's head.

EfficientNet-Lite0's head scores 1,000 ImageNet classes, each a WordNet synset. A word names every
synset that has it as a lemma; a synset covers every class at or below it in the hypernym tree, so
"dog" covers the 118 dog breeds and "vehicle" cars, trucks and boats. The hierarchy is read from
`data/imagenet_concepts.json`, built at development time from WordNet 3.0 by
`data/build_imagenet_concepts.py`: nothing is downloaded or read from WordNet at run time.

Matching, per query: lower-cased words, the longest run of up to four words that is a lemma wins
("hot dog" before "dog"), a plural falls back to its singular, and a few filler words ("a", "the",
"photo of") are skipped. Where a word is the first (head) name of one of its synsets, only those
senses count: "dog" means dog.n.01, not the frankfurter whose last name is "dog". The matched
classes are the union over the query's words. A word that matches nothing is an error naming it
and the nearest concept names, never an empty success.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.errors import ConceptNotFoundError

DATA = Path(__file__).resolve().parent / "data" / "imagenet_concepts.json"
NUM_CLASSES = 1000
MAX_PHRASE = 4
# The default least score of a word query: 1 % of the classifier's probability on the concept. The
# encoder's default (a cosine between images, 0.3) would hide photos where the concept is present
# but not the main subject.
CONCEPT_MIN_SCORE = 0.01
FILLER = frozenset("a an the of and or with in on at some my photo photos picture pictures image images".split())
_WORD = re.compile(r"[a-z0-9][a-z0-9'\-.]*")


@dataclass(frozen=True)
class ConceptMatch:
    classes: tuple[int, ...]  # class indices, ascending
    concepts: tuple[str, ...]  # the synsets matched, e.g. ("dog.n.01",)

    def indicator(self) -> np.ndarray:
        """(1000,) float32, 1 on the matched classes: its dot product with an image's class
        probabilities is the probability mass on the concept."""
        out = np.zeros(NUM_CLASSES, dtype=np.float32)
        out[list(self.classes)] = 1.0
        return out


@dataclass(frozen=True)
class ConceptIndex:
    class_names: tuple[str, ...]
    synset_classes: dict[str, tuple[int, ...]]
    lemma_synsets: dict[str, tuple[str, ...]]  # lemma → its synsets, head senses only where any

    def match(self, text: str) -> ConceptMatch:
        words = _WORD.findall(text.lower())
        synsets: list[str] = []
        unknown: list[str] = []
        i = 0
        while i < len(words):
            for length in range(min(MAX_PHRASE, len(words) - i), 0, -1):
                found = self._lookup(" ".join(words[i : i + length]))
                if found:
                    synsets.extend(found)
                    i += length
                    break
            else:
                if words[i] not in FILLER:
                    unknown.append(words[i])
                i += 1
        if unknown or not synsets:
            raise self._not_found(text, unknown or words)
        concepts = tuple(dict.fromkeys(synsets))
        classes = sorted({c for name in concepts for c in self.synset_classes[name]})
        return ConceptMatch(classes=tuple(classes), concepts=concepts)

    def _lookup(self, phrase: str) -> tuple[str, ...]:
        for candidate in _singulars(phrase):
            if found := self.lemma_synsets.get(candidate):
                return found
        return ()

    def _not_found(self, text: str, unknown: list[str]) -> ConceptNotFoundError:
        close = sorted({near for word in unknown for near in difflib.get_close_matches(word, self.lemma_synsets, n=5)})
        shown = ", ".join(repr(w) for w in unknown) or repr(text)
        hint = f" Close concepts: {', '.join(close)}." if close else ""
        return ConceptNotFoundError(
            f"No concept matched {shown}: this album's encoder knows the 1,000 ImageNet concepts (and the WordNet "
            f"words above them, such as 'dog', 'vehicle', 'food') only.{hint} Search with an example image instead, "
            "or switch the album to a CLIP, OpenCLIP or SigLIP encoder for free text.",
            extra={"unknown": unknown, "close": close},
        )


def _singulars(phrase: str) -> list[str]:
    out = [phrase]
    if phrase.endswith("ies"):
        out.append(phrase[:-3] + "y")
    if phrase.endswith("es"):
        out.append(phrase[:-2])
    if phrase.endswith("s") and not phrase.endswith("ss"):
        out.append(phrase[:-1])
    return out


@functools.cache
def concept_index() -> ConceptIndex:
    data = json.loads(DATA.read_text())
    synset_classes = {name: tuple(entry["classes"]) for name, entry in data["concepts"].items()}
    head: dict[str, list[str]] = {}
    other: dict[str, list[str]] = {}
    for name, entry in data["concepts"].items():
        for position, lemma in enumerate(entry["lemmas"]):
            (head if position == 0 else other).setdefault(lemma.lower(), []).append(name)
    lemma_synsets = {lemma: tuple(head.get(lemma) or other[lemma]) for lemma in {*head, *other}}
    return ConceptIndex(class_names=tuple(c["name"] for c in data["classes"]), synset_classes=synset_classes,
                        lemma_synsets=lemma_synsets)
