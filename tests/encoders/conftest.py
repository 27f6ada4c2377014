"""Encoder tests point LOUPE_MODELS_DIR at the tiny models of tests/tiny_models.py (session fixture
`tiny_models_dir` in tests/conftest.py), so the product's own loading code runs."""

from __future__ import annotations

from pathlib import Path

import pytest


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
