"""The one interface every backend implements, and the NumPy math they share.

No torch at import time: the web tier imports this module for types and for the ensembling and
normalization math, which the search code also uses.

Patch features are a grid `(n, h, w, dim)`: `h × w` is the backbone's own token grid (7×7 for
EfficientNet-Lite0 at 224, 14×14 for a ViT-B/16 at 224), each cell L2-normalized in the same space
as `encode_images`' vectors, so a patch can be compared with a patch, and pooled into a region.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from django.conf import settings

from encoders.backends import TEXT
from encoders.errors import EncoderModalityError
from encoders.images import to_rgb

if TYPE_CHECKING:
    from PIL import Image

    from encoders.spec import EncoderSpec

# Prompt templates for text-query ensembling (docs/design-notes.md, "Text queries").
ENSEMBLE_TEMPLATES = ("a photo of {}", "a drawing of {}", "an illustration of {}", "a painting of {}", "{}")


def l2_normalize(vectors: np.ndarray, *, axis: int = -1) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=axis, keepdims=True)
    # A zero vector stays zero rather than turning into NaNs that poison every score.
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def ensemble_prompts(texts: Sequence[str], templates: Sequence[str] = ENSEMBLE_TEMPLATES) -> list[str]:
    """Every text in every template, text-major: [t0·p0, t0·p1, …, t1·p0, …]."""
    return [template.replace("{}", text) for text in texts for template in templates]


def ensemble_mean(template_vectors: np.ndarray, *, n_templates: int) -> np.ndarray:
    """(n·T, dim) text-major vectors → (n, dim): normalize each, mean per text, renormalize."""
    unit = l2_normalize(template_vectors)
    return l2_normalize(unit.reshape(-1, n_templates, unit.shape[-1]).mean(axis=1))


def siglip_calibrate(cos: np.ndarray, *, logit_scale: float, logit_bias: float) -> np.ndarray:
    """SigLIP's own probability for a text-image pair: sigmoid(cos · exp(logit_scale) + logit_bias)."""
    logits = np.asarray(cos, dtype=np.float64) * np.exp(logit_scale) + logit_bias
    return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


class Encoder(ABC):
    """A loaded model that turns images (and, where it can, texts) into unit vectors.

    Instances are shared between threads of a worker (the registry caches one per spec and
    device), so nothing here mutates after construction: per-call choices are arguments.
    """

    spec: EncoderSpec
    model_id: str  # "<spec>@sha256:<12 hex of the weights>": vectors of different model_ids never meet
    dim: int
    modalities: frozenset[str]
    default_min_score: float
    device: str
    supports_patches: bool = False  # whether patch_features has a token grid for this architecture

    # --- what backends implement -------------------------------------------------------------
    @abstractmethod
    def _embed_images(self, images: list[Image.Image]) -> np.ndarray:
        """One batch of RGB images → (n, dim) float32, not necessarily normalized."""

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        raise EncoderModalityError(f"Encoder {self.spec} is image-only: it cannot embed text.")

    def _patch_grid(self, images: list[Image.Image]) -> np.ndarray:
        raise EncoderModalityError(f"Encoder {self.spec} has no patch features for this architecture.")

    # --- the contract ------------------------------------------------------------------------
    def encode_images(self, images: Sequence[Image.Image], *, batch_size: int | None = None) -> np.ndarray:
        """`batch_size` overrides LOUPE_ENCODE_BATCH_SIZE for this call: the indexer fixes the forward
        batch shape itself (see workers/pipeline.py) and must not have it split again."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return l2_normalize(self._batched(self._embed_images, [to_rgb(image) for image in images], batch_size))

    def encode_texts(self, texts: Sequence[str], *, ensemble: bool = False) -> np.ndarray:
        if TEXT not in self.modalities:
            raise EncoderModalityError(
                f"Encoder {self.spec} is image-only: text queries need a CLIP, OpenCLIP or SigLIP encoder."
            )
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if not ensemble:
            return l2_normalize(self._batched(self._embed_texts, list(texts)))
        vectors = self._batched(self._embed_texts, ensemble_prompts(texts))
        return ensemble_mean(vectors, n_templates=len(ENSEMBLE_TEMPLATES))

    def calibrate_similarity(self, cos: np.ndarray) -> np.ndarray:
        """Map text-image cosines to the score the album's threshold is set in. Identity here."""
        return np.asarray(cos, dtype=np.float32)

    def patch_features(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, 0, 0, self.dim), dtype=np.float32)
        return l2_normalize(self._batched(self._patch_grid, [to_rgb(image) for image in images]))

    def _batched(self, embed, items: list, batch_size: int | None = None) -> np.ndarray:
        size = max(1, int(batch_size or settings.LOUPE_ENCODE_BATCH_SIZE))
        return np.concatenate([embed(items[i : i + size]) for i in range(0, len(items), size)])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_id} dim={self.dim} device={self.device}>"
