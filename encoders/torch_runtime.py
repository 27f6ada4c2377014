"""Device choice and the inference context every backend runs its forward passes in."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from encoders.weights import weights_checksum


def resolve_device(requested: str | None) -> str:
    """`auto` (or nothing) picks cuda, then Apple's mps, then cpu; anything else is taken as given."""
    if requested and requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@contextlib.contextmanager
def inference(device: str):
    """`torch.inference_mode`, plus bf16 autocast on GPUs that have it (fp16 otherwise).

    CPU stays float32: bf16 autocast there is slower on most CPUs and changes vectors, and mps
    autocast still misses ops that the backbones use.
    """
    with torch.inference_mode():
        if device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                yield
        else:
            yield


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().astype(np.float32, copy=False)


def model_id_for(spec, checksum_files) -> str:
    return f"{spec}@sha256:{weights_checksum(tuple(checksum_files))}"
