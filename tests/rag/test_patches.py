"""Patch grids: boxes, area-weighted pooling of token grids, and both ways of embedding patches
through real encoders (EfficientNet-Lite0 with its ImageNet weights; a tiny OpenCLIP)."""

import io

import numpy as np
import pytest
from PIL import Image

from encoders.images import to_rgb
from tests.tiny_models import SIGLIP2_TINY
from search.rag.patches import CROPS, TOKENS, _reflect_pad, cell_boxes, cells_per_side, image_patches


def test_cell_boxes_tile_the_image_exactly():
    boxes = cell_boxes(3, 100, 50)
    assert len(boxes) == 9
    assert boxes[0] == (0, 0, (0, 0, 33, 17))
    assert boxes[-1] == (2, 2, (67, 33, 100, 50))
    area = sum((x1 - x0) * (y1 - y0) for _, _, (x0, y0, x1, y1) in boxes)
    assert area == 100 * 50
    assert cells_per_side(448, 64) == 7 and cells_per_side(100, 200) == 1


def test_reflect_padding_puts_the_square_in_the_centre_fraction():
    square = Image.fromarray(np.arange(64 * 64 * 3, dtype=np.uint32).reshape(64, 64, 3).astype(np.uint8))
    padded = _reflect_pad(square, 0.8)
    assert padded.width == padded.height == 80
    np.testing.assert_array_equal(np.asarray(padded)[8:72, 8:72], np.asarray(square))
    assert _reflect_pad(square, 1.0) is square


@pytest.fixture
def efficientnet(settings):
    from encoders.registry import get_encoder

    settings.LOUPE_DEVICE = "cpu"
    return get_encoder("dense:efficientnet-lite0")


def quadrants(size: int = 200) -> Image.Image:
    """Real photos in a 2×2 checkerboard: cat | coffee over coffee | cat."""
    from skimage import data

    cat = Image.fromarray(data.chelsea()).resize((size, size))
    coffee = Image.fromarray(data.coffee()).resize((size, size))
    board = Image.new("RGB", (2 * size, 2 * size))
    for box, tile in (((0, 0), cat), ((size, 0), coffee), ((0, size), coffee), ((size, size), cat)):
        board.paste(tile, box)
    return board


@pytest.mark.parametrize("source", [TOKENS, CROPS])
def test_patches_of_a_real_backbone_tell_the_quadrants_apart(efficientnet, source):
    grid = image_patches(efficientnet, quadrants(), resolution=224, patch_size=112, source=source)
    assert grid.source == source
    assert [(p.row, p.col) for p in grid.patches] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert grid.patches[3].box == (200, 200, 400, 400)  # boxes in the original image's pixels
    vectors = grid.vectors
    assert vectors.shape == (4, 1280)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    sims = vectors @ vectors.T
    # Each cat patch is closer to the other cat patch than to either coffee patch, and vice versa.
    assert sims[0, 3] > max(sims[0, 1], sims[0, 2])
    assert sims[1, 2] > max(sims[1, 0], sims[1, 3])


def test_more_patches_than_tokens_are_capped_at_the_token_grid(efficientnet):
    grid = image_patches(efficientnet, Image.new("RGB", (64, 64), "white"), resolution=448, patch_size=16, source=TOKENS)
    assert len(grid.patches) == 49  # EfficientNet-Lite0 has a 7×7 grid


def test_crop_patches_embed_each_patch_as_an_image(efficientnet):
    photo = Image.new("RGB", (100, 100), (200, 40, 40))
    grid = image_patches(efficientnet, photo, resolution=224, patch_size=112, source=CROPS)
    assert grid.source == CROPS and len(grid.patches) == 4
    expected = efficientnet.encode_images([photo.resize((224, 224), Image.Resampling.BICUBIC).crop((0, 0, 112, 112))])[0]
    np.testing.assert_allclose(grid.patches[0].vector, expected, rtol=1e-4, atol=1e-5)


def test_an_encoder_without_a_token_grid_falls_back_to_crops(settings, tiny_models_dir):
    from encoders.registry import get_encoder

    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_DEVICE = "cpu"
    encoder = get_encoder(SIGLIP2_TINY)  # NaFlex: no fixed token grid
    assert not encoder.supports_patches
    photo = Image.new("RGB", (64, 64), (10, 200, 10))
    grid = image_patches(encoder, photo, resolution=64, patch_size=32, source=TOKENS)
    assert grid.source == CROPS and len(grid.patches) == 4
    assert grid.vectors.shape == (4, encoder.dim)


def test_the_view_fraction_of_centre_cropping_backbones(efficientnet, settings, tiny_models_dir):
    from encoders.registry import get_encoder

    assert efficientnet.patch_view_fraction == pytest.approx(0.875)  # timm: resize 256, crop 224
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    tiny_dinov2 = get_encoder("dense:tiny-dinov2")
    assert tiny_dinov2.patch_view_fraction == pytest.approx(32 / 40)  # its processor: short side 40, crop 32


def _left_and_right_change(encoder):
    board = Image.new("RGB", (224, 224), (30, 30, 30))
    board.paste((255, 255, 255), (0, 0, 12, 224))  # a white band along the left edge only
    grid = image_patches(encoder, board, resolution=224, patch_size=32, source=TOKENS)
    plain = image_patches(encoder, Image.new("RGB", (224, 224), (30, 30, 30)), resolution=224, patch_size=32, source=TOKENS)
    change = [1 - float(a.vector @ b.vector) for a, b in zip(grid.patches, plain.patches, strict=True)]
    return np.mean([change[r * 7] for r in range(7)]), np.mean([change[r * 7 + 6] for r in range(7)])


def test_a_patch_at_the_edge_sees_the_edge(efficientnet, monkeypatch):
    left, right = _left_and_right_change(efficientnet)
    assert left > 3 * right
    # Without the padding the transform's centre crop cuts the band off: the left column barely moves.
    monkeypatch.setattr(type(efficientnet), "patch_view_fraction", 1.0)
    left_cropped, _ = _left_and_right_change(efficientnet)
    assert left > 2 * left_cropped


def test_near_uniform_patches_are_background(efficientnet):
    """A photo cut out on black, JPEG-compressed as the RAG Vision Engine's demo cars are: the black
    cells are background, the photo's cells are not, whichever way the patches are embedded."""
    from skimage import data

    canvas = Image.new("RGB", (448, 224), (0, 0, 0))
    canvas.paste(Image.fromarray(data.chelsea()).resize((224, 224)), (224, 0))  # the right half
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=85)
    photo = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    for source in (TOKENS, CROPS):
        grid = image_patches(efficientnet, photo, resolution=224, patch_size=56, source=source, background_std=2.0)
        assert grid.foreground.reshape(4, 4).tolist() == [[False, False, True, True]] * 4
    assert image_patches(efficientnet, photo, resolution=224, patch_size=56, source=TOKENS).foreground is None
    # 0 turns it off: every patch counts, a perfectly flat one too.
    assert image_patches(efficientnet, photo, resolution=224, patch_size=56, source=TOKENS, background_std=0).foreground.all()
    # A transparent canvas is composited onto one colour when decoded, so it is background too.
    rgba = Image.new("RGBA", (224, 224), (0, 0, 0, 0))
    rgba.paste(Image.fromarray(data.chelsea()).resize((112, 224)), (0, 0))
    grid = image_patches(efficientnet, to_rgb(rgba), resolution=224, patch_size=112, source=TOKENS, background_std=2.0)
    assert grid.foreground.tolist() == [True, False, True, False]
