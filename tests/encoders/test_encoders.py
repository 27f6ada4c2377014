"""The contract, on every backend, with tiny real architectures loaded through the product's code."""

import math

import numpy as np
import pytest
import torch

from encoders.base import ENSEMBLE_TEMPLATES, Encoder, ensemble_mean, ensemble_prompts, l2_normalize, siglip_calibrate
from encoders.errors import EncoderModalityError
from encoders.images import to_rgb
from encoders.registry import get_encoder

from tests.tiny_models import (
    DINOV2_TINY,
    OPEN_CLIP_TINY,
    OPENAI_CLIP_TINY,
    OPENAI_CLIP_TINY_RESNET,
    SIGLIP2_TINY,
    SIGLIP_TINY,
    TINY_LOGIT_BIAS,
    TINY_LOGIT_SCALE,
    make_images,
)

ALL = [OPEN_CLIP_TINY, OPENAI_CLIP_TINY, OPENAI_CLIP_TINY_RESNET, SIGLIP_TINY, SIGLIP2_TINY, DINOV2_TINY]
TEXT_CAPABLE = [OPEN_CLIP_TINY, OPENAI_CLIP_TINY, OPENAI_CLIP_TINY_RESNET, SIGLIP_TINY, SIGLIP2_TINY]
WITH_PATCHES = {OPEN_CLIP_TINY: (4, 4), OPENAI_CLIP_TINY: (2, 2), SIGLIP_TINY: (4, 4), DINOV2_TINY: (4, 4)}


