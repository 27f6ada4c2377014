"""Where each backend's weights live, found offline first; each family's rules are its layout
(encoders/layouts/), which this module asks through the backend table.

Order: `LOUPE_MODELS_DIR` (layout below, also in docs/encoders.md), then the libraries' own caches
(only looked into, never filled), then the hub — and the hub only when `LOUPE_ALLOW_DOWNLOADS` is
true, an operator runs `manage.py encoders fetch`, or a model fetch job brings the default text
encoder (`auto`, encoders/fetch.py). Nothing here imports torch unless asked to
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
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from encoders.backends import layout_of
from encoders.errors import EncoderWeightsMissing
from encoders.spec import EncoderSpec

HF_WEIGHT_NAMES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


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
    return Path(settings.LOUPE_MODELS_DIR)


def downloads_allowed() -> bool:
    """Whether any encoder may fetch its weights where it loads them (`LOUPE_ALLOW_DOWNLOADS=true`)."""
    return settings.LOUPE_ALLOW_DOWNLOADS is True


def default_fetch_allowed() -> bool:
    """Whether the default text encoder is fetched in the background when missing (`auto` or `true`)."""
    return settings.LOUPE_ALLOW_DOWNLOADS in (True, "auto")


def expected_location(spec: EncoderSpec) -> WeightsLocation:
    return layout_of(spec.backend).location(spec)


def find_weights(spec: EncoderSpec, *, import_libraries: bool = False) -> ResolvedWeights | None:
    """Offline lookup: the models dir, then the libraries' caches. Never downloads.

    `import_libraries` allows lookups that must import a backend's library (open_clip's tag table
    imports torch); the web tier leaves it off and may then miss weights that sit only in a cache.
    """
    return layout_of(spec.backend).find(spec, import_libraries=import_libraries)


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
    message = (
        f"Weights for encoder {spec} are missing: put {', '.join(location.files)} in {location.directory}/ "
        f"(i.e. {location.describe()}){layout_of(spec.backend).where_else(spec)}. Downloads are "
        f"{'on' if downloads_allowed() else 'off (LOUPE_ALLOW_DOWNLOADS)'}; see docs/encoders.md."
    )
    if reason:
        message += f" {reason}"
    return EncoderWeightsMissing(
        message, spec=str(spec), files=[str(location.directory / n) for n in location.files], directory=str(location.directory)
    )


def fetch_weights(spec: EncoderSpec) -> ResolvedWeights:
    """Download into the models dir. Fails with EncoderWeightsMissing when there is no network."""
    try:
        return layout_of(spec.backend).fetch(spec)
    except EncoderWeightsMissing:
        raise
    except Exception as error:  # the hub clients raise many kinds; all mean "not fetched"
        raise weights_missing_error(spec, reason=f"Fetching failed: {type(error).__name__}: {error}") from error


def custom_model_present(spec: EncoderSpec) -> bool:
    """For names outside the catalogs: is there something in the models dir that defines them?"""
    return layout_of(spec.backend).custom_present(spec)


def open_clip_config_file(spec: EncoderSpec) -> Path:
    return layout_of("open-clip").config_file(spec)


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


# --- Hugging Face-format directories, shared by the layouts ----------------------------------------


def is_hf_dir(directory: Path) -> bool:
    return (directory / "config.json").is_file() and any((directory / n).is_file() for n in HF_WEIGHT_NAMES)


def hf_weight_files(directory: Path) -> tuple[Path, ...]:
    return tuple(sorted(p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") and p.is_file()))


def hf_cached_snapshot(hf_id: str) -> Path | None:
    from huggingface_hub import snapshot_download  # huggingface_hub: worker tier only (requirements/worker.txt)

    try:
        path = Path(snapshot_download(hf_id, local_files_only=True))
    except Exception:  # not cached (LocalEntryNotFoundError) or a malformed id: either way, not here
        return None
    return path if is_hf_dir(path) else None


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
