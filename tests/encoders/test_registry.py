import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from encoders.backends import Backend, IMAGE_ONLY, register_backend
from encoders.errors import EncoderNotAllowed, EncoderSpecError
from encoders.spec import EncoderSpec
from encoders.registry import (
    default_min_score,
    default_text_encoder,
    get_encoder,
    known_specs,
    spec_dim,
    spec_modalities,
    text_search,
    validate_spec,
)

from tests.tiny_models import DINOV2_TINY, OPEN_CLIP_TINY, OPENAI_CLIP_TINY, SIGLIP_TINY

REPO = Path(__file__).resolve().parents[2]


def test_web_path_never_imports_torch(tmp_path):
    script = """
import json, sys
import django
django.setup()
from encoders.registry import validate_spec, known_specs, spec_modalities, default_min_score, spec_dim
from encoders.errors import EncoderWeightsMissing
from encoders.weights import find_weights, weights_missing_error
import encoders.base
spec = validate_spec("open-clip:ViT-B-32/laion2b_s34b_b79k")
rows = known_specs()
modalities = spec_modalities("dense:efficientnet-lite0")
score = default_min_score("siglip:google/siglip2-base-patch16-224")
dim = spec_dim("openai-clip:ViT-B/32")
print(json.dumps({"torch": "torch" in sys.modules, "open_clip": "open_clip" in sys.modules,
                  "transformers": "transformers" in sys.modules, "rows": len(rows),
                  "modalities": sorted(modalities), "score": score, "dim": dim}))
"""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "LOUPE_VAR_DIR": str(tmp_path),
        "LOUPE_MODELS_DIR": str(tmp_path / "models"),
    }
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {
        "torch": False,
        "open_clip": False,
        "transformers": False,
        "rows": report["rows"],
        "modalities": ["image", "text"],  # words through its ImageNet concepts
        "score": 0.005,
        "dim": 512,
    }
    assert report["rows"] > 10


def test_validate_spec_accepts_catalog_and_placed_models(models_dir):
    assert str(validate_spec("openai-clip:ViT-L/14@336px")) == "openai-clip:ViT-L/14@336px"
    assert validate_spec("open-clip:ViT-B-32/anything_tag").weights == "anything_tag"  # tag checked at load
    assert str(validate_spec(OPEN_CLIP_TINY)) == OPEN_CLIP_TINY  # architecture defined by its placed config
    assert str(validate_spec(OPENAI_CLIP_TINY)) == OPENAI_CLIP_TINY


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("openai-clip:ViT-Z/99", "the CLIP package has no model 'ViT-Z/99'"),
        ("open-clip:NoSuchArch/tag", "open_clip has no architecture 'NoSuchArch'"),
        ("dense:resnet-9000", "no dense backbone 'resnet-9000'"),
    ],
)
def test_validate_spec_rejects_models_the_backend_does_not_know(models_dir, spec, fragment):
    with pytest.raises(EncoderSpecError, match=fragment):
        validate_spec(spec)


def test_allow_list_refuses_other_specs(models_dir, settings):
    settings.LOUPE_ALLOWED_ENCODERS = ["dense:efficientnet-lite0", "siglip:google/siglip2-base-patch16-224"]
    assert str(validate_spec("dense:efficientnet-lite0")) == "dense:efficientnet-lite0"
    with pytest.raises(EncoderNotAllowed) as caught:
        validate_spec("openai-clip:ViT-B/32")
    assert caught.value.code == "encoder_not_allowed"
    assert "dense:efficientnet-lite0" in caught.value.message
    rows = {row["spec"]: row for row in known_specs()}
    assert rows["dense:efficientnet-lite0"]["allowed"] is True
    assert rows["openai-clip:ViT-B/32"]["allowed"] is False


def test_modalities_scores_and_dims_without_loading():
    assert spec_modalities("dense:dinov2-small") == frozenset({"image"})
    # No text tower, but an ImageNet head: words search it through WordNet concepts.
    assert spec_modalities("dense:efficientnet-lite0") == frozenset({"image", "text"})
    assert [text_search(s) for s in ("dense:efficientnet-lite0", "dense:dinov2-small", "openai-clip:ViT-B/32")] == [
        "concepts", None, "embedding"]
    assert spec_modalities("openai-clip:ViT-B/32") == frozenset({"image", "text"})
    assert default_min_score("siglip:google/siglip-base-patch16-224") == pytest.approx(0.005)
    assert default_min_score("open-clip:ViT-B-32/laion2b_s34b_b79k") == pytest.approx(0.2)
    assert spec_dim("open-clip:ViT-L-14/dfn2b_s39b") == 768
    assert spec_dim("dense:efficientnet-lite0") == 1280


