"""OpenCLIP (`open-clip:ViT-B-32/laion2b_s34b_b79k`) through open_clip's own factory."""

from __future__ import annotations

import numpy as np
import open_clip
import torch
from PIL import Image

from encoders.backends import get_backend
from encoders.base import Encoder
from encoders.spec import EncoderSpec
from encoders.torch_runtime import Bf16Copy, cpu_bf16_enabled, inference, model_id_for, runs_bf16_copy, to_numpy
from encoders.weights import open_clip_config_file, resolve_weights

# Preprocessing and activation settings a pretrained tag carries (open_clip applies them itself
# only when it downloads by tag; given a local file we pass them on).
_TAG_OVERRIDES = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation", "resize_mode": "image_resize_mode"}


class OpenClipEncoder(Encoder):
    def __init__(self, spec: EncoderSpec, *, device: str):
        weights = resolve_weights(spec)
        custom_config = open_clip_config_file(spec)
        if custom_config.is_file():
            # An architecture open_clip does not ship: the directory is in the hub's own format
            # (open_clip_config.json beside the checkpoint), which open_clip reads as `local-dir:`.
            model_name, kwargs = f"local-dir:{custom_config.parent}", {}
        else:
            model_name, kwargs = spec.model, {"pretrained": str(weights.path), **_tag_kwargs(spec)}
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, device=device, **kwargs)
        self.model = model.eval()
        if device == "cpu" and cpu_bf16_enabled() and isinstance(model, open_clip.CLIP):
            _text_tower_to_bf16(model)
        # CLIP and CustomTextCLIP encode an image as their visual tower's output, nothing more; only
        # ViT towers gain from a bf16 copy (encoders/torch_runtime.py: Bf16Copy).
        vit_tower = isinstance(model.visual, open_clip.transformer.VisionTransformer)
        encodes_by_visual = isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP))
        self._visual_bf16 = (Bf16Copy(model.visual, keep_float32=(open_clip.transformer.LayerNormFp32,))
                             if vit_tower and encodes_by_visual else None)
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(model_name)
        self.supports_patches = vit_tower and model.visual.proj is not None
        self.spec = spec
        self.device = device
        # Towers differ in where they keep the output width (text_projection, a timm head, an HF
        # projection); one blank image through the real path reads it the same way for all.
        self.dim = int(self._embed_images([Image.new("RGB", (32, 32))]).shape[1])
        backend = get_backend(spec.backend)
        self.modalities = backend.modalities
        self.default_min_score = backend.default_min_score
        self.model_id = model_id_for(spec, weights.checksum_files)

    def _pixels(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.preprocess(image) for image in images]).to(self.device)

    def _embed_images(self, images: list[Image.Image]) -> np.ndarray:
        if self._visual_bf16 is not None and runs_bf16_copy(self.device):
            return to_numpy(self._visual_bf16(self._pixels(images)))
        with inference(self.device):
            return to_numpy(self.model.encode_image(self._pixels(images)))

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        with inference(self.device):
            if _trims_padding(self.model):
                return to_numpy(_encode_text_trimmed(self.model, tokens))
            return to_numpy(self.model.encode_text(tokens))

    def _patch_grid(self, images: list[Image.Image]) -> np.ndarray:
        visual = self.model.visual
        if not self.supports_patches:  # timm and ResNet towers: no token grid to project
            return super()._patch_grid(images)
        with inference(self.device):
            out = visual.forward_intermediates(
                self._pixels(images), indices=1, normalize_intermediates=True, intermediates_only=True, output_fmt="NCHW"
            )
            grid = out["image_intermediates"][-1].permute(0, 2, 3, 1)  # (n, h, w, width), ln_post applied
            return to_numpy(grid @ visual.proj)


def _text_tower_to_bf16(model: open_clip.CLIP) -> None:
    """The text tower's weights in bfloat16 on a CPU with bf16 matrix units (AMX, AVX512-BF16).

    A search query is a few tokens: the pass is bound by reading the tower's weights, not by
    arithmetic, so half the bytes is most of the gain. Measured on this box's Xeon (ViT-B-32, 2
    threads): one 8-token query 15.1 → 10.3 ms, a batch of 16 46.8 → 22.1 ms; cosine to float32
    0.99993. Autocast instead casts the float32 weights on every call, which ran slower than float32.
    The image tower is left as it is: it runs in the precision the album's vectors were made in.
    Text vectors are never stored, so no model id has to tell the two apart."""
    for module in (model.transformer, model.token_embedding, model.ln_final):
        module.to(torch.bfloat16)
    model.positional_embedding.data = model.positional_embedding.data.to(torch.bfloat16)
    if isinstance(model.text_projection, torch.nn.Parameter):
        model.text_projection.data = model.text_projection.data.to(torch.bfloat16)
    elif isinstance(model.text_projection, torch.nn.Module):
        model.text_projection.to(torch.bfloat16)
    if model.attn_mask is not None:
        model.attn_mask = model.attn_mask.to(torch.bfloat16)


def _trims_padding(model) -> bool:
    """Whether the text tower can skip the padding after the longest text: a CLIP-style tower with a
    causal mask that reads its output at the end-of-text token. Position i then depends only on
    positions <= i, so the tokens after every text's end change nothing that is read, and a search
    query of 6 tokens need not pay for 77 (tests/encoders/test_encoders.py checks the equality)."""
    return (
        isinstance(model, open_clip.CLIP)
        and getattr(model, "attn_mask", None) is not None
        and getattr(model, "text_pool_type", None) in ("argmax", "eos")
    )


def _encode_text_trimmed(model, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's CLIP.encode_text on the tokens up to the longest text's end (3.3.0's own steps,
    with the positional embedding and causal mask cut to that length)."""
    used = (tokens != getattr(model, "pad_id", 0)).any(dim=0).nonzero()
    length = int(used.max()) + 1 if len(used) else 1
    text = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(text).to(cast_dtype) + model.positional_embedding[:length].to(cast_dtype)
    x = model.transformer(x, attn_mask=model.attn_mask[:length, :length])
    x = model.ln_final(x)
    x = open_clip.transformer.text_global_pool(x, text, model.text_pool_type,
                                               eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = model.text_projection(x) if isinstance(model.text_projection, torch.nn.Linear) else x @ model.text_projection
    return x


def _tag_kwargs(spec: EncoderSpec) -> dict:
    cfg = open_clip.get_pretrained_cfg(spec.model, spec.weights) or {}
    kwargs = {arg: cfg[key] for key, arg in _TAG_OVERRIDES.items() if cfg.get(key)}
    if cfg.get("quick_gelu"):
        kwargs["force_quick_gelu"] = True
    return kwargs
