"""What the rest of Loupe calls: validate a spec, list the choices, get a loaded encoder.

Importing this module never imports torch; only `get_encoder` does, by importing the backend's
module named in the backend table (`encoders/backends.py`). Web processes validate and list;
workers load.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from encoders.backends import Backend, backend_prefixes, get_backend, register_backend
from encoders.catalog import DENSE_MODELS, OPENAI_CLIP_MODELS, catalog_specs, is_sapiens2
from encoders.errors import EncoderNotAllowed, EncoderSpecError
from encoders.spec import EncoderSpec
from encoders.weights import custom_model_present, expected_location, find_weights, models_dir

if TYPE_CHECKING:
    from encoders.base import Encoder

__all__ = [
    "Backend",
    "register_backend",
    "validate_spec",
    "get_encoder",
    "known_specs",
    "spec_modalities",
    "default_min_score",
    "spec_dim",
    "default_encoder_spec",
]


def validate_spec(spec: str | EncoderSpec) -> EncoderSpec:
    """Parse, check the backend knows the model, and apply `LOUPE_ALLOWED_ENCODERS`. No weights load."""
    parsed = spec if isinstance(spec, EncoderSpec) else EncoderSpec.parse(spec)
    _check_model_known(parsed)
    allowed = _allowed_specs()
    if allowed and str(parsed) not in allowed:
        raise EncoderNotAllowed(
            f"Encoder {parsed} is not allowed on this server; allowed: {', '.join(sorted(allowed))}.",
            extra={"spec": str(parsed), "allowed": sorted(allowed)},
        )
    return parsed


def spec_modalities(spec: str | EncoderSpec) -> frozenset[str]:
    return _backend(spec).modalities


def default_min_score(spec: str | EncoderSpec) -> float:
    return _backend(spec).default_min_score


def spec_dim(spec: str | EncoderSpec) -> int | None:
    """The vector width, when it can be told from names and config files alone."""
    parsed = spec if isinstance(spec, EncoderSpec) else EncoderSpec.parse(spec)
    if parsed.backend == "openai-clip" and parsed.model in OPENAI_CLIP_MODELS:
        return OPENAI_CLIP_MODELS[parsed.model].dim
    if parsed.backend == "open-clip":
        config = _open_clip_config(parsed)
        return int(config["embed_dim"]) if config and "embed_dim" in config else None
    if parsed.backend == "dense" and parsed.model in DENSE_MODELS:
        return DENSE_MODELS[parsed.model].dim
    if parsed.backend in ("siglip", "dense"):
        config = _read_json(expected_location(parsed).directory / "config.json")
        text = config.get("text_config") or {}
        width = text.get("projection_size") or text.get("hidden_size") or config.get("hidden_size")
        return int(width) if width else None
    return None


def known_specs() -> list[dict]:
    """Every spec worth offering: the catalog plus whatever an operator placed in the models dir.

    `weights_present` looks in the models dir and the Hugging Face cache; OpenCLIP weights that sit
    only in open_clip's cache are found by workers but not reported here (that lookup imports torch).
    """
    allowed = _allowed_specs()
    rows = []
    for text in dict.fromkeys([*catalog_specs(), *_specs_in_models_dir()]):
        spec = EncoderSpec.parse(text)
        backend = get_backend(spec.backend)
        location = expected_location(spec)
        found = find_weights(spec, import_libraries=False)
        rows.append(
            {
                "spec": text,
                "backend": spec.backend,
                "modalities": sorted(backend.modalities),
                "dim": spec_dim(spec),
                "default_min_score": backend.default_min_score,
                "weights_present": found is not None,
                "weights_path": str(found.path) if found else None,
                "weights_location": location.describe(),
                "allowed": not allowed or text in allowed,
            }
        )
    return rows


def default_encoder_spec() -> str:
    """The encoder for new albums: the first of `LOUPE_DEFAULT_ENCODERS` whose weights this server
    has (so a fresh install indexes with no file placed by hand), else the first entry."""
    from django.conf import settings

    candidates = list(settings.LOUPE_DEFAULT_ENCODERS)
    for text in candidates:
        spec = validate_spec(text)
        if find_weights(spec, import_libraries=False) is not None:
            return str(spec)
    return candidates[0]


def get_encoder(spec: str | EncoderSpec, *, device: str | None = None) -> Encoder:
    """The process's one loaded encoder for (spec, device); loads it on first use. Thread-safe."""
    from django.conf import settings

    from encoders.torch_runtime import resolve_device

    parsed = validate_spec(spec)
    resolved_device = resolve_device(device or settings.LOUPE_DEVICE)
    # The models dir is part of the key: pointing it elsewhere must not serve the old weights.
    key = (str(parsed), resolved_device, str(models_dir()))
    with _cache_lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one load per key; other specs load in parallel
        if key not in _encoders:
            from encoders.threads import apply_once

            apply_once()
            _encoders[key] = _import_encoder_factory(get_backend(parsed.backend))(parsed, device=resolved_device)
        return _encoders[key]


