"""Models Loupe knows by name, with what can be said about them before any weights load.

This is what the album form's dropdown and `manage.py encoders list` show. A spec outside the
catalog can still be valid (an OpenCLIP architecture with any pretrained tag, a SigLIP directory an
operator placed in the models dir); the catalog only makes the common choices one click away.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class OpenAIClipModel:
    name: str  # the CLIP package's name
    filename: str  # what `clip.load` downloads (the URL's basename)
    dim: int


# Mirrors `clip.clip._MODELS` (a test checks they agree) so the web tier knows names and file
# names without importing the package, which imports torch.
OPENAI_CLIP_MODELS = {
    m.name: m
    for m in (
        OpenAIClipModel("RN50", "RN50.pt", 1024),
        OpenAIClipModel("RN101", "RN101.pt", 512),
        OpenAIClipModel("RN50x4", "RN50x4.pt", 640),
        OpenAIClipModel("RN50x16", "RN50x16.pt", 768),
        OpenAIClipModel("RN50x64", "RN50x64.pt", 1024),
        OpenAIClipModel("ViT-B/32", "ViT-B-32.pt", 512),
        OpenAIClipModel("ViT-B/16", "ViT-B-16.pt", 512),
        OpenAIClipModel("ViT-L/14", "ViT-L-14.pt", 768),
        OpenAIClipModel("ViT-L/14@336px", "ViT-L-14-336px.pt", 768),
    )
}


@dataclass(frozen=True)
class DenseModel:
    name: str
    dim: int
    hf_id: str | None  # where the Hugging Face cache or hub has it, when it comes from there
    # Keeps its ImageNet classifier head: words search it through WordNet concepts (encoders/concepts.py).
    concepts: bool = False


DENSE_MODELS = {
    m.name: m
    for m in (
        DenseModel("efficientnet-lite0", 1280, None, concepts=True),
        DenseModel("dinov2-small", 384, "facebook/dinov2-small"),
        DenseModel("dinov2-base", 768, "facebook/dinov2-base"),
        DenseModel("dinov2-large", 1024, "facebook/dinov2-large"),
        DenseModel("dinov2-giant", 1536, "facebook/dinov2-giant"),
    )
}

# Sapiens2 (Meta; pretrained on ~1B human images) is not redistributable here: an operator places a
# checkpoint under its own license at dense/sapiens2-<size>/model.safetensors (encoders/sapiens2.py).
# Any size name is accepted; the width and depth are read from the checkpoint itself.
SAPIENS2_NAME = re.compile(r"^sapiens2-\d+(\.\d+)?b$")
SAPIENS2_RESPONSIBLE_USE = (
    "Sapiens2's license forbids biometric processing and identifying or re-identifying individuals. Loupe "
    "offers similarity of pose, clothing and appearance within albums you own; it does not offer face or "
    "identity matching, and must not be used for it."
)


def has_concepts(backend: str, model: str) -> bool:
    """Whether words search this model through its classifier's ImageNet concepts."""
    return backend == "dense" and model in DENSE_MODELS and DENSE_MODELS[model].concepts


def is_sapiens2(model: str) -> bool:
    return bool(SAPIENS2_NAME.match(model))


def responsible_use_notice(spec: str) -> str | None:
    """What the album settings must say about a backbone's license, or None."""
    backend, _, model = spec.partition(":")
    return SAPIENS2_RESPONSIBLE_USE if backend == "dense" and is_sapiens2(model) else None


# Offered in the dropdown besides every OpenAI CLIP model and every dense backbone.
OPEN_CLIP_SPECS = (
    "open-clip:ViT-B-32/laion2b_s34b_b79k",
    "open-clip:ViT-B-16/laion2b_s34b_b88k",
    "open-clip:ViT-L-14/dfn2b_s39b",
    "open-clip:ViT-H-14/laion2b_s32b_b79k",
)
SIGLIP_SPECS = (
    "siglip:google/siglip-base-patch16-224",
    "siglip:google/siglip-so400m-patch14-384",
    "siglip:google/siglip2-base-patch16-224",
    "siglip:google/siglip2-so400m-patch14-384",
)


def catalog_specs() -> list[str]:
    return [
        *OPEN_CLIP_SPECS,
        *(f"openai-clip:{name}" for name in OPENAI_CLIP_MODELS),
        *SIGLIP_SPECS,
        *(f"dense:{name}" for name in DENSE_MODELS),
    ]
