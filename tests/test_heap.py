"""What a process keeps for its life is frozen out of the garbage collector's walks (config/heap.py):
the web process after its views are imported, a Celery worker once it is ready, any process after it
loads a model. Measured under 16 clients: full collections over the whole heap held the GIL for up to
0.7 s and made the tail of search latency (docs/benchmarks.md, "Under load")."""

from __future__ import annotations

import gc
import io
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


# --- the cycles a request leaves (config/heap.py: RequestCyclesMiddleware, release_serializer) ----


def _wsgi_call(handler, path: str, token: str, body: dict | None = None) -> str:
    """One request through Django's own WSGI handler, as gunicorn makes it (the test client adds
    cycles of its own: `response.json` is a partial over the response)."""
    path, _, query = path.partition("?")
    data = json.dumps(body).encode() if body is not None else b""
    environ = {
        "REQUEST_METHOD": "POST" if body is not None else "GET", "PATH_INFO": path, "QUERY_STRING": query,
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "HTTP_HOST": "testserver", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(data), "CONTENT_LENGTH": str(len(data)), "CONTENT_TYPE": "application/json",
        "HTTP_AUTHORIZATION": f"Token {token}",
    }
    statuses = []
    response = handler(environ, lambda status, headers: statuses.append(status))
    b"".join(response)
    response.close()
    return statuses[0]


def _objects_in_cycles(handler, path: str, token: str, body: dict | None, *, requests: int = 5) -> float:
    """What the collector finds after `requests` requests, per request, with nothing else freed."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        for _ in range(requests):
            assert _wsgi_call(handler, path, token, body) == "200 OK"
        gc.collect()
        return len(gc.garbage) / requests
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


@pytest.fixture
def wsgi_handler(monkeypatch):
    """Django's WSGI handler, minus the request signals that close the test's database connection."""
    from django.core import signals
    from django.core.handlers.wsgi import WSGIHandler
    from django.db import close_old_connections

    def make() -> WSGIHandler:
        signals.request_started.disconnect(close_old_connections)
        signals.request_finished.disconnect(close_old_connections)
        return WSGIHandler()

    yield make
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def test_a_search_leaves_almost_nothing_for_the_collector(alice, wsgi_handler, settings):
    """A search used to leave ~330 objects in cycles (DRF's request and view, its serializer and its
    fields, the request's lazy user and htmx details); reference counting now frees nearly all."""
    from albums import services as album_services
    from albums.tokens import api_token_create
    from workers.vector_store import embeddings_insert
    from albums.models import Album, Image

    album = album_services.album_create(owner=alice, name="cycles")
    model = "open-clip:tiny-vit/random@sha256:000000000000"
    Album.objects.filter(pk=album.pk).update(active_model_id=model, encoder_spec="open-clip:tiny-vit/random")
    images = [Image.objects.create(album=album, original_name=f"{i}.jpg", sha256=f"{i:064x}", bytes=1, width=1,
                                   height=1, mime="image/jpeg", status=Image.Status.INDEXED) for i in range(3)]
    embeddings_insert(model_id=model, image_ids=[i.pk for i in images],
                      vectors=[[1.0, 0.0, 0.0, 0.0], [0.9, 0.1, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]])
    _, token = api_token_create(user=alice, name="cycles")
    search = (f"/api/v1/albums/{album.pk}/search/", {"image_id": images[0].pk, "min_score": -1})
    similar = (f"/api/v1/images/{images[0].pk}/similar/?min_score=-1", None)

    handler = wsgi_handler()
    for path, body in (search, similar):
        _wsgi_call(handler, path, token, body)  # first calls fill caches, which are not garbage
        assert _objects_in_cycles(handler, path, token, body) < 20

    # Without the middleware (and with the serializer kept linked) the same search leaves hundreds.
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != "config.heap.RequestCyclesMiddleware"]
    assert _objects_in_cycles(wsgi_handler(), search[0], token, search[1]) > 100


def test_a_released_serializer_is_freed_by_reference_counting_alone():
    import weakref

    from search.api.views import SearchRequestSerializer
    from config.heap import release_serializer

    def made(release: bool):
        serializer = SearchRequestSerializer(data={"text": "red sled", "box": [0, 0, 1, 1]})
        assert serializer.is_valid(), serializer.errors
        serializer.validated_data
        if release:
            release_serializer(serializer)
        return weakref.ref(serializer)

    gc.disable()
    try:
        kept, released = made(False), made(True)
        assert kept() is not None  # its fields hold it in a cycle until a collection
        assert released() is None
    finally:
        gc.enable()
        gc.collect()
