"""`dense:sapiens2-<size>`: a Sapiens-style ViT read from a local safetensors checkpoint.

Sapiens2 (Meta) was pretrained self-supervised on ~1B human images; its license forbids biometric
processing and identifying people (catalog.SAPIENS2_RESPONSIBLE_USE). Loupe never downloads it: the
operator places `model.safetensors` at `LOUPE_MODELS_DIR/dense/sapiens2-<size>/`.

The checkpoint is read in the key layout Meta published for Sapiens (mmpretrain's VisionTransformer),
with or without a `backbone.` prefix:

    patch_embed.projection.{weight,bias}      conv 3 → C, kernel = stride = patch size
    pos_embed                                 (1, N[+1], C) for a square or configured grid
    cls_token                                 optional
    pre_norm.{weight,bias}                    optional, after the patch embedding
    layers.<i>.ln1 / attn.qkv / attn.proj / ln2 / ffn.layers.0.0 / ffn.layers.1
    ln1.{weight,bias}                         the final norm

Width, depth and MLP width come from the tensors' shapes; heads, input size, patch size and pixel
statistics from an optional `config.json` beside the checkpoint (defaults: Sapiens' 1024 × 768
input, patch 16, ImageNet mean/std, 64-dim heads). Loading is strict: a key that maps nowhere, or
a missing one, fails with the list, rather than run a half-initialized network. Position
embeddings trained on another grid are resized bicubically to the input's grid, as Sapiens does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from encoders.errors import EncoderWeightsInvalid

DEFAULT_INPUT = (1024, 768)  # (height, width): Sapiens' portrait input
DEFAULT_PATCH = 16
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.")


@dataclass(frozen=True)
class Sapiens2Config:
    width: int
    depth: int
    mlp_width: int
    heads: int
    input_size: tuple[int, int]
    patch_size: int
    pos_grid: tuple[int, int]
    has_cls_token: bool
    has_pre_norm: bool
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    layer_norm_eps: float = 1e-6


class _Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_width: int, eps: float):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(width, eps=eps)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(width, 3 * width)
        self.attn.proj = nn.Linear(width, width)
        self.ln2 = nn.LayerNorm(width, eps=eps)
        self.ffn = nn.Module()
        self.ffn.layers = nn.ModuleList([nn.Sequential(nn.Linear(width, mlp_width), nn.GELU()), nn.Linear(mlp_width, width)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        qkv = self.attn.qkv(self.ln1(x)).reshape(n, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.attn.proj(attended.transpose(1, 2).reshape(n, t, c))
        return x + self.ffn.layers[1](self.ffn.layers[0](self.ln2(x)))


class Sapiens2ViT(nn.Module):
    def __init__(self, config: Sapiens2Config):
        super().__init__()
        self.config = config
        c, p = config.width, config.patch_size
        self.patch_embed = nn.Module()
        self.patch_embed.projection = nn.Conv2d(3, c, kernel_size=p, stride=p)
        extra = 1 if config.has_cls_token else 0
        self.pos_embed = nn.Parameter(torch.zeros(1, config.pos_grid[0] * config.pos_grid[1] + extra, c))
        if config.has_cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
        if config.has_pre_norm:
            self.pre_norm = nn.LayerNorm(c, eps=config.layer_norm_eps)
        self.layers = nn.ModuleList(_Block(c, config.heads, config.mlp_width, config.layer_norm_eps) for _ in range(config.depth))
        self.ln1 = nn.LayerNorm(c, eps=config.layer_norm_eps)

    def _grid_pos_embed(self, h: int, w: int) -> torch.Tensor:
        extra = 1 if self.config.has_cls_token else 0
        grid = self.pos_embed[:, extra:]
        gh, gw = self.config.pos_grid
        if (gh, gw) == (h, w):
            return grid
        resized = F.interpolate(grid.reshape(1, gh, gw, -1).permute(0, 3, 1, 2), size=(h, w), mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1).reshape(1, h * w, -1)

    def forward_features(self, pixels: torch.Tensor) -> torch.Tensor:
        """(n, 3, H, W) → (n, H/p, W/p, C) patch tokens after the final norm."""
        x = self.patch_embed.projection(pixels)
        n, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2) + self._grid_pos_embed(h, w).to(x.dtype)
        if self.config.has_cls_token:
            cls = self.cls_token + self.pos_embed[:, :1]
            x = torch.cat([cls.expand(n, -1, -1).to(x.dtype), x], dim=1)
        if self.config.has_pre_norm:
            x = self.pre_norm(x)
        for layer in self.layers:
            x = layer(x)
        x = self.ln1(x)
        if self.config.has_cls_token:
            x = x[:, 1:]
        return x.reshape(n, h, w, c)


def _strip_prefix(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if state and all(key.startswith("backbone.") for key in state):
        return {key[len("backbone.") :]: value for key, value in state.items()}
    return state


def infer_config(state: dict[str, torch.Tensor], options: dict) -> Sapiens2Config:
    """Architecture from the tensors' shapes; what shapes cannot tell from `options` (config.json)."""
    try:
        projection = state["patch_embed.projection.weight"]
        pos_embed = state["pos_embed"]
        mlp_width = state["layers.0.ffn.layers.0.0.weight"].shape[0]
    except KeyError as missing:
        raise ValueError(f"not a Sapiens-style ViT checkpoint: no {missing.args[0]!r} tensor") from None
    width, patch = int(projection.shape[0]), int(projection.shape[-1])
    depth = 1 + max(int(m[1]) for key in state if (m := _LAYER_KEY.match(key)))
    has_cls = "cls_token" in state
    tokens = int(pos_embed.shape[1]) - (1 if has_cls else 0)
    if "pos_grid" in options:
        pos_grid = tuple(int(v) for v in options["pos_grid"])
    else:
        side = round(tokens**0.5)
        if side * side != tokens:
            raise ValueError(f"pos_embed has {tokens} tokens, not a square grid: give pos_grid in config.json")
        pos_grid = (side, side)
    heads = int(options.get("num_heads", width // 64))
    if width % heads:
        raise ValueError(f"width {width} is not divisible by {heads} heads: give num_heads in config.json")
    return Sapiens2Config(
        width=width, depth=depth, mlp_width=int(mlp_width), heads=heads,
        input_size=tuple(int(v) for v in options.get("image_size", DEFAULT_INPUT)),
        patch_size=int(options.get("patch_size", patch)), pos_grid=pos_grid, has_cls_token=has_cls,
        has_pre_norm="pre_norm.weight" in state,
        mean=tuple(options.get("image_mean", IMAGENET_MEAN)), std=tuple(options.get("image_std", IMAGENET_STD)),
        layer_norm_eps=float(options.get("layer_norm_eps", 1e-6)),
    )  # fmt: skip


def load_model(path: Path) -> Sapiens2ViT:
    try:
        state = _strip_prefix(load_file(str(path)))
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise EncoderWeightsInvalid(f"{path} is not a readable safetensors file: {error}", extra={"file": str(path)}) from error
    config_file = path.parent / "config.json"
    options = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    try:
        model = Sapiens2ViT(infer_config(state, options))
    except ValueError as error:
        raise EncoderWeightsInvalid(f"{path}: {error}", extra={"file": str(path)}) from None
    expected = set(model.state_dict())
    unexpected, missing = sorted(set(state) - expected), sorted(expected - set(state))
    if unexpected or missing:
        raise EncoderWeightsInvalid(
            f"{path}: the checkpoint does not match the Sapiens ViT layout (unexpected keys: {unexpected[:10]}, "
            f"missing keys: {missing[:10]})",
            extra={"file": str(path), "unexpected": unexpected[:50], "missing": missing[:50]},
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # a tensor of the wrong shape
        raise EncoderWeightsInvalid(f"{path}: {error}", extra={"file": str(path)}) from None
    return model.eval()


class Sapiens2Backbone:
    """Resize to the model's input (no crop: the whole person stays in view), normalize, run the ViT."""

    def __init__(self, path: Path, *, device: str):
        self.model = load_model(path).to(device)
        self.config = self.model.config
        self.device = device
        self.pixel_mean, self.pixel_std = self.config.mean, self.config.std
        self.view_fraction = 1.0  # no crop: the grid covers the whole (resized, not aspect-kept) image

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        height, width = self.config.input_size
        mean = np.asarray(self.pixel_mean, dtype=np.float32)
        std = np.asarray(self.pixel_std, dtype=np.float32)
        batch = np.stack(
            [(np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0 - mean) / std
             for image in images]
        )
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().to(self.device)

    def feature_grid(self, images: list[Image.Image]) -> torch.Tensor:
        return self.model.forward_features(self.pixels(images))