def test_known_specs_report_placed_weights(models_dir):
    rows = {row["spec"]: row for row in known_specs()}
    for spec in (OPEN_CLIP_TINY, OPENAI_CLIP_TINY, SIGLIP_TINY, DINOV2_TINY, "dense:efficientnet-lite0"):
        assert rows[spec]["weights_present"] is True, spec
    assert rows[SIGLIP_TINY]["dim"] == 32
    assert rows[OPEN_CLIP_TINY]["dim"] == 32
    missing = rows["open-clip:ViT-B-32/laion2b_s34b_b79k"]
    assert missing["weights_present"] is False
    assert missing["weights_location"] == str(
        models_dir / "open-clip" / "ViT-B-32" / "laion2b_s34b_b79k" / "open_clip_model.safetensors"
    )
    assert set(missing) >= {"spec", "backend", "modalities", "dim", "default_min_score", "weights_present"}


def test_duplicate_backend_registration_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_backend(
            Backend("dense", "x:y", modalities=IMAGE_ONLY, default_min_score=0.0, weights_in_spec=False, grammar="")
        )


def test_one_cached_encoder_per_spec_and_device_across_threads(models_dir):
    with ThreadPoolExecutor(max_workers=4) as pool:
        encoders = list(pool.map(lambda _: get_encoder(DINOV2_TINY, device="cpu"), range(8)))
    assert all(encoder is encoders[0] for encoder in encoders)
    assert get_encoder(DINOV2_TINY) is encoders[0]  # LOUPE_DEVICE=cpu resolves to the same key
    assert encoders[0].device == "cpu"


def test_a_loaded_encoder_is_found_again_without_validating_its_spec(models_dir, settings, monkeypatch):
    """Every query task asks for its encoder: once loaded, the spec as asked skips validation (which
    lists architecture files); a change to what validation reads still goes through it."""
    from encoders import registry

    monkeypatch.setattr(registry, "_encoders", {})
    first = get_encoder(DINOV2_TINY, device="cpu")
    checks = []
    real = registry.validate_spec
    monkeypatch.setattr(registry, "validate_spec", lambda spec: checks.append(spec) or real(spec))
    assert get_encoder(DINOV2_TINY, device="cpu") is first
    assert checks == []
    settings.LOUPE_ALLOWED_ENCODERS = [OPEN_CLIP_TINY]
    with pytest.raises(EncoderNotAllowed):
        get_encoder(DINOV2_TINY, device="cpu")
    assert checks == [DINOV2_TINY]


def test_a_new_backend_is_one_registry_line_and_its_layout(settings, tmp_path):
    """Weights rules live in the backend's layout (encoders/layouts/), not in branches on its name:
    a Hugging Face-format backend needs no code beyond its line in the table."""
    from encoders import backends
    from encoders.weights import expected_location, find_weights

    settings.LOUPE_MODELS_DIR = tmp_path
    register_backend(Backend("hf-test", "x:y", modalities=IMAGE_ONLY, default_min_score=0.1, weights_in_spec=False,
                             grammar="<hf id>"))
    try:
        spec = EncoderSpec.parse("hf-test:org/model")
        assert expected_location(spec).directory == tmp_path / "hf-test" / "org" / "model"
        assert find_weights(spec) is None
        folder = tmp_path / "hf-test" / "org" / "model"
        folder.mkdir(parents=True)
        (folder / "config.json").write_text('{"hidden_size": 24}')
        (folder / "model.safetensors").write_bytes(b"\0")
        found = find_weights(spec)
        assert found.path == folder and found.source == "models_dir"
        assert spec_dim(spec) == 24
        assert "hf-test:org/model" in [s["spec"] for s in known_specs()]
    finally:
        backends._BACKENDS.pop("hf-test")
        backends._layouts.pop("hf-test", None)


def test_the_default_text_encoder_is_the_first_default_with_a_text_tower_this_server_allows(settings):
    """What a model fetch job brings (workers/fetching.py): concept search does not count, and a
    default the allow-list leaves out is passed over rather than stopping album creation."""
    settings.LOUPE_DEFAULT_ENCODERS = ["dense:efficientnet-lite0", "open-clip:ViT-B-16/laion2b_s34b_b88k",
                                       "open-clip:ViT-B-32/laion2b_s34b_b79k"]
    settings.LOUPE_ALLOWED_ENCODERS = ["dense:efficientnet-lite0", "open-clip:ViT-B-32/laion2b_s34b_b79k"]
    assert default_text_encoder() == EncoderSpec.parse("open-clip:ViT-B-32/laion2b_s34b_b79k")
    settings.LOUPE_DEFAULT_ENCODERS = ["dense:efficientnet-lite0"]
    assert default_text_encoder() is None
