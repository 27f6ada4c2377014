"""SigLIP and SigLIP 2 through transformers (`siglip:google/siglip2-base-patch16-224`).

`AutoModel`/`AutoProcessor` pick SiglipModel or Siglip2Model (NaFlex) from the checkpoint's
config, so one class serves both; the processor is the checkpoint's own.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel, AutoProcessor

from encoders.backends import get_backend
from encoders.base import Encoder, siglip_calibrate
from encoders.spec import EncoderSpec
from encoders.torch_runtime import inference, model_id_for, to_numpy
from encoders.weights import resolve_weights


class SiglipEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, *, device: str):
        weights = resolve_weights(spec)
        self.model = AutoModel.from_pretrained(weights.path, local_files_only=True).to(device).eval()
        self.processor = AutoProcessor.from_pretrained(weights.path, local_files_only=True)
        config = self.model.config
        # SigLIP's text tower was trained on max-length padding; shorter padding changes vectors.
        self.max_length = int(config.text_config.max_position_embeddings)
        self.logit_scale = float(self.model.logit_scale.detach().float().cpu())
        self.logit_bias = float(self.model.logit_bias.detach().float().cpu())
        self.is_naflex = config.model_type == "siglip2"
        self.supports_patches = not self.is_naflex
        self.spec = spec
        self.device = device
        self.dim = int(getattr(config.text_config, "projection_size", None) or config.text_config.hidden_size)
        backend = get_backend(spec.backend)
        self.modalities = backend.modalities
        self.default_min_score = backend.default_min_score
        self.model_id = model_id_for(spec, weights.checksum_files)

    def _image_inputs(self, images: list[Image.Image]) -> dict:
        # The image processor directly: Siglip2Processor's call overrides the checkpoint's
        # patch_size/max_num_patches with hard-coded defaults.
        return self.processor.image_processor(images=images, return_tensors="pt").to(self.device)

    def _embed_images(self, images: list[Image.Image]) -> np.ndarray:
        with inference(self.device):
            return to_numpy(_pooled(self.model.get_image_features(**self._image_inputs(images))))

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        inputs = self.processor.tokenizer(
            texts, padding="max_length", max_length=self.max_length, truncation=True, return_tensors="pt"
        ).to(self.device)
        with inference(self.device):
            return to_numpy(_pooled(self.model.get_text_features(**inputs)))

    def calibrate_similarity(self, cos: np.ndarray) -> np.ndarray:
        return siglip_calibrate(cos, logit_scale=self.logit_scale, logit_bias=self.logit_bias)

    def _patch_grid(self, images: list[Image.Image]) -> np.ndarray:
        if not self.supports_patches:
            # NaFlex keeps each image's aspect ratio, so grids differ within a batch.
            return super()._patch_grid(images)
        with inference(self.device):
            tokens = self.model.vision_model(**self._image_inputs(images)).last_hidden_state
        n, count, width = tokens.shape
        side = math.isqrt(count)
        return to_numpy(tokens.reshape(n, side, side, width))


def _pooled(output) -> torch.Tensor:
    # transformers 5 returns BaseModelOutputWithPooling from get_*_features; 4.x returned the tensor.
    return output.pooler_output if hasattr(output, "pooler_output") else output
