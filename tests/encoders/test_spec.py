import dataclasses

import pytest

from encoders.errors import EncoderSpecError
from encoders.spec import EncoderSpec

ROUND_TRIPS = [
    ("openai-clip:ViT-B/32", "openai-clip", "ViT-B/32", None),
    ("openai-clip:ViT-L/14@336px", "openai-clip", "ViT-L/14@336px", None),
    ("openai-clip:RN50x4", "openai-clip", "RN50x4", None),
    ("open-clip:ViT-B-32/laion2b_s34b_b79k", "open-clip", "ViT-B-32", "laion2b_s34b_b79k"),
    ("open-clip:ViT-L-14/dfn2b_s39b", "open-clip", "ViT-L-14", "dfn2b_s39b"),
    ("siglip:google/siglip2-base-patch16-224", "siglip", "google/siglip2-base-patch16-224", None),
    ("dense:dinov2-small", "dense", "dinov2-small", None),
    ("dense:efficientnet-lite0", "dense", "efficientnet-lite0", None),
]


@pytest.mark.parametrize(("text", "backend", "model", "weights"), ROUND_TRIPS)
def test_parse_splits_per_backend_and_round_trips(text, backend, model, weights):
    spec = EncoderSpec.parse(text)
    assert (spec.backend, spec.model, spec.weights) == (backend, model, weights)
    assert str(spec) == text
    assert EncoderSpec.parse(str(spec)) == spec


def test_spec_is_frozen_and_hashable():
    spec = EncoderSpec.parse("dense:dinov2-small")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.model = "other"  # type: ignore[misc]
    assert {spec: 1}[EncoderSpec("dense", "dinov2-small")] == 1


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "ViT-B/32",  # no backend
        "clip:ViT-B/32",  # unknown backend
        "open-clip:ViT-B-32",  # no pretrained tag
        "open-clip:ViT-B-32/",
        "open-clip:ViT-B-32/tag/extra",
        "siglip:../../etc/passwd",
        "siglip:/abs/dir",
        "siglip:google/siglip base",
        "dense:",
        "dense:.hidden",
        "dense:" + "x" * 300,
    ],
)
def test_bad_specs_fail_with_the_valid_backends_listed(text):
    with pytest.raises(EncoderSpecError) as caught:
        EncoderSpec.parse(text)
    message = str(caught.value)
    for backend in ("openai-clip", "open-clip", "siglip", "dense"):
        assert backend in message
    assert caught.value.code == "encoder_spec_invalid"
    assert isinstance(caught.value, ValueError)


def test_unknown_backend_is_named_in_the_message():
    with pytest.raises(EncoderSpecError, match="'clip' is not a known backend"):
        EncoderSpec.parse("clip:ViT-B/32")


def test_encoder_and_vlm_specs_read_the_backend_and_model_names_alike():
    """One splitter and one rule for model names (encoders/spec.py): they had drifted, and only the
    VLM spec accepted a backend in capitals."""
    import pytest

    from encoders.errors import EncoderSpecError
    from encoders.spec import EncoderSpec
    from encoders.vlm.errors import VlmSpecError
    from encoders.vlm.spec import VlmSpec

    assert str(EncoderSpec.parse(" OPEN-CLIP:ViT-B-32/laion2b_s34b_b79k ")) == "open-clip:ViT-B-32/laion2b_s34b_b79k"
    assert VlmSpec.parse("Transformers:Qwen/Qwen2-VL-2B-Instruct").backend == "transformers"
    for bad in ("dense:../etc", "dense:a/.hidden", "dense:"):
        with pytest.raises(EncoderSpecError):
            EncoderSpec.parse(bad)
    for bad in ("transformers:../etc", "transformers:a/.hidden", "transformers:"):
        with pytest.raises(VlmSpecError):
            VlmSpec.parse(bad)
