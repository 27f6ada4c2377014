"""Pooling a dense backbone's token grid into what Loupe stores: pure NumPy, no torch.

A backbone gives a grid `(n, h, w, c)` of patch tokens per batch (`Encoder.patch_features` is the
L2-normalized form of it). From it:

- `mean`: the global average of the tokens, L2-normalized (what `DenseEncoder.encode_images` does).
- `masked`: the average of the tokens weighted by how much of each cell lies inside a foreground
  mask (a cell half inside counts half), L2-normalized. No mask, or a mask with no foreground,
  falls back to `mean` and says why.
- `regions`: a coarse `rows × cols` grid of area-pooled tokens per image (e.g. 4 × 3), each
  L2-normalized, for region (box) queries matched by max-sim over an image's regions.

Geometry is area-weighted: an output cell, a mask cell or a box covers input cells in proportion
to the overlap of their areas. When the input size is a multiple of the output size this is
`adaptive_avg_pool2d`; otherwise it is the exact area average (torch's adaptive pooling rounds
the bounds outwards instead). Masks and boxes are fractions of the *model input* (what the grid
covers); callers that start from image pixels map them through the backbone's preprocessing first
(see `DenseEncoder.cell_weights`).

The web tier and the vision-RAG code import these helpers: `pool_grid_to_regions`,
`box_to_cells`, `box_pool`, `masked_pool`, `region_max_sim`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MEAN, MASKED, REGIONS = "mean", "masked", "regions"
POOLINGS = (MEAN, MASKED, REGIONS)
DEFAULT_POOLING = MEAN
# rows × cols of the stored region grid: 4 × 3 suits portrait photos of people (Sapiens' own input
# is 1024 × 768, i.e. 64 × 48 tokens → 16 × 16 tokens per region).
REGION_ROWS, REGION_COLS = 4, 3

# Cells whose foreground share is below this count as background: bicubic resampling of a hard
# mask leaves faint ringing (~1e-3) around its edges that must not pull in background tokens.
MIN_COVERAGE = 0.01

NO_MASK = "no foreground mask for this image (no uploaded mask, no alpha channel)"
EMPTY_MASK = "the foreground mask is empty"


def _unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in): row j holds the share of input cell i inside output cell j; rows sum to 1."""
    if n_in < 1 or n_out < 1:
        raise ValueError(f"grid sizes must be positive, not {n_in} → {n_out}")
    edges_in = np.arange(n_in + 1, dtype=np.float64) / n_in
    edges_out = np.arange(n_out + 1, dtype=np.float64) / n_out
    low = np.maximum(edges_out[:-1, None], edges_in[None, :-1])
    high = np.minimum(edges_out[1:, None], edges_in[None, 1:])
    overlap = np.clip(high - low, 0.0, None)
    return overlap / overlap.sum(axis=1, keepdims=True)


