import hashlib

import pytest

from encoders.errors import EncoderWeightsMissing
from encoders.layouts.dense import efficientnet_lite0_package_file
from encoders.registry import get_encoder
from encoders.spec import EncoderSpec
from encoders.weights import find_weights, resolve_weights


@pytest.mark.parametrize(
    ("spec", "relative_file"),
    [
        ("openai-clip:ViT-B/32", "openai-clip/ViT-B-32.pt"),
        ("openai-clip:ViT-L/14@336px", "openai-clip/ViT-L-14-336px.pt"),
        ("open-clip:ViT-B-32/laion2b_s34b_b79k", "open-clip/ViT-B-32/laion2b_s34b_b79k/open_clip_model.safetensors"),
        ("siglip:google/siglip2-base-patch16-224", "siglip/google/siglip2-base-patch16-224/model.safetensors"),
        ("dense:dinov2-small", "dense/dinov2-small/model.safetensors"),
    ],
)
def test_missing_weights_name_the_file_and_directory(empty_models_dir, spec, relative_file):
    with pytest.raises(EncoderWeightsMissing) as caught:
        resolve_weights(EncoderSpec.parse(spec), import_libraries=False)
    error = caught.value
    expected = empty_models_dir / relative_file
    assert str(expected) in error.message
    assert str(expected.parent) in error.message
    assert error.directory == str(expected.parent)
    assert str(expected) in error.files
    assert error.code == "encoder_weights_missing"
    assert "LOUPE_ALLOW_DOWNLOADS" in error.message


def test_get_encoder_raises_weights_missing_before_importing_weights(empty_models_dir):
    with pytest.raises(EncoderWeightsMissing, match="dense/dinov2-small"):
        get_encoder("dense:dinov2-small", device="cpu")


def test_models_dir_wins_over_the_package_for_efficientnet(empty_models_dir):
    spec = EncoderSpec.parse("dense:efficientnet-lite0")
    packaged = efficientnet_lite0_package_file()
    assert packaged is not None and packaged.name == "efficientnet-lite0-57934424.pth"
    assert find_weights(spec).source == "package"
    placed = empty_models_dir / "dense" / "efficientnet-lite0" / packaged.name
    placed.parent.mkdir(parents=True)
    placed.write_bytes(packaged.read_bytes())
    found = find_weights(spec)
    assert (found.path, found.source) == (placed, "models_dir")


def test_model_id_carries_the_weights_checksum(models_dir):
    encoder = get_encoder("openai-clip:tiny-vit", device="cpu")
    digest = hashlib.sha256((models_dir / "openai-clip" / "tiny-vit.pt").read_bytes()).hexdigest()[:12]
    assert encoder.model_id == f"openai-clip:tiny-vit@sha256:{digest}"
