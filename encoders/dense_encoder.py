"""Image-only backbones (`dense:dinov2-small`, `dense:sapiens2-<size>`, `dense:efficientnet-lite0`).

A backbone turns a batch of images into a feature grid `(n, h, w, c)`; `encode_images` pools the
grid into one global-mean vector per image. The album's other poolings (masked, regions) are NumPy
math over the same raw grid (`encoders/pooling.py`, applied by `encoders/pooled_encoder.py`), so
they are per call and never encoder state: one loaded backbone serves albums that pool differently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from encoders.backends import get_backend
from encoders.base import Encoder, l2_normalize
from encoders.catalog import is_sapiens2
from encoders.errors import EncoderModalityError
from encoders.images import to_rgb
from encoders.pooling import resize_coverage
from encoders.sapiens2 import Sapiens2Backbone
from encoders.spec import EncoderSpec
from encoders.torch_runtime import inference, model_id_for, to_numpy
from encoders.weights import resolve_weights


class Backbone(Protocol):
    # Channel mean and std of `pixels` (0-1 scale): undoing them on a transformed mask gives the
    # mask as the model sees it (same resize and crop as the image).
    pixel_mean: tuple[float, float, float]
    pixel_std: tuple[float, float, float]

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB images → the normalized (n, 3, H, W) model input on the device."""

    def feature_grid(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB images → (n, h, w, c) features on the device."""


class Dinov2Backbone:
    """DINOv2 (and any transformers ViT with a CLS token and registers) from a save_pretrained dir."""

    def __init__(self, path: Path, *, device: str):
        # transformers takes seconds to import: only DINOv2-style backbones need it
        from transformers import AutoImageProcessor, AutoModel

        self.model = AutoModel.from_pretrained(path, local_files_only=True).to(device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        self.device = device
        config = self.model.config
        self.patch_size = int(config.patch_size)
        # Prefix tokens (CLS, registers) carry no location; only patch tokens form the grid.
        self.prefix_tokens = 1 + int(getattr(config, "num_register_tokens", 0) or 0)
        self.pixel_mean = tuple(self.processor.image_mean)
        self.pixel_std = tuple(self.processor.image_std)
        # The share of a square input the token grid sees: resize the short side, then crop.
        crop, size = getattr(self.processor, "crop_size", None) or {}, getattr(self.processor, "size", None) or {}
        if getattr(self.processor, "do_center_crop", False) and crop.get("height") and size.get("shortest_edge"):
            self.view_fraction = min(1.0, crop["height"] / size["shortest_edge"])
        else:
            self.view_fraction = 1.0

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=images, return_tensors="pt")["pixel_values"].to(self.device)

    def feature_grid(self, images: list[Image.Image]) -> torch.Tensor:
        pixels = self.pixels(images)
        tokens = self.model(pixel_values=pixels).last_hidden_state[:, self.prefix_tokens :]
        h, w = pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size
        return tokens.reshape(tokens.shape[0], h, w, tokens.shape[-1])


class EfficientNetLite0Backbone:
    """ImageNet EfficientNet-Lite0 in timm; the grid is the last feature map (7×7×1280 at 224)."""

    def __init__(self, path: Path, *, device: str):
        import timm.data  # timm: only the EfficientNet backbone needs it (0.3 s to import)

        from encoders import efficientnet_lite0  # imports timm, as above

        # channels_last: measured 1.9x faster on this 2-core CPU (32 images, 7.0 s -> 3.7 s), vectors
        # within 3e-7 of the default layout.
        self.model = efficientnet_lite0.load_model(path).to(device, memory_format=torch.channels_last)
        # timm's own eval transform for this architecture: bicubic resize to 256, centre crop 224,
        # ImageNet mean/std.
        config = timm.data.resolve_data_config({}, model=self.model)
        self.transform = timm.data.create_transform(**config)
        self.pixel_mean, self.pixel_std = tuple(config["mean"]), tuple(config["std"])
        self.view_fraction = float(config.get("crop_pct", 1.0)) if config.get("crop_mode", "center") == "center" else 1.0
        self.device = device

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        batch = torch.stack([self.transform(image) for image in images]).to(self.device)
        return batch.contiguous(memory_format=torch.channels_last)

    def feature_grid(self, images: list[Image.Image]) -> torch.Tensor:
        return self.model.forward_features(self.pixels(images)).permute(0, 2, 3, 1)

    def class_probabilities(self, pooled: torch.Tensor) -> torch.Tensor:
        """(n, 1280) mean-pooled grid → (n, 1000) ImageNet class probabilities. timm's head is the
        same average pool then the linear classifier (dropout is off in eval), so this equals the
        model's own output without a second forward pass."""
        return torch.softmax(self.model.get_classifier()(pooled), dim=-1)


def mean_pool(grid: torch.Tensor) -> torch.Tensor:
    return grid.float().mean(dim=(1, 2))


class DenseEncoder(Encoder):
    supports_pooling = True  # masked and regions pooling (encoders/pooled_encoder.py) need the raw grid

    def __init__(self, spec: EncoderSpec, *, device: str):
        weights = resolve_weights(spec)
        self.backbone: Backbone = _load_backbone(spec, weights.path, device=device)
        self.supports_patches = True
        self.spec = spec
        self.device = device
        backend = get_backend(spec.backend)
        self.modalities = backend.modalities
        self.default_min_score = backend.default_min_score
        self.model_id = model_id_for(spec, weights.checksum_files)
        self.dim = int(self._embed_images([Image.new("RGB", (64, 64))]).shape[1])

    @property
    def patch_view_fraction(self) -> float:
        """How much of a square image the patch grid covers (centre crop of the transform): vision
        RAG pads by this much so that patch boxes match the grid exactly (search/rag/patches.py)."""
        return float(getattr(self.backbone, "view_fraction", 1.0))

    def _embed_images(self, images: list[Image.Image]) -> np.ndarray:
        with inference(self.device):
            return to_numpy(mean_pool(self.backbone.feature_grid(images)))

    @property
    def has_concepts(self) -> bool:
        """Whether the backbone keeps its ImageNet classifier head (EfficientNet-Lite0): its class
        probabilities make concept search by words (encoders/concepts.py)."""
        return hasattr(self.backbone, "class_probabilities")

    def encode_images_with_concepts(self, images: Sequence[Image.Image], *, batch_size: int | None = None
                                    ) -> tuple[np.ndarray, np.ndarray]:
        """Unit vectors (n, dim) and class probabilities (n, 1000) from one forward pass per batch."""
        if not self.has_concepts:
            raise EncoderModalityError(f"Encoder {self.spec} has no classifier head: no concepts to score.")
        both = self._batched(self._embed_with_concepts, [to_rgb(image) for image in images], batch_size)
        return l2_normalize(both[:, : self.dim]), both[:, self.dim :]

    def concepts_of_grid(self, grid: np.ndarray) -> np.ndarray:
        """(n, h, w, c) raw grid (`raw_grid`) → (n, 1000) class probabilities of the whole images."""
        with torch.inference_mode():
            pooled = torch.from_numpy(np.ascontiguousarray(grid, dtype=np.float32)).to(self.device).mean(dim=(1, 2))
            return to_numpy(self.backbone.class_probabilities(pooled).float())

    def _embed_with_concepts(self, images: list[Image.Image]) -> np.ndarray:
        with inference(self.device):
            pooled = mean_pool(self.backbone.feature_grid(images))
            return to_numpy(torch.cat([pooled, self.backbone.class_probabilities(pooled).float()], dim=1))

    def _patch_grid(self, images: list[Image.Image]) -> np.ndarray:
        with inference(self.device):
            return to_numpy(self.backbone.feature_grid(images))

    def raw_grid(self, images: Sequence[Image.Image], *, batch_size: int | None = None) -> np.ndarray:
        """(n, h, w, c) tokens before any normalization: what the poolings average."""
        if not images:
            return np.zeros((0, 0, 0, self.dim), dtype=np.float32)
        return self._batched(self._patch_grid, [to_rgb(image) for image in images], batch_size)

    def cell_coverage(self, masks: Sequence[Image.Image | None], grid_hw: tuple[int, int]) -> list[np.ndarray | None]:
        """Masks in image pixels (mode L, the image's size, 255 = foreground) → the foreground share
        of each grid cell, through the backbone's own resize and crop (a mask is transformed as an
        image, then its normalization undone)."""
        present = [i for i, mask in enumerate(masks) if mask is not None]
        out: list[np.ndarray | None] = [None] * len(masks)
        if not present:
            return out
        with torch.inference_mode():
            pixels = self.backbone.pixels([masks[i].convert("RGB") for i in present]).float()[:, 0]
        values = to_numpy(pixels) * self.backbone.pixel_std[0] + self.backbone.pixel_mean[0]
        for i, mask in zip(present, values):
            out[i] = resize_coverage(mask, *grid_hw)
        return out


def _load_backbone(spec: EncoderSpec, path: Path, *, device: str) -> Backbone:
    if spec.model == "efficientnet-lite0":
        return EfficientNetLite0Backbone(path, device=device)
    if is_sapiens2(spec.model):
        return Sapiens2Backbone(path, device=device)
    return Dinov2Backbone(path, device=device)
