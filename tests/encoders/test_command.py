from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from tests.tiny_models import DINOV2_TINY, OPEN_CLIP_TINY


def _run(*args) -> str:
    out = StringIO()
    call_command("encoders", *args, stdout=out)
    return out.getvalue()


def test_list_shows_presence_dim_threshold_and_modalities(models_dir):
    lines = {line.split()[0]: line.split() for line in _run("list").splitlines()[1:]}
    assert lines[OPEN_CLIP_TINY][1:] == ["present", "32", "0.200", "image,text"]
    assert lines["open-clip:ViT-B-32/laion2b_s34b_b79k"][1:] == ["missing", "512", "0.200", "image,text"]
    assert lines["dense:efficientnet-lite0"][1:] == ["present", "1280", "0.300", "image,text"]  # text: ImageNet concepts


def test_check_embeds_an_image_and_a_text(models_dir):
    output = _run("check", OPEN_CLIP_TINY, "--device", "cpu")
    assert "image: shape (1, 32), norm 1.0000" in output
    assert "text: shape (1, 32), norm 1.0000" in output
    assert f"{OPEN_CLIP_TINY}: ok" in output


def test_check_of_an_image_only_encoder_skips_text(models_dir):
    output = _run("check", DINOV2_TINY, "--device", "cpu")
    assert "text:" not in output and "patches: shape (1, 4, 4, 32)" in output


def test_check_and_fetch_report_missing_weights_clearly(empty_models_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CommandError, match=r"\[encoder_weights_missing\].*dense/dinov2-small"):
        _run("check", "dense:dinov2-small")
    with pytest.raises(CommandError, match=r"\[encoder_spec_invalid\]"):
        _run("fetch", "nope:model")