def _unit(vectors: np.ndarray) -> bool:
    return np.allclose(np.linalg.norm(vectors, axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("spec", ALL)
def test_images_embed_to_unit_float32_rows_deterministically(models_dir, spec):
    encoder = get_encoder(spec, device="cpu")
    images = make_images()
    vectors = encoder.encode_images(images)
    assert isinstance(encoder, Encoder)
    assert vectors.shape == (len(images), encoder.dim) and vectors.dtype == np.float32
    assert _unit(vectors)
    np.testing.assert_array_equal(vectors, encoder.encode_images(images))
    singles = np.concatenate([encoder.encode_images([image]) for image in images])
    np.testing.assert_allclose(vectors, singles, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])  # distinct images, distinct vectors
    assert encoder.model_id.startswith(f"{spec}@sha256:") and len(encoder.model_id) == len(spec) + 20


@pytest.mark.parametrize("spec", ALL)
def test_batch_size_setting_does_not_change_vectors(models_dir, settings, spec):
    encoder = get_encoder(spec, device="cpu")
    settings.LOUPE_ENCODE_BATCH_SIZE = 64
    whole = encoder.encode_images(make_images())
    settings.LOUPE_ENCODE_BATCH_SIZE = 3
    np.testing.assert_allclose(encoder.encode_images(make_images()), whole, atol=1e-5)


@pytest.mark.parametrize("spec", TEXT_CAPABLE)
def test_texts_share_the_image_space(models_dir, spec):
    encoder = get_encoder(spec, device="cpu")
    texts = ["a photo of a dog", "red sled", "kids on a red sled"]
    vectors = encoder.encode_texts(texts)
    assert vectors.shape == (3, encoder.dim) == (3, encoder.encode_images(make_images()[:1]).shape[1])
    assert vectors.dtype == np.float32 and _unit(vectors)
    np.testing.assert_allclose(vectors, np.concatenate([encoder.encode_texts([t]) for t in texts]), atol=1e-5)
    np.testing.assert_array_equal(vectors, encoder.encode_texts(texts))


@pytest.mark.parametrize("spec", TEXT_CAPABLE)
def test_ensembling_is_the_renormalized_mean_of_normalized_templates_per_call(models_dir, spec):
    encoder = get_encoder(spec, device="cpu")
    plain_before = encoder.encode_texts(["dog", "red sled"])
    ensembled = encoder.encode_texts(["dog", "red sled"], ensemble=True)
    for row, word in zip(ensembled, ["dog", "red sled"], strict=True):
        per_template = encoder.encode_texts([t.replace("{}", word) for t in ENSEMBLE_TEMPLATES])
        expected = per_template.mean(axis=0)
        np.testing.assert_allclose(row, expected / np.linalg.norm(expected), atol=1e-5)
    assert _unit(ensembled)
    # The choice is per call: the shared encoder is unchanged afterwards.
    np.testing.assert_array_equal(encoder.encode_texts(["dog", "red sled"]), plain_before)


def test_ensemble_math_by_hand():
    assert ensemble_prompts(["dog"], ("a {}", "{}!")) == ["a dog", "dog!"]
    vectors = np.array([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [0.0, 1.0]], dtype=np.float32)  # 2 texts × 2 templates
    # text 0: (0.6, 0.8) and (0, 1) → mean (0.3, 0.9) → /sqrt(0.9); text 1: (1,0),(0,1) → (0.7071, 0.7071)
    np.testing.assert_allclose(
        ensemble_mean(vectors, n_templates=2), [[0.3 / math.sqrt(0.9), 0.9 / math.sqrt(0.9)], [0.70710678, 0.70710678]], atol=1e-6
    )
    np.testing.assert_array_equal(l2_normalize(np.zeros((1, 3))), np.zeros((1, 3), dtype=np.float32))


@pytest.mark.parametrize("spec", [OPEN_CLIP_TINY, OPENAI_CLIP_TINY])
def test_clip_style_calibration_is_identity(models_dir, spec):
    cos = np.array([-0.3, 0.0, 0.27], dtype=np.float32)
    np.testing.assert_array_equal(get_encoder(spec, device="cpu").calibrate_similarity(cos), cos)


@pytest.mark.parametrize("spec", [SIGLIP_TINY, SIGLIP2_TINY])
def test_siglip_calibration_reads_scale_and_bias_from_the_model(models_dir, spec):
    encoder = get_encoder(spec, device="cpu")
    assert (encoder.logit_scale, encoder.logit_bias) == (TINY_LOGIT_SCALE, TINY_LOGIT_BIAS)
    # By hand: 0.1 · e² − 3 = −2.2610944; e^2.2610944 = 9.59353; sigmoid = 1 / 10.59353 = 0.094397
    np.testing.assert_allclose(encoder.calibrate_similarity(np.array([0.1])), [0.094397], atol=1e-6)
    np.testing.assert_allclose(siglip_calibrate(np.array([0.0]), logit_scale=0.0, logit_bias=0.0), [0.5])


def test_siglip_scores_match_the_models_own_forward(models_dir):
    encoder = get_encoder(SIGLIP_TINY, device="cpu")
    images, texts = make_images()[:2], ["a photo of a dog", "red sled"]
    ours = encoder.calibrate_similarity(encoder.encode_texts(texts) @ encoder.encode_images(images).T)
    pixels = encoder.processor.image_processor(images=[i.convert("RGB") for i in images], return_tensors="pt")
    tokens = encoder.processor.tokenizer(texts, padding="max_length", max_length=encoder.max_length, return_tensors="pt")
    with torch.inference_mode():
        logits = encoder.model(**pixels, **tokens).logits_per_text
    np.testing.assert_allclose(ours, torch.sigmoid(logits).numpy(), atol=1e-5)


@pytest.mark.parametrize("spec", list(WITH_PATCHES))
def test_patch_features_are_a_unit_grid(models_dir, spec):
    encoder = get_encoder(spec, device="cpu")
    grid = encoder.patch_features(make_images()[:3])
    h, w = WITH_PATCHES[spec]
    assert encoder.supports_patches
    assert grid.shape == (3, h, w, encoder.dim) and grid.dtype == np.float32
    assert _unit(grid)
    np.testing.assert_allclose(grid[1:2], encoder.patch_features(make_images()[1:2]), atol=1e-5)


@pytest.mark.parametrize("spec", [OPENAI_CLIP_TINY_RESNET, SIGLIP2_TINY])
def test_architectures_without_a_token_grid_say_so(models_dir, spec):
    encoder = get_encoder(spec, device="cpu")
    assert not encoder.supports_patches
    with pytest.raises(EncoderModalityError, match="no patch features") as caught:
        encoder.patch_features(make_images()[:1])
    assert caught.value.code == "encoder_modality_unsupported"


def test_image_only_encoder_refuses_text(models_dir):
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    assert encoder.modalities == frozenset({"image"})
    assert encoder.default_min_score == pytest.approx(0.3)
    with pytest.raises(EncoderModalityError, match="image-only") as caught:
        encoder.encode_texts(["a dog"])
    assert caught.value.code == "encoder_modality_unsupported"


def test_empty_inputs_give_empty_arrays(models_dir):
    encoder = get_encoder(OPEN_CLIP_TINY, device="cpu")
    assert encoder.encode_images([]).shape == (0, encoder.dim)
    assert encoder.encode_texts([]).shape == (0, encoder.dim)


def test_dense_pooling_is_the_mean_of_the_patch_grid(models_dir):
    encoder = get_encoder(DINOV2_TINY, device="cpu")
    images = [to_rgb(image) for image in make_images()[:2]]
    raw_grid = encoder._patch_grid(images)
    np.testing.assert_allclose(encoder._embed_images(images), raw_grid.mean(axis=(1, 2)), atol=1e-5)


def test_open_clip_text_skips_padding_after_the_longest_text_with_the_same_vectors(models_dir):
    """CLIP's causal text tower reads the end-of-text token, so the padding after the longest text
    changes nothing read: the trimmed pass equals open_clip's own encode_text over the full context."""
    from encoders import open_clip_encoder

    encoder = get_encoder(OPEN_CLIP_TINY)
    assert open_clip_encoder._trims_padding(encoder.model)
    texts = ["red sled", "a dog on the red sled", "cat"]
    tokens = encoder.tokenizer(texts)
    assert tokens.shape[1] == 16  # the tiny tower's whole context, mostly padding here
    with torch.inference_mode():
        full = encoder.model.encode_text(tokens).numpy()
    seen = []
    hook = encoder.model.transformer.register_forward_pre_hook(lambda module, args, kwargs: seen.append(args[0].shape[1]),
                                                               with_kwargs=True)
    try:
        np.testing.assert_allclose(encoder._embed_texts(texts), full, atol=1e-5)
    finally:
        hook.remove()
    longest = int((tokens != 0).sum(dim=1).max())
    assert seen == [longest] and longest < 16  # the transformer ran on the used positions only
    # One text alone is trimmed to its own length and still equals its row of the batch.
    np.testing.assert_allclose(encoder._embed_texts(["cat"])[0], full[2], atol=1e-5)


def test_open_clip_text_tower_in_bf16_where_the_cpu_has_it_stays_within_tolerance_of_float32(models_dir, settings):
    """LOUPE_CPU_BF16 (auto: AMX or AVX512-BF16) puts the text tower's weights in bfloat16: query
    texts then read half the bytes. The vectors stay within a tolerance of float32's, and the image
    tower is untouched (it runs in the precision the album's stored vectors were made in)."""
    from encoders.open_clip_encoder import OpenClipEncoder
    from encoders.spec import EncoderSpec

    spec = EncoderSpec.parse(OPEN_CLIP_TINY)
    settings.LOUPE_CPU_BF16 = "false"
    full = OpenClipEncoder(spec, device="cpu")
    settings.LOUPE_CPU_BF16 = "true"
    half = OpenClipEncoder(spec, device="cpu")
    assert full.model.transformer.get_cast_dtype() == torch.float32
    assert half.model.transformer.get_cast_dtype() == torch.bfloat16
    assert {p.dtype for p in half.model.visual.parameters()} == {torch.float32}
    texts = ["red sled", "a dog on the red sled", "cat", "kids painting"]
    cosines = np.sum(half.encode_texts(texts) * full.encode_texts(texts), axis=1)
    assert cosines.min() > 0.999 and half.encode_texts(texts).dtype == np.float32
    images = make_images()[:2]
    np.testing.assert_array_equal(half.encode_images(images), full.encode_images(images))


@pytest.mark.parametrize("spec", [OPEN_CLIP_TINY, OPENAI_CLIP_TINY])
def test_vit_image_towers_asked_for_bf16_on_the_cpu_run_a_bf16_copy_within_tolerance_of_float32(models_dir, spec):
    """Albums made in bf16 on a CPU embed through a bfloat16 copy of a ViT image tower (autocast ran
    it slower than that copy); float32 albums keep the untouched float32 tower, bit for bit."""
    from encoders.torch_runtime import image_precision

    encoder = get_encoder(spec, device="cpu")
    images = [to_rgb(image) for image in make_images()[:3]]
    float32 = encoder._embed_images(images)
    with image_precision("fp32"):
        np.testing.assert_array_equal(encoder._embed_images(images), float32)
    with image_precision("bf16"):
        half = encoder._embed_images(images)
    copy = encoder._visual_bf16._copy
    # Every matrix in bf16 (clip's own LayerNorm keeps float32 weights: it computes in float32).
    assert copy is not None and {p.dtype for p in copy.parameters() if p.dim() >= 2} == {torch.bfloat16}
    assert {p.dtype for p in encoder.model.visual.parameters()} == {torch.float32}
    assert half.dtype == np.float32 and half.shape == float32.shape
    cosines = np.sum(l2_normalize(half) * l2_normalize(float32), axis=1)
    assert cosines.min() > 0.999
    np.testing.assert_array_equal(encoder._embed_images(images), float32)  # the float32 path is unchanged after


def test_resnet_image_towers_keep_autocast_for_bf16(models_dir):
    """Convolutional towers gain from autocast as they are: no copy is kept for them."""
    encoder = get_encoder(OPENAI_CLIP_TINY_RESNET, device="cpu")
    assert encoder._visual_bf16 is None
