"""What the rest of Loupe calls: validate a spec, list the choices, get a loaded encoder.

Importing this module never imports torch; only `get_encoder` does, by importing the backend's
module named in the backend table (`encoders/backends.py`). Web processes validate and list;
workers load.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from django.conf import settings

from config.heap import freeze_long_lived
from encoders.backends import TEXT, Backend, backend_prefixes, get_backend, layout_of, register_backend
from encoders.catalog import catalog_specs, has_concepts
from encoders.errors import EncoderNotAllowed, EncoderSpecError
from encoders.spec import EncoderSpec
from encoders.threads import apply_once
from encoders.weights import expected_location, find_weights, models_dir

if TYPE_CHECKING:
    from encoders.base import Encoder

TEXT_EMBEDDING = "embedding"
TEXT_CONCEPTS = "concepts"

__all__ = [
    "Backend",
    "register_backend",
    "validate_spec",
    "get_encoder",
    "known_specs",
    "spec_modalities",
    "text_search",
    "default_min_score",
    "spec_dim",
    "default_encoder_spec",
    "default_text_encoder",
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
    """What a query to an album on this encoder may hold. `text` includes concept search: an
    image-only backbone with an ImageNet head takes words through WordNet (`text_search`)."""
    parsed = _parsed(spec)
    modalities = get_backend(parsed.backend).modalities
    return modalities | {TEXT} if has_concepts(parsed.backend, parsed.model) else modalities


def text_search(spec: str | EncoderSpec) -> str | None:
    """How this encoder searches by words: `embedding` (a text tower: CLIP, OpenCLIP, SigLIP),
    `concepts` (the ImageNet classes of its head, through WordNet: encoders/concepts.py), or None."""
    parsed = _parsed(spec)
    if TEXT in get_backend(parsed.backend).modalities:
        return TEXT_EMBEDDING
    return TEXT_CONCEPTS if has_concepts(parsed.backend, parsed.model) else None


def ensemble_by_default(spec: str | EncoderSpec) -> bool:
    """Whether a new album on this encoder ensembles its text queries over prompt templates."""
    return _backend(spec).ensemble_by_default and text_search(spec) == TEXT_EMBEDDING


def default_min_score(spec: str | EncoderSpec) -> float:
    return _backend(spec).default_min_score


def spec_dim(spec: str | EncoderSpec) -> int | None:
    """The vector width, when it can be told from names and config files alone."""
    parsed = spec if isinstance(spec, EncoderSpec) else EncoderSpec.parse(spec)
    return layout_of(parsed.backend).dim(parsed)


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
                "modalities": sorted(spec_modalities(spec)),
                "text_search": text_search(spec),
                "dim": spec_dim(spec),
                "default_min_score": backend.default_min_score,
                "weights_present": found is not None,
                "weights_path": str(found.path) if found else None,
                "weights_location": location.describe(),
                "allowed": not allowed or text in allowed,
            }
        )
    return rows


def default_encoder_spec(*, arriving: Callable[[EncoderSpec], bool] | None = None) -> str:
    """The encoder for new albums: the first of `LOUPE_DEFAULT_ENCODERS` whose weights this server
    has (so a fresh install indexes with no file placed by hand) or, asked through `arriving`, whose
    weights are on their way (a model fetch job); else the first entry."""
    candidates = list(settings.LOUPE_DEFAULT_ENCODERS)
    for text in candidates:
        spec = validate_spec(text)
        if find_weights(spec, import_libraries=False) is not None or (arriving is not None and arriving(spec)):
            return str(spec)
    return candidates[0]


def default_text_encoder() -> EncoderSpec | None:
    """The first of `LOUPE_DEFAULT_ENCODERS` with a text tower: what a model fetch job brings when
    its weights are missing (concept search does not count: it is the fallback)."""
    for text in settings.LOUPE_DEFAULT_ENCODERS:
        try:
            spec = validate_spec(text)
        except EncoderSpecError:
            continue  # not allowed here, or unknown: album creation names the problem when it gets there
        if text_search(spec) == TEXT_EMBEDDING:
            return spec
    return None


def get_encoder(spec: str | EncoderSpec, *, device: str | None = None) -> Encoder:
    """The process's one loaded encoder for (spec, device); loads it on first use. Thread-safe."""
    from encoders.torch_runtime import resolve_device  # imports torch; the web tier validates specs here

    # Every query task asks again: once loaded, the spec as asked finds its encoder without being
    # validated again (validation lists open_clip's architecture files: ~1 ms of a query worker's
    # GIL per task). The settings validation reads are part of the key, so changing them still counts.
    as_asked = ("as-asked", str(spec), device or settings.LOUPE_DEVICE, str(settings.LOUPE_MODELS_DIR),
                tuple(settings.LOUPE_ALLOWED_ENCODERS))
    if (loaded := _encoders.get(as_asked)) is not None:
        return loaded
    parsed = validate_spec(spec)
    resolved_device = resolve_device(device or settings.LOUPE_DEVICE)
    # The models dir is part of the key: pointing it elsewhere must not serve the old weights.
    key = (str(parsed), resolved_device, str(models_dir()))
    with _cache_lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one load per key; other specs load in parallel
        if key not in _encoders:
            apply_once()
            _encoders[key] = _import_encoder_factory(get_backend(parsed.backend))(parsed, device=resolved_device)
            # The model (and torch, imported with it) lives as long as the process: out of the
            # garbage collector's walks, which otherwise cost a query worker tens of milliseconds each.
            freeze_long_lived()
        _encoders[as_asked] = _encoders[key]
        return _encoders[key]


# Keyed by (spec, device, models dir), and by the spec as asked (above) once that has loaded.
_encoders: dict[tuple, Encoder] = {}
_key_locks: dict[tuple[str, str, str], threading.Lock] = {}
_cache_lock = threading.Lock()


def _import_encoder_factory(backend: Backend):
    module_name, _, attribute = backend.encoder_path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _parsed(spec: str | EncoderSpec) -> EncoderSpec:
    return spec if isinstance(spec, EncoderSpec) else EncoderSpec.parse(spec)


def _backend(spec: str | EncoderSpec) -> Backend:
    return get_backend(_parsed(spec).backend)


def _allowed_specs() -> set[str]:
    return {str(EncoderSpec.parse(s)) for s in settings.LOUPE_ALLOWED_ENCODERS if s.strip()}


def _check_model_known(spec: EncoderSpec) -> None:
    layout_of(spec.backend).check_known(spec)


def _specs_in_models_dir() -> list[str]:
    root = models_dir()
    found = [text for prefix in backend_prefixes() for text in layout_of(prefix).specs_in(root)]
    valid = []
    for text in found:
        try:
            valid.append(str(EncoderSpec.parse(text)))
        except EncoderSpecError:
            continue  # a stray file with a name no spec can hold: not offered
    return valid


def backends() -> list[str]:
    return backend_prefixes()
