"""What can go wrong between a VLM spec and an answer.

Part of the encoder error family, so the API's one error handler (`config/errors.py`) maps them
without importing torch: a bad spec or request is the caller's problem (400); missing weights, an
endpoint that is down or answers garbage are the server's (503, 502) — `http_status` says which
where `EncoderError`'s own two-way split (spec → 400, weights → 503) does not.
"""

from __future__ import annotations

from encoders.errors import EncoderError, EncoderSpecError, EncoderWeightsMissing


class VlmError(EncoderError):
    code = "vlm_error"


class VlmSpecError(VlmError, EncoderSpecError):
    """A VLM spec that does not parse: unknown backend, empty model, a URL we will not call."""

    code = "vlm_spec_invalid"


class VlmNotAllowedError(VlmSpecError):
    """A valid spec this server's `LOUPE_ALLOWED_VLMS` leaves out."""

    code = "vlm_not_allowed"


class VlmRequestError(VlmError, ValueError):
    """A request no backend can answer: no classes, evidence of a class not in the list,
    sampling parameters out of range."""

    code = "vlm_request_invalid"


class VlmWeightsMissingError(VlmError, EncoderWeightsMissing):
    """The model directory is absent or incomplete; the message names the directory and the files."""

    code = "vlm_weights_missing"


class VlmUnavailableError(VlmError):
    """The endpoint could not be reached, or kept failing (429, 5xx), after the retries."""

    code = "vlm_unavailable"
    http_status = 503


class VlmResponseError(VlmError):
    """The endpoint answered, but not with a usable chat completion (a 4xx, or malformed JSON)."""

    code = "vlm_response_invalid"
    http_status = 502
