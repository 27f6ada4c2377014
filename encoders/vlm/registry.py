"""Validate a VLM spec and get the process's loaded model for it.

Importing this never imports torch or transformers: `validate_vlm_spec` is for the web tier,
`get_vlm` imports the backend's module only when it is asked for that backend (the transformers
one on workers; the OpenAI-compatible client needs only httpx and may run anywhere).
"""

from __future__ import annotations

import importlib
import threading

from django.conf import settings

from encoders.vlm.base import VisionLanguageModel
from encoders.vlm.errors import VlmNotAllowedError
from encoders.vlm.spec import VlmSpec
from encoders.weights import models_dir

# Backend prefix → "module:class", imported on first use.
BACKEND_CLASSES = {
    "transformers": "encoders.vlm.transformers_backend:TransformersVlm",
    "openai": "encoders.vlm.openai_backend:OpenAICompatibleVlm",
}
REMOTE_DEVICE = "remote"  # the cache-key device of endpoint backends: nothing runs here


def validate_vlm_spec(spec: str) -> str:
    """The normalized spec (`str(VlmSpec.parse(spec))`), within `LOUPE_ALLOWED_VLMS`. Loads nothing."""
    normalized = str(VlmSpec.parse(spec))
    allowed = _allowed_specs()
    if allowed and normalized not in allowed:
        raise VlmNotAllowedError(
            f"VLM {normalized} is not allowed on this server; allowed: {', '.join(sorted(allowed))}.",
            extra={"spec": normalized, "allowed": sorted(allowed)},
        )
    return normalized


def get_vlm(spec: str, *, device: str | None = None) -> VisionLanguageModel:
    """The process's one VLM for (spec, device, models dir); loaded on first use. Thread-safe.

    A load that fails (missing files) is not cached: the next call looks again, so an operator can
    place the files without restarting workers.
    """
    parsed = VlmSpec.parse(validate_vlm_spec(spec))
    resolved_device = _resolve_device(parsed, device)
    # The models dir is part of the key: pointing it elsewhere must not serve the old weights.
    key = (str(parsed), resolved_device, str(models_dir()) if parsed.backend == "transformers" else "")
    with _cache_lock:
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one load per key; other specs load in parallel
        if key not in _models:
            factory = _import_backend(parsed.backend)
            _models[key] = factory(parsed, device=resolved_device)
        return _models[key]


_models: dict[tuple[str, str, str], VisionLanguageModel] = {}
_key_locks: dict[tuple[str, str, str], threading.Lock] = {}
_cache_lock = threading.Lock()


def _resolve_device(spec: VlmSpec, requested: str | None) -> str:
    if spec.backend != "transformers":
        return REMOTE_DEVICE

    from encoders.torch_runtime import resolve_device  # imports torch: only for local models

    return resolve_device(requested or settings.LOUPE_DEVICE)


def _import_backend(backend: str):
    module_name, _, attribute = BACKEND_CLASSES[backend].partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def _allowed_specs() -> set[str]:
    return {str(VlmSpec.parse(s)) for s in getattr(settings, "LOUPE_ALLOWED_VLMS", []) if s.strip()}