def area_pool(grid: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(…, h, w, c) → (…, rows, cols, c): area-weighted averages, not normalized."""
    grid = np.asarray(grid, dtype=np.float32)
    h, w = grid.shape[-3], grid.shape[-2]
    wr = area_weights(h, rows).astype(np.float32)
    wc = area_weights(w, cols).astype(np.float32)
    return np.einsum("rh,...hwc,qw->...rqc", wr, grid, wc, optimize=True).astype(np.float32)


def pool_grid_to_regions(grid: np.ndarray, rows: int = REGION_ROWS, cols: int = REGION_COLS) -> np.ndarray:
    """(…, h, w, c) → (…, rows, cols, c) area-pooled region tokens, each L2-normalized."""
    return _unit(area_pool(grid, rows, cols))


def resize_coverage(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """A (H, W) mask of values in [0, 1] → (h, w): the foreground share of each grid cell."""
    mask = np.clip(np.asarray(mask, dtype=np.float32), 0.0, 1.0)
    return area_pool(mask[..., None], h, w)[..., 0]


def box_to_cells(box: Sequence[float], h: int, w: int) -> np.ndarray:
    """A box (x0, y0, x1, y1) in fractions of the grid's width and height → (h, w) coverage:
    the share of each cell's area inside the box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
        raise ValueError(f"a box is (x0, y0, x1, y1) with 0 ≤ x0 < x1 ≤ 1 and 0 ≤ y0 < y1 ≤ 1, not {tuple(box)}")

    def overlap(n: int, start: float, stop: float) -> np.ndarray:
        edges = np.arange(n + 1, dtype=np.float64) / n
        return np.clip(np.minimum(edges[1:], stop) - np.maximum(edges[:-1], start), 0.0, None) * n

    return np.outer(overlap(h, y0, y1), overlap(w, x0, x1)).astype(np.float32)


@dataclass
class Pooled:
    """What one batch pools to: a unit vector per image, the region tokens when asked for, and, per
    image, why masked pooling fell back to the mean ("" when it did not)."""

    vectors: np.ndarray  # (n, c)
    regions: np.ndarray | None = None  # (n, rows * cols, c), row-major
    notes: list[str] = field(default_factory=list)
    # (n, 1000) ImageNet class probabilities of the whole image, for encoders with a classifier head
    # (EfficientNet-Lite0): what word queries score (encoders/concepts.py). None elsewhere.
    concepts: np.ndarray | None = None


def mean_pool(grid: np.ndarray) -> np.ndarray:
    """(n, h, w, c) → (n, c) unit vectors."""
    return _unit(np.asarray(grid, dtype=np.float32).mean(axis=(1, 2)))


def weighted_pool(grid: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(…, h, w, c) tokens and (…, h, w) weights → (…, c) unit vectors (zero where weights sum to 0)."""
    grid = np.asarray(grid, dtype=np.float32)
    weights = np.asarray(weights, dtype=np.float32)
    total = np.einsum("...hwc,...hw->...c", grid, weights)
    return _unit(total / np.maximum(weights.sum(axis=(-2, -1)), 1e-12)[..., None])


def masked_pool(grid: np.ndarray, coverage: Sequence[np.ndarray | None]) -> tuple[np.ndarray, list[str]]:
    """(n, h, w, c) tokens and, per image, an (h, w) foreground share or None → (n, c) unit vectors
    and, per image, the reason it fell back to the mean ("" when the mask was used)."""
    grid = np.asarray(grid, dtype=np.float32)
    if len(coverage) != grid.shape[0]:
        raise ValueError(f"{len(coverage)} masks for {grid.shape[0]} images")
    vectors, notes = mean_pool(grid), []
    for i, cells in enumerate(coverage):
        if cells is None:
            notes.append(NO_MASK)
            continue
        weights = np.where(cells >= MIN_COVERAGE, cells, 0.0).astype(np.float32)
        if weights.shape != grid.shape[1:3]:
            raise ValueError(f"mask grid {weights.shape} does not match the token grid {grid.shape[1:3]}")
        if weights.sum() <= 0:
            notes.append(EMPTY_MASK)
            continue
        vectors[i] = weighted_pool(grid[i], weights)
        notes.append("")
    return vectors, notes


def box_pool(grid: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """One image's (h, w, c) tokens and a box in fractions of the grid → the box's unit vector."""
    h, w = grid.shape[0], grid.shape[1]
    return weighted_pool(grid, box_to_cells(box, h, w))


def region_max_sim(query: np.ndarray, regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A unit query (c,) against (m, R, c) region tokens → per image the best cosine and the index
    of the region that gave it (ties to the lower index)."""
    sims = np.einsum("mrc,c->mr", np.asarray(regions, dtype=np.float32), np.asarray(query, dtype=np.float32))
    best = sims.argmax(axis=1)
    return sims[np.arange(len(sims)), best], best


def pool(
    grid: np.ndarray, *, pooling: str, coverage: Sequence[np.ndarray | None] | None = None,
    rows: int = REGION_ROWS, cols: int = REGION_COLS,
) -> Pooled:
    """The album's pooling of a raw token grid (n, h, w, c). `regions` also keeps the global mean,
    so more-like-this and whole-image queries work on such an album."""
    if pooling == MEAN:
        return Pooled(vectors=mean_pool(grid), notes=[""] * len(grid))
    if pooling == MASKED:
        vectors, notes = masked_pool(grid, coverage if coverage is not None else [None] * len(grid))
        return Pooled(vectors=vectors, notes=notes)
    if pooling == REGIONS:
        regions = pool_grid_to_regions(grid, rows, cols)
        return Pooled(vectors=mean_pool(grid), regions=regions.reshape(len(grid), rows * cols, -1), notes=[""] * len(grid))
    raise ValueError(f"unknown pooling {pooling!r}; known: {', '.join(POOLINGS)}")
