import pytest

from encoders.catalog import OPEN_CLIP_SPECS, OPENAI_CLIP_MODELS
from encoders.spec import EncoderSpec


def test_openai_clip_catalog_mirrors_the_package():
    clip = pytest.importorskip("clip")
    assert set(OPENAI_CLIP_MODELS) == set(clip.available_models())
    for name, url in clip.clip._MODELS.items():
        assert OPENAI_CLIP_MODELS[name].filename == url.rsplit("/", 1)[1]


def test_open_clip_catalog_tags_exist_in_open_clip():
    open_clip = pytest.importorskip("open_clip")
    for text in OPEN_CLIP_SPECS:
        spec = EncoderSpec.parse(text)
        assert open_clip.get_pretrained_cfg(spec.model, spec.weights), text
