"""The backend table: spec prefix → what the web tier may know about it without importing torch.

The encoder itself is named by a dotted path and imported only when a worker asks for vectors
(the pattern of transformers' `configuration_auto.py`). Registering a prefix twice is refused, so
a plugin cannot silently replace a built-in backend.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

IMAGE = "image"
TEXT = "text"
IMAGE_AND_TEXT = frozenset({IMAGE, TEXT})
IMAGE_ONLY = frozenset({IMAGE})

# Where an album's search threshold starts when the album leaves it empty. Chosen per score scale
# (docs/encoders.md, "Default thresholds"): cosine for CLIP-style towers, SigLIP's calibrated
# sigmoid probability for SigLIP, image-image cosine for image-only backbones.
CLIP_COSINE_MIN_SCORE = 0.2
SIGLIP_CALIBRATED_MIN_SCORE = 0.005
DENSE_COSINE_MIN_SCORE = 0.3


@dataclass(frozen=True)
class Backend:
    prefix: str
    encoder_path: str  # "module:attribute" of a callable (spec, *, device) -> Encoder
    modalities: frozenset[str]
    default_min_score: float
    weights_in_spec: bool  # True: "model/weights" splits at the first slash; False: the slash belongs to the model
    grammar: str  # shown in error messages
    # "module:Class" of its WeightsLayout (encoders/layouts/), torch-free, imported on first use. The
    # default is a Hugging Face-format directory under <models dir>/<prefix>/<model>/.
    layout_path: str = "encoders.layouts:WeightsLayout"
    # Prompt ensembling for text queries on new albums: on where it is the model's own practice
    # (SigLIP), off for CLIP-style towers until a labelled measurement shows it helps here.
    ensemble_by_default: bool = False


_BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> None:
    if backend.prefix in _BACKENDS:
        raise ValueError(f"Encoder backend {backend.prefix!r} is already registered ({_BACKENDS[backend.prefix]}).")
    _BACKENDS[backend.prefix] = backend


def get_backend(prefix: str) -> Backend | None:
    return _BACKENDS.get(prefix)


def layout_of(prefix: str):
    """The backend's WeightsLayout (one instance per backend)."""
    backend = _BACKENDS[prefix]
    if prefix not in _layouts:
        module, _, name = backend.layout_path.partition(":")
        _layouts[prefix] = getattr(importlib.import_module(module), name)(prefix)
    return _layouts[prefix]


_layouts: dict[str, object] = {}


def backend_prefixes() -> list[str]:
    return list(_BACKENDS)


def describe_backends() -> str:
    return "; ".join(f"{b.prefix}:{b.grammar}" for b in _BACKENDS.values())


register_backend(
    Backend(
        prefix="openai-clip",
        encoder_path="encoders.openai_clip_encoder:OpenAIClipEncoder",
        modalities=IMAGE_AND_TEXT,
        default_min_score=CLIP_COSINE_MIN_SCORE,
        weights_in_spec=False,
        grammar="<CLIP package model, e.g. ViT-B/32, RN50x4, ViT-L/14@336px>",
        layout_path="encoders.layouts.openai_clip:OpenAIClipWeights",
    )
)
register_backend(
    Backend(
        prefix="open-clip",
        encoder_path="encoders.open_clip_encoder:OpenClipEncoder",
        modalities=IMAGE_AND_TEXT,
        default_min_score=CLIP_COSINE_MIN_SCORE,
        weights_in_spec=True,
        grammar="<architecture>/<pretrained tag>, e.g. ViT-B-32/laion2b_s34b_b79k",
        layout_path="encoders.layouts.open_clip:OpenClipWeights",
    )
)
register_backend(
    Backend(
        prefix="siglip",
        encoder_path="encoders.siglip_encoder:SiglipEncoder",
        modalities=IMAGE_AND_TEXT,
        default_min_score=SIGLIP_CALIBRATED_MIN_SCORE,
        weights_in_spec=False,
        grammar="<Hugging Face id or directory under the models dir>, e.g. google/siglip2-base-patch16-224",
        layout_path="encoders.layouts.siglip:SiglipWeights",
        ensemble_by_default=True,
    )
)
register_backend(
    Backend(
        prefix="dense",
        encoder_path="encoders.dense_encoder:DenseEncoder",
        modalities=IMAGE_ONLY,
        default_min_score=DENSE_COSINE_MIN_SCORE,
        weights_in_spec=False,
        grammar="<backbone>, e.g. dinov2-small, sapiens2-1b, efficientnet-lite0",
        layout_path="encoders.layouts.dense:DenseWeights",
    )
)
