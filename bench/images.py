"""Synthetic photographs: JPEGs whose size and decode cost look like a camera's, made offline.

Flat or random-noise images are the wrong test for a JPEG decoder: flat ones compress to almost
nothing (and decode in no time), pure noise is far larger than a photo. These are built like a
scene instead: a smooth low-frequency colour field (sky, walls), a few soft-edged shapes (objects),
fine texture and sensor noise, saved at quality 90 with 4:2:0 chroma, as phones save. That lands
at roughly 0.3–0.5 bytes per pixel, the range of real 2–12 MP camera JPEGs.
"""

from __future__ import annotations

import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

# (label, width, height): 4:3 like most phone cameras.
SIZES = {"2MP": (1632, 1224), "12MP": (4000, 3000)}


@dataclass(frozen=True)
class SyntheticJpeg:
    size_label: str
    width: int
    height: int
    data: bytes


def synthetic_photo(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    # Smooth colour field: a coarse random grid upsampled with bicubic interpolation.
    coarse = rng.integers(30, 225, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    # Objects: soft-edged ellipses and rectangles in their own colours.
    shapes = Image.new("RGB", (width, height))
    mask = Image.new("L", (width, height), 0)
    draw_shapes, draw_mask = ImageDraw.Draw(shapes), ImageDraw.Draw(mask)
    for _ in range(int(rng.integers(6, 12))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 12, width // 3)), int(rng.integers(height // 12, height // 3))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = (x0, y0, x0 + w, y0 + h)
        if rng.random() < 0.5:
            draw_shapes.ellipse(box, fill=colour)
            draw_mask.ellipse(box, fill=int(rng.integers(150, 256)))
        else:
            draw_shapes.rectangle(box, fill=colour)
            draw_mask.rectangle(box, fill=int(rng.integers(150, 256)))
    mask = mask.filter(ImageFilter.GaussianBlur(radius=max(2, width // 800)))
    image = Image.composite(shapes, image, mask)
    pixels = np.asarray(image, dtype=np.int16)
    # Texture at a few pixels' scale (foliage, fabric) plus per-pixel sensor noise.
    texture_small = rng.normal(0.0, 16.0, size=(height // 2 + 1, width // 2 + 1)).astype(np.float32)
    texture = np.asarray(
        Image.fromarray(texture_small, "F").resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32
    )
    noise = rng.normal(0.0, 5.0, size=(height, width, 3)).astype(np.float32)
    pixels = pixels + texture[:, :, None].astype(np.int16) + noise.astype(np.int16)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def synthetic_jpeg(size_label: str, seed: int, *, quality: int = 90) -> SyntheticJpeg:
    width, height = SIZES[size_label]
    buffer = io.BytesIO()
    synthetic_photo(width, height, seed).save(buffer, "JPEG", quality=quality, subsampling="4:2:0")
    return SyntheticJpeg(size_label=size_label, width=width, height=height, data=buffer.getvalue())


GENERATOR_VERSION = 1  # bump when synthetic_photo changes, so cached files are not reused


def _generate(args: tuple[str, int, str | None]) -> SyntheticJpeg:
    label, seed, cache_dir = args
    cached = Path(cache_dir) / f"{label}-{seed}-v{GENERATOR_VERSION}.jpg" if cache_dir else None
    if cached is not None and cached.is_file():
        width, height = SIZES[label]
        return SyntheticJpeg(size_label=label, width=width, height=height, data=cached.read_bytes())
    jpeg = synthetic_jpeg(label, seed)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(jpeg.data)
        partial.replace(cached)
    return jpeg


def generate_set(
    counts: dict[str, int], *, workers: int = 1, seed: int = 0, cache_dir: Path | None = None
) -> list[SyntheticJpeg]:
    """`counts[label]` images of each size, each from its own seed (so every file is distinct).
    Deterministic, so files kept in `cache_dir` from an earlier run are reused."""
    jobs = [
        (label, seed * 1_000_003 + index * 7919 + i, str(cache_dir) if cache_dir else None)
        for index, label in enumerate(counts)
        for i in range(counts[label])
    ]
    if workers <= 1 or len(jobs) < 2:
        return [_generate(job) for job in jobs]

    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_generate, jobs))
