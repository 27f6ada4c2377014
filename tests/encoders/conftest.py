"""Encoder tests: the tiny models of tests/tiny_models.py, loaded through the product's code."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_models import (  # noqa: F401 — re-exported for the test modules
    DINOV2_TINY,
    OPEN_CLIP_TINY,
    OPENAI_CLIP_TINY,
    OPENAI_CLIP_TINY_RESNET,
    SIGLIP2_TINY,
    SIGLIP_TINY,
    TINY_LOGIT_BIAS,
    TINY_LOGIT_SCALE,
    WORDS,
    make_images,
)


@pytest.fixture
def models_dir(settings, tiny_models_dir) -> Path:
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_ALLOW_DOWNLOADS = False
    settings.LOUPE_ALLOWED_ENCODERS = []
    settings.LOUPE_DEVICE = "cpu"
    return tiny_models_dir


@pytest.fixture
def empty_models_dir(settings, tmp_path) -> Path:
    settings.LOUPE_MODELS_DIR = tmp_path / "models"
    settings.LOUPE_ALLOW_DOWNLOADS = False
    settings.LOUPE_ALLOWED_ENCODERS = []
    return tmp_path / "models"