_encoders: dict[tuple[str, str, str], Encoder] = {}
_key_locks: dict[tuple[str, str, str], threading.Lock] = {}
_cache_lock = threading.Lock()


def _import_encoder_factory(backend: Backend):
    module_name, _, attribute = backend.encoder_path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _backend(spec: str | EncoderSpec) -> Backend:
    parsed = spec if isinstance(spec, EncoderSpec) else EncoderSpec.parse(spec)
    return get_backend(parsed.backend)


def _allowed_specs() -> set[str]:
    from django.conf import settings

    return {str(EncoderSpec.parse(s)) for s in settings.LOUPE_ALLOWED_ENCODERS if s.strip()}


def _check_model_known(spec: EncoderSpec) -> None:
    if spec.backend == "openai-clip" and spec.model not in OPENAI_CLIP_MODELS and not custom_model_present(spec):
        raise EncoderSpecError(
            f"Invalid encoder spec {str(spec)!r}: the CLIP package has no model {spec.model!r}; known: "
            f"{', '.join(OPENAI_CLIP_MODELS)} (or a checkpoint at {expected_location(spec).describe()}).",
            extra={"spec": str(spec), "models": list(OPENAI_CLIP_MODELS)},
        )
    if spec.backend == "open-clip" and spec.model not in _open_clip_architectures() and not custom_model_present(spec):
        raise EncoderSpecError(
            f"Invalid encoder spec {str(spec)!r}: open_clip has no architecture {spec.model!r} (e.g. ViT-B-32, "
            f"ViT-L-14, ViT-SO400M-14-SigLIP), and {expected_location(spec).directory}/open_clip_config.json "
            "does not define it.",
            extra={"spec": str(spec)},
        )
    known_dense = spec.model in DENSE_MODELS or is_sapiens2(spec.model)
    if spec.backend == "dense" and not known_dense and not custom_model_present(spec):
        raise EncoderSpecError(
            f"Invalid encoder spec {str(spec)!r}: no dense backbone {spec.model!r}; known: {', '.join(DENSE_MODELS)}, "
            "sapiens2-<size> "
            f"(or a save_pretrained directory at {expected_location(spec).directory}).",
            extra={"spec": str(spec), "models": list(DENSE_MODELS)},
        )


def _open_clip_config_dir() -> Path | None:
    # find_spec locates the installed package without running its __init__ (which imports torch).
    found = importlib.util.find_spec("open_clip")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations))) / "model_configs"


def _open_clip_architectures() -> set[str]:
    directory = _open_clip_config_dir()
    return {p.stem for p in directory.glob("*.json")} if directory else set()


def _open_clip_config(spec: EncoderSpec) -> dict | None:
    custom = _read_json(expected_location(spec).directory / "open_clip_config.json")
    if custom:
        return custom.get("model_cfg", custom)
    directory = _open_clip_config_dir()
    return _read_json(directory / f"{spec.model}.json") if directory else None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _specs_in_models_dir() -> list[str]:
    root = models_dir()
    found = []
    for checkpoint in sorted((root / "openai-clip").glob("*.pt")):
        known = {m.filename: name for name, m in OPENAI_CLIP_MODELS.items()}
        found.append(f"openai-clip:{known.get(checkpoint.name, checkpoint.stem)}")
    for tag_dir in sorted((root / "open-clip").glob("*/*")):
        if tag_dir.is_dir():
            found.append(f"open-clip:{tag_dir.parent.name}/{tag_dir.name}")
    for config in sorted((root / "siglip").glob("**/config.json")):
        found.append(f"siglip:{config.parent.relative_to(root / 'siglip').as_posix()}")
    for backbone in sorted((root / "dense").glob("*")):
        if backbone.is_dir():
            found.append(f"dense:{backbone.name}")
    valid = []
    for text in found:
        try:
            valid.append(str(EncoderSpec.parse(text)))
        except EncoderSpecError:
            continue  # a stray file with a name no spec can hold: not offered
    return valid


def backends() -> list[str]:
    return backend_prefixes()
