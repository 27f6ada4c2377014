"""Cutting an image into a square grid of patches and embedding each one with an album encoder.

The image is first resized to a square `resolution` (as the RAG Vision Engine does, so every image
gives the same grid), then cut into `resolution // patch_size` patches a side. Two ways to get a
patch's vector:

- `tokens`: one forward pass; the encoder's own token grid (7×7 for EfficientNet-Lite0, 14×14 for a
  ViT-B/16) is pooled, weighted by overlapped area, onto the patch grid (encoders/pooling.py). Backbones whose transform
  centre-crops (EfficientNet, DINOv2: 224 of 256) would see only the middle of the image, so the
  square is padded by reflection first and the grid then covers exactly the square.
- `crops`: each patch is cropped and encoded as an image of its own: one forward pass per patch,
  but it works with every encoder and gives each patch a full-strength embedding.

Boxes are in the original image's pixels, so a client can draw them on the image it has.

Each patch also says whether it shows anything (`foreground`): a patch whose pixels are nearly one
colour (per-channel standard deviation at most `background_std`, measured on the square the grid is
cut from) is background — the black around a cut-out car, the canvas a transparent image was
composited onto — and the class scores leave it out (search/rag/scoring.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from encoders.pooling import pool_grid_to_regions

if TYPE_CHECKING:
    from encoders.base import Encoder

TOKENS, CROPS = "tokens", "crops"


@dataclass(frozen=True)
class Patch:
    row: int
    col: int
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the original image; x1, y1 exclusive
    vector: np.ndarray


@dataclass(frozen=True)
class PatchGrid:
    source: str  # what was used: tokens, or crops when the encoder has no token grid
    patches: list[Patch]
    foreground: np.ndarray | None = None  # (patches,) bool: not near-uniform; None: not measured

    @property
    def vectors(self) -> np.ndarray:
        return np.stack([patch.vector for patch in self.patches])


def cells_per_side(resolution: int, patch_size: int) -> int:
    return max(1, resolution // patch_size)


def _edges(n: int, size: int) -> list[int]:
    return [round(i * size / n) for i in range(n + 1)]


def cell_boxes(n: int, width: int, height: int) -> list[tuple[int, int, tuple[int, int, int, int]]]:
    """(row, col, box) of an n×n grid laid over a width×height image, row-major."""
    xs, ys = _edges(n, width), _edges(n, height)
    return [(r, c, (xs[c], ys[r], xs[c + 1], ys[r + 1])) for r in range(n) for c in range(n)]


def _reflect_pad(square: Image.Image, fraction: float) -> Image.Image:
    """Pad so that the centre `fraction` of the result is exactly `square`."""
    if fraction >= 1.0:
        return square
    side = square.width
    pad = int(round((side / fraction - side) / 2))
    pixels = np.asarray(square)
    return Image.fromarray(np.pad(pixels, ((pad, pad), (pad, pad), (0, 0)), mode="reflect"))


def foreground_cells(square: Image.Image, n: int, *, background_std: float) -> np.ndarray:
    """(n*n,) bool, row-major: which cells of an n×n grid over `square` are not near-uniform (all of
    them when `background_std` is 0: nothing is background)."""
    if background_std <= 0:
        return np.ones(n * n, dtype=bool)
    pixels = np.asarray(square.convert("RGB"), dtype=np.float32)
    side = pixels.shape[0]
    return np.array([
        float(pixels[y0:y1, x0:x1].reshape(-1, 3).std(axis=0).mean()) > background_std
        for _, _, (x0, y0, x1, y1) in cell_boxes(n, side, side)
    ], dtype=bool)


def image_patches(encoder: Encoder, image: Image.Image, *, resolution: int, patch_size: int, source: str,
                  background_std: float | None = None) -> PatchGrid:
    return images_patches(encoder, [image], resolution=resolution, patch_size=patch_size, source=source,
                          background_std=background_std)[0]


def images_patches(encoder: Encoder, images: list[Image.Image], *, resolution: int, patch_size: int, source: str,
                   background_std: float | None = None) -> list[PatchGrid]:
    """`image_patches` of several images, encoded together: one forward pass over the batch (token
    grid), or one `encode_images` call over every image's tiles (crops). Same vectors as one by one."""
    if not images:
        return []
    rgbs = [image.convert("RGB") for image in images]
    squares = [rgb.resize((resolution, resolution), Image.Resampling.BICUBIC) for rgb in rgbs]
    n = cells_per_side(resolution, patch_size)
    if source == TOKENS and encoder.supports_patches:
        # Where the transform keeps only the centre of its input (crop_pct), pad so that the
        # centre is our square and the token grid covers it edge to edge.
        fraction = float(getattr(encoder, "patch_view_fraction", 1.0))
        grids = encoder.patch_features([_reflect_pad(square, fraction) for square in squares])
        # More patches than tokens would only repeat tokens: the grid is as fine as the encoder's.
        n = min(n, grids.shape[1], grids.shape[2])
        per_image = [pool_grid_to_regions(grid, n, n).reshape(n * n, -1) for grid in grids]
        used = TOKENS
    else:
        cells = cell_boxes(n, resolution, resolution)
        tiles = [square.crop(box) for square in squares for _, _, box in cells]
        vectors = encoder.encode_images(tiles)
        per_image = [vectors[i * len(cells) : (i + 1) * len(cells)] for i in range(len(squares))]
        used = CROPS
    out = []
    for rgb, square, vectors in zip(rgbs, squares, per_image, strict=True):
        boxes = cell_boxes(n, rgb.width, rgb.height)
        patches = [Patch(row=r, col=c, box=box, vector=vectors[i]) for i, (r, c, box) in enumerate(boxes)]
        foreground = None if background_std is None else foreground_cells(square, n, background_std=background_std)
        out.append(PatchGrid(source=used, patches=patches, foreground=foreground))
    return out
