"""Vision-language models for vision RAG: the query image and labelled evidence crops in, a class
(flag), an explanation and the raw transcript out. See docs/encoders.md, "Vision-language models".

Importing this package never imports torch or transformers (the web tier imports it); `get_vlm`
loads a local model's backend on first use.
"""

from encoders.vlm.base import Evidence, VisionLanguageModel, VlmAnswer, VlmRequest
from encoders.vlm.errors import (
    VlmError,
    VlmNotAllowedError,
    VlmRequestError,
    VlmResponseError,
    VlmSpecError,
    VlmUnavailableError,
    VlmWeightsMissingError,
)
from encoders.vlm.registry import get_vlm, validate_vlm_spec

__all__ = [
    "Evidence",
    "VisionLanguageModel",
    "VlmAnswer",
    "VlmError",
    "VlmNotAllowedError",
    "VlmRequest",
    "VlmRequestError",
    "VlmResponseError",
    "VlmSpecError",
    "VlmUnavailableError",
    "VlmWeightsMissingError",
    "get_vlm",
    "validate_vlm_spec",
]
