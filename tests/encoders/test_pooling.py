"""Pooling math on hand-built token grids (encoders/pooling.py): no model, no database."""

from __future__ import annotations

import numpy as np
import pytest

from encoders import pooling
from encoders.model_ids import ModelIdParts, compose_model_id, parse_model_id


def _unit(v):
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _two_tone_grid() -> np.ndarray:
    """A 4×4 grid whose left half holds token A = e0 and right half token B = e1 (dim 3)."""
    grid = np.zeros((1, 4, 4, 3), dtype=np.float32)
    grid[0, :, :2, 0] = 1.0
    grid[0, :, 2:, 1] = 1.0
    return grid


def test_area_weights_divisible_is_block_average_and_rows_sum_to_one():
    w = pooling.area_weights(4, 2)
    np.testing.assert_allclose(w, [[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]])
    uneven = pooling.area_weights(5, 3)  # 5 cells into 3: each output covers 5/3 inputs
    np.testing.assert_allclose(uneven.sum(axis=1), 1.0)
    np.testing.assert_allclose(uneven[0], [0.6, 0.4, 0, 0, 0])
    np.testing.assert_allclose(uneven[1], [0, 0.2, 0.6, 0.2, 0])


def test_mean_pool_is_the_normalized_average():
    grid = _two_tone_grid()
    np.testing.assert_allclose(pooling.mean_pool(grid), _unit([[1, 1, 0]]), atol=1e-6)


def test_masked_pool_uses_only_foreground_cells():
    grid = _two_tone_grid()
    left = np.zeros((4, 4), dtype=np.float32)
    left[:, :2] = 1.0
    vectors, notes = pooling.masked_pool(grid, [left])
    np.testing.assert_allclose(vectors[0], [1, 0, 0], atol=1e-6)
    assert notes == [""]


def test_masked_pool_weights_edge_cells_by_their_foreground_share():
    grid = _two_tone_grid()
    cover = np.zeros((4, 4), dtype=np.float32)
    cover[:, :2] = 1.0
    cover[:, 2] = 0.5  # the mask's edge runs through the middle of column 2
    vectors, _ = pooling.masked_pool(grid, [cover])
    # 8 cells of A at weight 1, 4 cells of B at weight 0.5 → A:B = 8:2
    np.testing.assert_allclose(vectors[0], _unit([8, 2, 0]), atol=1e-6)


def test_faint_resampling_ringing_below_min_coverage_is_background():
    grid = _two_tone_grid()
    cover = np.zeros((4, 4), dtype=np.float32)
    cover[:, :2] = 1.0
    cover[:, 2:] = pooling.MIN_COVERAGE / 2
    vectors, _ = pooling.masked_pool(grid, [cover])
    np.testing.assert_allclose(vectors[0], [1, 0, 0], atol=1e-6)


def test_empty_mask_and_no_mask_fall_back_to_the_mean_with_a_reason():
    grid = np.concatenate([_two_tone_grid(), _two_tone_grid()])
    vectors, notes = pooling.masked_pool(grid, [np.zeros((4, 4)), None])
    np.testing.assert_allclose(vectors, pooling.mean_pool(grid), atol=1e-6)
    assert notes == [pooling.EMPTY_MASK, pooling.NO_MASK]


def test_all_foreground_mask_equals_the_mean():
    rng = np.random.default_rng(0)
    grid = rng.standard_normal((2, 3, 5, 8)).astype(np.float32)
    vectors, notes = pooling.masked_pool(grid, [np.ones((3, 5)), np.ones((3, 5))])
    np.testing.assert_allclose(vectors, pooling.mean_pool(grid), atol=1e-6)
    assert notes == ["", ""]


def test_mask_of_the_wrong_grid_size_is_refused():
    with pytest.raises(ValueError, match="does not match"):
        pooling.masked_pool(_two_tone_grid(), [np.ones((2, 2))])


def test_resize_coverage_is_the_area_share_per_cell():
    mask = np.zeros((8, 8), dtype=np.float32)
    mask[:, :3] = 1.0  # 3 of 8 pixel columns
    cover = pooling.resize_coverage(mask, 2, 2)
    np.testing.assert_allclose(cover, [[0.75, 0.0], [0.75, 0.0]])


def test_regions_are_area_pooled_and_normalized():
    grid = np.zeros((1, 4, 6, 2), dtype=np.float32)
    grid[0, :2, :, 0] = 1.0  # top half: token e0
    grid[0, 2:, :3, 1] = 1.0  # bottom-left quarter: e1; bottom-right stays 0
    regions = pooling.pool_grid_to_regions(grid, rows=2, cols=2)
    assert regions.shape == (1, 2, 2, 2)
    np.testing.assert_allclose(regions[0, 0, 0], [1, 0], atol=1e-6)
    np.testing.assert_allclose(regions[0, 1, 0], [0, 1], atol=1e-6)
    np.testing.assert_allclose(regions[0, 1, 1], [0, 0], atol=1e-6)  # a zero region stays zero, no NaN


