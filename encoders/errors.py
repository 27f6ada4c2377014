"""What can go wrong between an album's `encoder_spec` and a vector.

Plain exceptions with a machine-readable `code` and a human `message`, so the API layer can map
them to its one error shape (spec errors → 400, weights missing → 503) without importing torch.
"""

from __future__ import annotations


class EncoderError(Exception):
    code = "encoder_error"

    def __init__(self, message: str, *, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


class EncoderSpecError(EncoderError, ValueError):
    """A spec string that does not parse, or names a backend or model nobody registered."""

    code = "encoder_spec_invalid"


class EncoderNotAllowed(EncoderSpecError):
    """A valid spec this server's `LOUPE_ALLOWED_ENCODERS` leaves out."""

    code = "encoder_not_allowed"


class EncoderWeightsMissing(EncoderError):
    """The weights for a valid spec are nowhere this server may look (and downloads are off)."""

    code = "encoder_weights_missing"

    def __init__(self, message: str, *, spec: str, files: list[str], directory: str):
        super().__init__(message, extra={"spec": spec, "files": files, "directory": directory})
        self.spec = spec
        self.files = files
        self.directory = directory


class EncoderModalityError(EncoderError, ValueError):
    """Asking an encoder for something it cannot do: text on an image-only backbone, patches on a
    pooled-only architecture."""

    code = "encoder_modality_unsupported"


class EncoderWeightsInvalid(EncoderError):
    """Weights that are present but do not fit the architecture (unreadable file, wrong key layout)."""

    code = "encoder_weights_invalid"


class ConceptNotFoundError(EncoderError, ValueError):
    """Query words that name none of the ImageNet concepts a classifier-head encoder knows."""

    code = "concept_not_found"
