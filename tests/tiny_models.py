"""Tiny real architectures with random weights, saved the way an operator would place real ones.

`build_tiny_models(root)` writes one of each backend into a models directory; the session fixture
`tiny_models_dir` (tests/conftest.py) builds it once, and tests point `LOUPE_MODELS_DIR` at it so
the product's own resolution and loading code runs — in the test process and in Celery workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

OPEN_CLIP_TINY = "open-clip:tiny-vit/random"
OPENAI_CLIP_TINY = "openai-clip:tiny-vit"
OPENAI_CLIP_TINY_RESNET = "openai-clip:tiny-rn"
SIGLIP_TINY = "siglip:tests/tiny-siglip"
SIGLIP2_TINY = "siglip:tests/tiny-siglip2"
DINOV2_TINY = "dense:tiny-dinov2"
SAPIENS2_TINY = "dense:sapiens2-0.001b"
SAPIENS2_INPUT = (64, 48)  # (height, width): Sapiens' portrait shape, scaled down
TINY_LOGIT_SCALE, TINY_LOGIT_BIAS = 2.0, -3.0  # set on the tiny SigLIPs so calibration is not the identity-like 0/0
WORDS = "a photo of drawing an illustration painting dog cat red sled kids on the".split()


def _seed():
    import torch

    torch.manual_seed(0)


def _save_open_clip(root: Path) -> None:
    import open_clip
    from safetensors.torch import save_file

    model_cfg = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "head_width": 32, "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }
    directory = root / "open-clip" / "tiny-vit" / "random"
    directory.mkdir(parents=True)
    (directory / "open_clip_config.json").write_text(json.dumps({"model_cfg": model_cfg, "preprocess_cfg": {}}))
    _seed()
    model = open_clip.CLIP(**model_cfg)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, directory / "open_clip_model.safetensors")


def _save_openai_clip(root: Path) -> None:
    import clip.model
    import torch

    directory = root / "openai-clip"
    directory.mkdir(parents=True)
    common = dict(context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1, transformer_layers=1)
    _seed()
    vit = clip.model.CLIP(
        embed_dim=32, image_resolution=32, vision_layers=1, vision_width=64, vision_patch_size=16, **common
    )
    torch.save(vit.state_dict(), directory / "tiny-vit.pt")
    resnet = clip.model.CLIP(
        embed_dim=32, image_resolution=64, vision_layers=(1, 1, 1, 1), vision_width=8, vision_patch_size=None, **common
    )
    torch.save(resnet.state_dict(), directory / "tiny-rn.pt")


def _tiny_tokenizer():
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", *WORDS])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", model_max_length=16
    ), len(vocab)


def _set_logits(model) -> None:
    import torch

    with torch.no_grad():
        model.logit_scale.fill_(TINY_LOGIT_SCALE)
        model.logit_bias.fill_(TINY_LOGIT_BIAS)


def _save_siglip(root: Path) -> None:
    from transformers import (
        Siglip2Config,
        Siglip2ImageProcessor,
        Siglip2Model,
        Siglip2Processor,
        SiglipConfig,
        SiglipImageProcessor,
        SiglipModel,
        SiglipProcessor,
    )

    tokenizer, vocab_size = _tiny_tokenizer()
    text = dict(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=16, bos_token_id=None, eos_token_id=1, pad_token_id=0,
    )  # fmt: skip
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, patch_size=8)
    _seed()
    siglip = SiglipModel(SiglipConfig(text_config=text, vision_config={**vision, "image_size": 32}))
    _set_logits(siglip)
    directory = root / "siglip" / "tests" / "tiny-siglip"
    siglip.save_pretrained(directory)
    SiglipProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer).save_pretrained(
        directory
    )
    siglip2 = Siglip2Model(Siglip2Config(text_config=text, vision_config={**vision, "num_patches": 16}))
    _set_logits(siglip2)
    directory = root / "siglip" / "tests" / "tiny-siglip2"
    siglip2.save_pretrained(directory)
    Siglip2Processor(
        image_processor=Siglip2ImageProcessor(patch_size=8, max_num_patches=16), tokenizer=tokenizer
    ).save_pretrained(directory)


def _save_dinov2(root: Path) -> None:
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    _seed()
    model = Dinov2Model(
        Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=2, patch_size=8, image_size=32)
    )
    directory = root / "dense" / "tiny-dinov2"
    model.save_pretrained(directory)
    BitImageProcessor(
        size={"shortest_edge": 40},
        crop_size={"height": 32, "width": 32},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(directory)


def sapiens2_state_dict(*, width: int = 32, depth: int = 2, mlp: int = 64, patch: int = 8, pos_grid: int = 8) -> dict:
    """A checkpoint in the key layout Meta published for Sapiens (mmpretrain ViT, `backbone.` prefix),
    written name by name here rather than from Loupe's model, so the loader's mapping is what is tested.
    The position grid is square (8×8) while the input is 64×48: the loader must resize it."""
    import torch

    _seed()
    state = {
        "backbone.patch_embed.projection.weight": torch.randn(width, 3, patch, patch) * 0.05,
        "backbone.patch_embed.projection.bias": torch.zeros(width),
        "backbone.pos_embed": torch.randn(1, pos_grid * pos_grid, width) * 0.02,
        "backbone.ln1.weight": torch.ones(width),
        "backbone.ln1.bias": torch.zeros(width),
    }
    for i in range(depth):
        p = f"backbone.layers.{i}."
        state.update({
            p + "ln1.weight": torch.ones(width), p + "ln1.bias": torch.zeros(width),
            p + "attn.qkv.weight": torch.randn(3 * width, width) * 0.05, p + "attn.qkv.bias": torch.zeros(3 * width),
            p + "attn.proj.weight": torch.randn(width, width) * 0.05, p + "attn.proj.bias": torch.zeros(width),
            p + "ln2.weight": torch.ones(width), p + "ln2.bias": torch.zeros(width),
            p + "ffn.layers.0.0.weight": torch.randn(mlp, width) * 0.05, p + "ffn.layers.0.0.bias": torch.zeros(mlp),
            p + "ffn.layers.1.weight": torch.randn(width, mlp) * 0.05, p + "ffn.layers.1.bias": torch.zeros(width),
        })  # fmt: skip
    return state


def save_sapiens2(root: Path, name: str = SAPIENS2_TINY.split(":", 1)[1], state: dict | None = None) -> Path:
    from safetensors.torch import save_file

    directory = root / "dense" / name
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in (state or sapiens2_state_dict()).items()}, directory / "model.safetensors")
    (directory / "config.json").write_text(json.dumps({"image_size": list(SAPIENS2_INPUT), "num_heads": 2}))
    return directory


def build_tiny_models(root: Path) -> Path:
    _save_open_clip(root)
    _save_openai_clip(root)
    _save_siglip(root)
    _save_dinov2(root)
    save_sapiens2(root)
    return root


def make_images() -> list[Image.Image]:
    """Distinct images in the modes uploads arrive in (RGB, greyscale, palette, alpha)."""
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8), "RGB")
    gradient = Image.fromarray(np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (40, 1)), "L")
    palette = Image.new("RGB", (30, 50), (200, 30, 30)).convert("P")
    alpha = Image.new("RGBA", (40, 40), (0, 90, 200, 128))
    return [noise, gradient, palette, alpha]