def test_regions_on_an_uneven_grid_share_the_boundary_cell():
    grid = np.zeros((1, 1, 3, 2), dtype=np.float32)
    grid[0, 0, 0] = [1, 0]
    grid[0, 0, 1] = [0, 1]
    grid[0, 0, 2] = [1, 0]
    raw = pooling.area_pool(grid, 1, 2)
    # Left region = cell 0 + half of cell 1 over 1.5 cells; right = half of cell 1 + cell 2.
    np.testing.assert_allclose(raw[0, 0, 0], [1 / 1.5, 0.5 / 1.5], atol=1e-6)
    np.testing.assert_allclose(raw[0, 0, 1], [1 / 1.5, 0.5 / 1.5], atol=1e-6)


def test_box_to_cells_covers_partial_cells_by_area():
    cells = pooling.box_to_cells((0.0, 0.0, 0.375, 0.5), 2, 4)  # 1.5 of 4 columns, top row
    np.testing.assert_allclose(cells, [[1, 0.5, 0, 0], [0, 0, 0, 0]])
    with pytest.raises(ValueError):
        pooling.box_to_cells((0.5, 0.1, 0.2, 0.9), 2, 4)


def test_box_pool_picks_the_tokens_under_the_box():
    grid = _two_tone_grid()[0]
    np.testing.assert_allclose(pooling.box_pool(grid, (0.5, 0.0, 1.0, 1.0)), [0, 1, 0], atol=1e-6)
    np.testing.assert_allclose(pooling.box_pool(grid, (0.25, 0.0, 0.75, 1.0)), _unit([1, 1, 0]), atol=1e-6)


def test_region_max_sim_ranks_by_the_best_region():
    query = _unit([1, 0, 0])
    regions = np.stack(
        [
            _unit([[0, 1, 0], [0.6, 0.8, 0], [0, 0, 1]]),  # best region 1: 0.6
            _unit([[0.9, 0.1, 0], [0, 1, 0], [1, 0, 0]]),  # best region 2: exactly the query
        ]
    )
    best, cells = pooling.region_max_sim(query, regions)
    np.testing.assert_allclose(best, [0.6, 1.0], atol=1e-6)
    assert cells.tolist() == [1, 2]


def test_pool_regions_keeps_the_global_mean_and_a_row_major_grid():
    rng = np.random.default_rng(1)
    grid = rng.standard_normal((2, 8, 6, 4)).astype(np.float32)
    out = pooling.pool(grid, pooling=pooling.REGIONS, rows=4, cols=3)
    np.testing.assert_allclose(out.vectors, pooling.mean_pool(grid), atol=1e-6)
    assert out.regions.shape == (2, 12, 4)
    # Cell 5 = row 1, col 2 = grid rows 2-3, columns 4-5.
    np.testing.assert_allclose(out.regions[0, 5], _unit(grid[0, 2:4, 4:6].mean(axis=(0, 1))), atol=1e-5)
    with pytest.raises(ValueError, match="unknown pooling"):
        pooling.pool(grid, pooling="max")


@pytest.mark.parametrize(
    "parts, text",
    [
        (ModelIdParts("dense:dinov2-small@sha256:0123456789ab"), "dense:dinov2-small@sha256:0123456789ab"),
        (ModelIdParts("dense:dinov2-small@sha256:0123456789ab", pooling="masked"),
         "dense:dinov2-small@sha256:0123456789ab+pooling=masked"),
        (ModelIdParts("dense:sapiens2-1b@sha256:0123456789ab", pooling="regions", storage="binary"),
         "dense:sapiens2-1b@sha256:0123456789ab+pooling=regions-4x3+storage=binary"),
        (ModelIdParts("dense:dinov2-small@sha256:0123456789ab", pooling="masked", segmenter="ba9876543210"),
         "dense:dinov2-small@sha256:0123456789ab+pooling=masked+segmenter=ba9876543210"),
        (ModelIdParts("openai-clip:ViT-L/14@336px@sha256:0123456789ab", storage="halfvec"),
         "openai-clip:ViT-L/14@336px@sha256:0123456789ab+storage=halfvec"),
    ],
)
def test_model_id_round_trips_and_defaults_add_nothing(parts, text):
    assert str(parts) == text
    assert parse_model_id(text) == parts
    assert compose_model_id(parts.encoder_model_id, pooling=parts.pooling, storage=parts.storage,
                            segmenter=parts.segmenter) == text
    assert parse_model_id(text).spec == parts.encoder_model_id.rsplit("@", 1)[0]
