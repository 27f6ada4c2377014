"""What a process keeps for its life is frozen out of the garbage collector's walks (config/heap.py):
the web process after its views are imported, a Celery worker once it is ready, any process after it
loads a model. Measured under 16 clients: full collections over the whole heap held the GIL for up to
0.7 s and made the tail of search latency (docs/benchmarks.md, "Under load")."""

from __future__ import annotations

import gc
import json
import subprocess
import sys

import pytest
from celery.signals import worker_process_init, worker_ready

from config.settings.base import BASE_DIR
from tests.conftest import worker_env


@pytest.fixture
def unfrozen():
    """Freezing inside the test process would keep its garbage for the rest of the run: undo it."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_the_web_process_freezes_its_views_and_libraries_before_the_first_request(tmp_path, settings):
    script = ("import gc, json, sys; import config.wsgi; "
              "print(json.dumps({'frozen': gc.get_freeze_count(), 'views': 'search.api.views' in sys.modules, "
              "'tracked': len(gc.get_objects())}))")
    env = worker_env(media_root=tmp_path, models_dir=settings.LOUPE_MODELS_DIR)
    completed = subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stderr[-2000:]
    answer = json.loads(completed.stdout.strip().splitlines()[-1])
    # The views were imported before the freeze, and what a collection still walks is a sliver of it.
    assert answer["views"] and answer["frozen"] > 100_000, answer
    assert answer["tracked"] < answer["frozen"] / 20, answer


@pytest.mark.parametrize("signal", [worker_ready, worker_process_init], ids=["worker ready", "prefork child"])
def test_a_worker_freezes_what_it_loaded_to_start(signal, unfrozen):
    assert gc.get_freeze_count() == 0
    signal.send(sender=None)
    assert gc.get_freeze_count() > 0


def test_loading_a_model_freezes_it(tiny_models_dir, settings, monkeypatch, unfrozen):
    from encoders import registry
    from tests.tiny_models import DINOV2_TINY

    settings.LOUPE_MODELS_DIR = str(tiny_models_dir)
    settings.LOUPE_DEVICE = "cpu"
    monkeypatch.setattr(registry, "_encoders", {})  # a load of its own, whatever other tests loaded
    assert gc.get_freeze_count() == 0
    encoder = registry.get_encoder(DINOV2_TINY)
    assert gc.get_freeze_count() > 0
    # gc.get_objects() lists what collections still walk: the encoder is no longer among them.
    assert not any(obj is encoder for obj in gc.get_objects())
