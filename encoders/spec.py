"""`backend:model[/weights]` — the string an album stores, parsed once into a frozen value.

How the part after the colon splits is the backend's call: OpenCLIP names an architecture and a
pretrained tag (`ViT-B-32/laion2b_s34b_b79k`), while the CLIP package's own names and Hugging Face
ids carry slashes that belong to the model (`ViT-B/32`, `google/siglip2-base-patch16-224`).
Splitting per backend is what lets `str(EncoderSpec.parse(s)) == s` hold for all of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from encoders.backends import backend_prefixes, describe_backends, get_backend
from encoders.errors import EncoderSpecError

MAX_SPEC_LENGTH = 200
# Model names become paths under the models directory: one safe segment per slash, no "..", no
# absolute paths, no whitespace. `@` and `+` appear in real names (ViT-L/14@336px).
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")


def split_spec(text: object, *, max_length: int, error) -> tuple[str, str, str]:
    """`backend:rest` → (the text stripped, the backend lowercased, the rest), for encoder and VLM
    specs alike; `error(text, why)` makes the caller's exception."""
    if not isinstance(text, str) or not text.strip():
        raise error(text, "it is empty")
    text = text.strip()
    if len(text) > max_length:
        raise error(text, f"it is longer than {max_length} characters")
    prefix, colon, rest = text.partition(":")
    if not colon:
        raise error(text, "it has no 'backend:' prefix")
    return text, prefix.strip().lower(), rest


def safe_segments(value: str) -> bool:
    """Whether every '/'-separated part of `value` is a safe path segment (it becomes a folder
    under the models directory): letters, digits and . _ @ + -, no leading dot, no '..'."""
    return bool(value) and all(_SEGMENT.match(s) and s not in (".", "..") for s in value.split("/"))


@dataclass(frozen=True)
class EncoderSpec:
    backend: str
    model: str
    weights: str | None = None

    @classmethod
    def parse(cls, text: str) -> EncoderSpec:
        text, prefix, rest = split_spec(text, max_length=MAX_SPEC_LENGTH, error=_spec_error)
        backend = get_backend(prefix)
        if backend is None:
            raise _spec_error(text, f"{prefix!r} is not a known backend")
        if backend.weights_in_spec:
            model, slash, weights = rest.partition("/")
            if not slash or not weights:
                raise _spec_error(text, f"{prefix} needs {backend.grammar}")
            _check_segments(text, model)
            _check_segments(text, weights)
            if "/" in weights:
                raise _spec_error(text, f"{prefix} takes one '/' between architecture and pretrained tag")
            return cls(backend=prefix, model=model, weights=weights)
        _check_segments(text, rest)
        return cls(backend=prefix, model=rest)

    def __str__(self) -> str:
        tail = f"{self.model}/{self.weights}" if self.weights is not None else self.model
        return f"{self.backend}:{tail}"


def _check_segments(text: str, value: str) -> None:
    if not value:
        raise _spec_error(text, "the model name is empty")
    for segment in value.split("/"):
        if not safe_segments(segment):
            raise _spec_error(
                text,
                f"{segment!r} is not a valid name part (letters, digits and . _ @ + - ; no spaces, "
                "no leading dot or slash)",
            )


def _spec_error(text: object, why: str) -> EncoderSpecError:
    return EncoderSpecError(
        f"Invalid encoder spec {text!r}: {why}. Expected backend:model[/weights] with a backend among "
        f"{', '.join(backend_prefixes())} ({describe_backends()}).",
        extra={"spec": text if isinstance(text, str) else None, "backends": backend_prefixes()},
    )
