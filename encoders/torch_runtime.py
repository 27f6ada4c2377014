"""Device choice and the inference context every backend runs its forward passes in."""

from __future__ import annotations

import contextlib
import contextvars
import copy
import threading

import numpy as np
import torch
from django.conf import settings

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


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# The precision the image tower runs in inside `image_precision(...)`; stored vectors record it
# (encoders/model_ids.py), so a query image is encoded in the precision of the album's vectors.
_image_precision: contextvars.ContextVar[str | None] = contextvars.ContextVar("image_precision", default=None)


def default_image_precision(device: str) -> str:
    """What a new album's image vectors are made in on this device: on GPUs bf16 where supported, else
    fp16; on CPUs bf16 where `LOUPE_CPU_BF16` allows it (auto: the CPU has AMX-BF16 or AVX512-BF16),
    else fp32. Measured, batch 16-64, warm: EfficientNet-Lite0 1.46x the images/s of fp32 under autocast
    (a Xeon with AMX); ViT-B-32 1.5x under autocast, 3.5x as a bf16 copy (`Bf16Copy`; an AMD EPYC
    with AVX512-BF16)."""
    if device.startswith("cuda"):
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device == "cpu" and cpu_bf16_enabled():
        return "bf16"
    return "fp32"


def runs_bf16_copy(device: str) -> bool:
    """Whether an image tower that keeps a `Bf16Copy` runs it: bf16 asked for on a CPU."""
    return device == "cpu" and _image_precision.get() == "bf16"


class Bf16Copy:
    """A tower's bfloat16 copy, made on first use, kept beside the float32 original (albums made
    in fp32 and patch features still run that one).

    CPU autocast casts the float32 weights on every call and keeps LayerNorm, softmax and GELU in
    float32; a ViT tower whose weights are bfloat16 runs every op there. Measured on an AMD EPYC
    (AVX512-BF16, 2 threads, open_clip ViT-B-32): the tower alone on a batch of 32, float32 23.1 images/s,
    autocast 21.8, the bf16 copy 92.7; through the product's encoder on 64 images (preprocessing
    included) float32 19.8, autocast 30.2, the copy 69.0. Cosine to float32 0.99994 for both bf16 paths,
    0.99996 between them. Convolutional towers gain from autocast as they are (EfficientNet-Lite0
    45.8 → 117.8, 122.7 as a copy), so only the ViT towers keep one. transformers' SigLIP vision tower
    (ViT-B/16 shape, random weights, batch 16, 2 threads) gains nothing from one either: float32
    4.9 images/s, autocast 11.9, a bf16 copy 11.6, cosine 0.99998 for both (its attention is
    scaled_dot_product_attention, open_clip's nn.MultiheadAttention: a likely reason, not measured)."""

    def __init__(self, module: torch.nn.Module, *, keep_float32: tuple[type, ...] = ()) -> None:
        """`keep_float32`: module classes that cast their input to float32 themselves (CLIP's
        LayerNorm subclasses) and so need float32 weights."""
        self._source = module
        self._keep_float32 = keep_float32
        self._copy: torch.nn.Module | None = None
        self._lock = threading.Lock()

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._copy is None:
            with self._lock:
                if self._copy is None:
                    twin = copy.deepcopy(self._source).to(torch.bfloat16).eval()
                    for module in twin.modules():
                        if isinstance(module, self._keep_float32):
                            module.float()
                    self._copy = twin
        with torch.inference_mode():
            return self._copy(pixels.to(torch.bfloat16))


def cpu_bf16_enabled() -> bool:
    choice = str(settings.LOUPE_CPU_BF16).lower()
    if choice in ("1", "true", "yes", "on"):
        return True
    if choice in ("0", "false", "no", "off"):
        return False
    return cpu_has_bf16()


def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as fp:
            flags = next((line.split(":", 1)[1].split() for line in fp if line.startswith("flags")), [])
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@contextlib.contextmanager
def image_precision(precision: str):
    token = _image_precision.set(precision)
    try:
        yield
    finally:
        _image_precision.reset(token)


@contextlib.contextmanager
def inference(device: str):
    """`torch.inference_mode`, with autocast in the precision asked for by `image_precision(...)`.

    Outside it (text towers, patch features): bf16 autocast on GPUs that have it (fp16 otherwise),
    float32 on CPUs, where bf16 ran CLIP's text tower slower (short sequences) and mps autocast still
    misses ops the backbones use."""
    asked = _image_precision.get()
    device_type = "cuda" if device.startswith("cuda") else device.split(":")[0]
    with torch.inference_mode():
        if asked is not None:
            dtype = _DTYPES.get(asked)
            if dtype is None or device_type not in ("cuda", "cpu"):
                yield
            else:
                with torch.autocast(device_type, dtype=dtype):
                    yield
        elif device.startswith("cuda"):
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            with torch.autocast("cuda", dtype=dtype):
                yield
        else:
            yield


def to_numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy().astype(np.float32, copy=False)


def model_id_for(spec, checksum_files) -> str:
    return f"{spec}@sha256:{weights_checksum(tuple(checksum_files))}"
