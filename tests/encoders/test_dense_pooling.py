"""Dense backbones as albums use them: pooling through the real loading code (tiny DINOv2 and a tiny
Sapiens2-shaped checkpoint, random weights), masks through the backbone's own preprocessing, and
Sapiens2's checkpoint path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from encoders import pooling
from encoders.catalog import SAPIENS2_RESPONSIBLE_USE, responsible_use_notice
from encoders.errors import EncoderSpecError, EncoderWeightsInvalid, EncoderWeightsMissing
from encoders.pooled_encoder import OPAQUE_ALPHA, PooledEncoder
from encoders.registry import get_encoder, validate_spec
from tests.tiny_models import (
    DINOV2_TINY,
    OPEN_CLIP_TINY,
    SAPIENS2_INPUT,
    SAPIENS2_TINY,
    sapiens2_state_dict,
    save_sapiens2,
)


def _noise(size=(40, 40), seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _with_alpha(image: Image.Image, alpha: np.ndarray) -> Image.Image:
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.fromarray(alpha.astype(np.uint8), "L"))
    return rgba


def test_mean_pooling_is_the_encoders_own_vectors(models_dir):
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    pooled = PooledEncoder(encoder)
    images = [_noise(seed=1), _noise(seed=2)]
    assert pooled.model_id == encoder.model_id  # the default adds nothing: old albums keep their ids
    np.testing.assert_array_equal(pooled.embed(images).vectors, encoder.encode_images(images))


def test_mask_coverage_goes_through_the_processors_resize_and_crop(models_dir):
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    # Tiny DINOv2: shortest edge 40, centre crop 32, patch 8 → a 4×4 grid over pixels 4..36 of a 40×40 image.
    mask = np.zeros((40, 40), dtype=np.uint8)
    mask[:, :20] = 255
    [coverage] = encoder.cell_coverage([Image.fromarray(mask, "L")], (4, 4))
    np.testing.assert_allclose(coverage[:, :2], 1.0, atol=0.02)
    np.testing.assert_allclose(coverage[:, 2:], 0.0, atol=0.02)
    assert encoder.cell_coverage([None], (4, 4)) == [None]


def test_masked_pooling_averages_the_alpha_foreground(models_dir):
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    pooled = PooledEncoder(encoder, pooling="masked")
    assert pooled.model_id == encoder.model_id + "+pooling=masked"
    base = _noise(seed=3)
    alpha = np.zeros((40, 40))
    alpha[:, :20] = 255
    half, opaque, flat = _with_alpha(base, alpha), _with_alpha(base, np.full((40, 40), 255)), base
    empty = _with_alpha(base, np.zeros((40, 40)))
    out = pooled.embed([half, opaque, flat, empty])
    grid = encoder.raw_grid([half])  # composited over white, as the model saw it
    left = np.zeros((4, 4))
    left[:, :2] = 1
    np.testing.assert_allclose(out.vectors[0], pooling.weighted_pool(grid[0], left), atol=1e-5)
    assert out.notes[0] == ""
    # No usable mask: the mean, with the reason recorded.
    for i, note in ((1, OPAQUE_ALPHA), (2, pooling.NO_MASK), (3, pooling.EMPTY_MASK)):
        np.testing.assert_allclose(out.vectors[i], pooling.mean_pool(encoder.raw_grid([[half, opaque, flat, empty][i]]))[0],
                                   atol=1e-5)
        assert out.notes[i] == note
    assert not np.allclose(out.vectors[0], out.vectors[1], atol=1e-3)  # the mask changed the vector


def test_regions_pooling_gives_a_grid_of_unit_tokens(models_dir):
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    pooled = PooledEncoder(encoder, pooling="regions")
    assert pooled.model_id.endswith("+pooling=regions-4x3")
    out = pooled.embed([_noise(seed=4), _noise(seed=5)])
    assert out.regions.shape == (2, 12, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(out.regions, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out.vectors, encoder.encode_images([_noise(seed=4), _noise(seed=5)]), atol=1e-5)


def test_pooling_needs_a_dense_backbone(models_dir):
    with pytest.raises(EncoderSpecError, match="dense backbone"):
        PooledEncoder(get_encoder(OPEN_CLIP_TINY, device="cpu"), pooling="regions")


def test_a_box_over_the_whole_crop_is_the_mean_and_a_half_box_its_half(models_dir):
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    pooled = PooledEncoder(encoder, pooling="regions")
    image = _noise(seed=6)
    np.testing.assert_allclose(pooled.box_vector(image, (0, 0, 1, 1)), encoder.encode_images([image])[0], atol=1e-5)
    grid = encoder.raw_grid([image])[0]
    left = np.zeros((4, 4))
    left[:, :2] = 1
    np.testing.assert_allclose(pooled.box_vector(image, (0, 0, 0.5, 1)), pooling.weighted_pool(grid, left), atol=1e-4)
    with pytest.raises(ValueError, match="outside"):
        pooled.box_vector(image, (0.0, 0.0, 0.05, 1.0))  # only the 4 px the centre crop drops


# --- Sapiens2 ------------------------------------------------------------------------------------


def test_sapiens2_loads_from_a_local_checkpoint_with_its_own_input_shape(models_dir):
    encoder = get_encoder(SAPIENS2_TINY, device="cpu")
    assert encoder.dim == 32
    assert encoder.model_id.startswith(SAPIENS2_TINY + "@sha256:")
    assert encoder.modalities == frozenset({"image"})
    images = [_noise((90, 120), seed=7), _noise((300, 200), seed=8)]
    grid = encoder.patch_features(images)
    h, w = SAPIENS2_INPUT
    assert grid.shape == (2, h // 8, w // 8, 32)  # 64×48 input, patch 8: the 8×8 trained grid was resized
    np.testing.assert_allclose(np.linalg.norm(grid, axis=-1), 1.0, atol=1e-5)
    vectors = encoder.encode_images(images)
    np.testing.assert_allclose(vectors, encoder.encode_images(images), atol=0)  # deterministic
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)
    # No crop: a box over the left half of an image at the input size is the left half of the grid.
    pooled = PooledEncoder(encoder, pooling="regions")
    at_input = _noise((w, h), seed=9)
    raw = encoder.raw_grid([at_input])[0]
    np.testing.assert_allclose(pooled.box_vector(at_input, (0, 0, 0.5, 1)), pooling.box_pool(raw, (0, 0, 0.5, 1)), atol=1e-5)


def test_sapiens2_names_validate_and_carry_the_responsible_use_notice(models_dir):
    assert str(validate_spec("dense:sapiens2-1b")) == "dense:sapiens2-1b"
    assert str(validate_spec("dense:sapiens2-0.4b")) == "dense:sapiens2-0.4b"
    with pytest.raises(EncoderSpecError):
        validate_spec("dense:sapiens3-1b")
    assert responsible_use_notice("dense:sapiens2-1b") == SAPIENS2_RESPONSIBLE_USE
    assert "identify" in SAPIENS2_RESPONSIBLE_USE and "biometric" in SAPIENS2_RESPONSIBLE_USE
    assert responsible_use_notice("dense:dinov2-small") is None


def test_a_missing_sapiens2_checkpoint_names_the_file_and_is_never_downloaded(empty_models_dir, settings):
    settings.LOUPE_ALLOW_DOWNLOADS = True
    with pytest.raises(EncoderWeightsMissing) as caught:
        get_encoder("dense:sapiens2-2b", device="cpu")
    assert str(empty_models_dir / "dense" / "sapiens2-2b" / "model.safetensors") in caught.value.message
    assert "license" in caught.value.message


def test_a_checkpoint_of_another_layout_fails_with_the_keys(settings, tmp_path):
    settings.LOUPE_MODELS_DIR = tmp_path
    settings.LOUPE_ALLOWED_ENCODERS = []
    state = sapiens2_state_dict()
    state["backbone.layers.0.attn.q_norm.weight"] = state.pop("backbone.layers.0.ln1.weight")
    save_sapiens2(tmp_path, "sapiens2-9b", state)
    with pytest.raises(EncoderWeightsInvalid) as caught:
        get_encoder("dense:sapiens2-9b", device="cpu")
    assert "layers.0.attn.q_norm.weight" in caught.value.message and "layers.0.ln1.weight" in caught.value.message

    directory = save_sapiens2(tmp_path, "sapiens2-8b")
    (directory / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(EncoderWeightsInvalid, match="safetensors"):
        get_encoder("dense:sapiens2-8b", device="cpu")

    directory = save_sapiens2(tmp_path, "sapiens2-7b")
    (directory / "config.json").write_text(json.dumps({"num_heads": 5}))  # 32 wide: not divisible
    with pytest.raises(EncoderWeightsInvalid, match="heads"):
        get_encoder("dense:sapiens2-7b", device="cpu")


def test_grid_poolings_are_byte_identical_whatever_the_batching(models_dir):
    """Grids are pooled a bounded number of images at a time; with multiples of 8 rows per forward
    pass (what the indexer guarantees) the rows do not depend on how a batch was split."""
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    images = [_noise(seed=20 + i) for i in range(16)]
    for name in ("regions", "masked"):
        pooled = PooledEncoder(encoder, pooling=name)
        by_8, by_16 = pooled.embed(images, batch_size=8), pooled.embed(images, batch_size=16)
        np.testing.assert_array_equal(by_8.vectors, by_16.vectors)
        if name == "regions":
            np.testing.assert_array_equal(by_8.regions, by_16.regions)


def _save_tiny_segmenter(directory):
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    config = SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], patch_sizes=[7, 3], strides=[4, 2],
        num_attention_heads=[1, 1], mlp_ratios=[2, 2], decoder_hidden_size=16, num_labels=2,
        id2label={0: "background", 1: "person"}, label2id={"background": 0, "person": 1},
    )
    SegformerForSemanticSegmentation(config).save_pretrained(directory)
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(directory)


def test_a_configured_person_segmenter_masks_images_without_one(models_dir, settings):
    import uuid

    from encoders.segmenter import get_person_segmenter
    from search.query_encoding import EmbeddingModelMismatchError, encode_locally

    name = f"tiny-person-{uuid.uuid4().hex[:8]}"
    _save_tiny_segmenter(models_dir / "segmenters" / name)
    settings.LOUPE_PERSON_SEGMENTER = name
    segmenter = get_person_segmenter(device="cpu")
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    pooled = PooledEncoder(encoder, pooling="masked", segmenter=segmenter)
    assert pooled.model_id == f"{encoder.model_id}+pooling=masked+segmenter={segmenter.checksum}"
    assert PooledEncoder(encoder, pooling="regions", segmenter=segmenter).model_id == encoder.model_id + "+pooling=regions-4x3"

    photo = _noise(seed=30)
    [mask] = segmenter.masks([photo])
    assert mask.size == photo.size and mask.mode == "L" and 0 < np.asarray(mask).mean() < 255
    out = pooled.embed([photo])
    assert out.notes == [""]  # masked by the model, no fallback
    [coverage] = encoder.cell_coverage([mask], (4, 4))
    np.testing.assert_allclose(out.vectors[0], pooling.weighted_pool(encoder.raw_grid([photo])[0],
                                                                      np.where(coverage >= pooling.MIN_COVERAGE, coverage, 0)),
                               atol=1e-5)
    # An image's own alpha still wins over the model.
    alpha = np.zeros((40, 40))
    alpha[:, :20] = 255
    cutout = _with_alpha(photo, alpha)
    np.testing.assert_allclose(pooled.embed([cutout]).vectors, PooledEncoder(encoder, pooling="masked").embed([cutout]).vectors,
                               atol=1e-6)

    # Query encoding refuses vectors made under another segmenter (or none) rather than compare them.
    settings.LOUPE_PERSON_SEGMENTER = ""
    with pytest.raises(EmbeddingModelMismatchError, match="LOUPE_PERSON_SEGMENTER"):
        encode_locally(model_id=pooled.model_id, texts={}, image_bytes=None, ensemble=False)
