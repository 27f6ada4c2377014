"""OpenAI CLIP through the `clip` package (`openai-clip:ViT-B/32`, `openai-clip:RN50x4`, …)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import clip
import numpy as np
import torch
from PIL import Image

from encoders.backends import get_backend
from encoders.base import Encoder
from encoders.spec import EncoderSpec
from encoders.torch_runtime import Bf16Copy, inference, model_id_for, runs_bf16_copy, to_numpy
from encoders.weights import resolve_weights


class OpenAIClipEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, *, device: str):
        weights = resolve_weights(spec)
        model, preprocess = _load(weights.path, device=device)
        self.model = model.eval()
        self.preprocess = preprocess
        # ViTs, not ResNets; clip's LayerNorm runs in float32 whatever its input.
        self._visual_bf16 = Bf16Copy(model.visual, keep_float32=(clip.model.LayerNorm,)) if hasattr(model.visual, "proj") else None
        self.supports_patches = hasattr(model.visual, "proj")  # ViTs; ResNets pool by attention
        self.spec = spec
        self.device = device
        self.dim = int(model.text_projection.shape[1])
        backend = get_backend(spec.backend)
        self.modalities = backend.modalities
        self.default_min_score = backend.default_min_score
        self.model_id = model_id_for(spec, weights.checksum_files)

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.preprocess(image) for image in images]).to(self.device, self.model.dtype)

    def _embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if self._visual_bf16 is not None and runs_bf16_copy(self.device):
            return to_numpy(self._visual_bf16(self._pixels(images)))  # CLIP.encode_image is visual(pixels)
        with inference(self.device):
            return to_numpy(self.model.encode_image(self._pixels(images)))

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        tokens = clip.tokenize(texts, context_length=self.model.context_length, truncate=True).to(self.device)
        with inference(self.device):
            return to_numpy(self.model.encode_text(tokens))

    def _patch_grid(self, images: list[Image.Image]) -> np.ndarray:
        visual = self.model.visual
        if not self.supports_patches:
            return super()._patch_grid(images)
        with inference(self.device):
            x = visual.conv1(self._pixels(images))
            n, width, h, w = x.shape
            x = x.reshape(n, width, h * w).permute(0, 2, 1)
            cls = visual.class_embedding.to(x.dtype).expand(n, 1, width)
            x = torch.cat([cls, x], dim=1) + visual.positional_embedding.to(x.dtype)
            x = visual.transformer(visual.ln_pre(x).permute(1, 0, 2)).permute(1, 0, 2)
            # The class token's head (ln_post, proj) applied to every patch token puts patches in
            # the image vectors' space, as MaskCLIP does.
            patches = visual.ln_post(x[:, 1:, :]) @ visual.proj
            return to_numpy(patches.reshape(n, h, w, -1))


def _load(path: Path, *, device: str):
    """The released checkpoints are TorchScript archives, which `clip.load(path)` reads without
    downloading. A plain state dict (a fine-tune, the tests' tiny models) goes through the package's
    own `build_model` and transform: `clip.load` would try it as TorchScript first and then re-read
    the consumed stream without seeking back (EOFError)."""
    if _is_torchscript(path):
        return clip.load(str(path), device=device, jit=False)
    model = clip.model.build_model(torch.load(path, map_location="cpu", weights_only=True)).to(device)
    if device == "cpu":
        model.float()  # build_model converts to fp16, which CPUs run slowly and imprecisely
    return model, clip.clip._transform(model.visual.input_resolution)


def _is_torchscript(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())
    except zipfile.BadZipFile:
        return False
