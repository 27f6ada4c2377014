"""The query batching queue (search/query_batcher.py): first in, first out; refusal past its bound;
and a batched forward pass of a real (tiny) encoder equal to one pass per query."""

from __future__ import annotations

import io
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from search import query_encoding
from search.query_batcher import LruCache, QueryBatcher, QueryQueueFullError
from tests.images import noise_png
from tests.tiny_models import DINOV2_TINY, OPEN_CLIP_TINY


class Recorder:
    """A batch function that records each batch it ran; the first batch waits for `release`."""

    def __init__(self):
        self.batches: list[list] = []
        self.release = threading.Event()

    def __call__(self, payloads: list) -> list:
        if not self.batches:
            assert self.release.wait(10)
        self.batches.append(list(payloads))
        return [f"done:{p}" for p in payloads]


def _wait_until_serving(batcher: QueryBatcher, recorder: Recorder) -> None:
    deadline = time.monotonic() + 5
    while batcher._in_service == 0:  # the blocker has been taken into service
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_batches_start_with_the_oldest_item_and_keep_arrival_order_within_a_kind():
    batcher = QueryBatcher(max_batch=3, max_wait=0.0, max_queue_seconds=60)
    run = Recorder()
    blocker = batcher.submit("a", "blocker", run)
    _wait_until_serving(batcher, run)
    arrivals = [("a", "a1"), ("b", "b1"), ("a", "a2"), ("b", "b2"), ("a", "a3"), ("a", "a4"), ("b", "b3")]
    futures = [batcher.submit(key, name, run) for key, name in arrivals]
    run.release.set()
    assert [f.result(5) for f in futures] == [f"done:{name}" for _, name in arrivals]
    assert blocker.result(5) == "done:blocker"
    # Each batch starts with the oldest item still waiting and takes later items of its kind, in
    # order, up to max_batch; nobody waits for more than the batches of the kinds ahead of them.
    assert run.batches == [["blocker"], ["a1", "a2", "a3"], ["b1", "b2", "b3"], ["a4"]]
    assert batcher.stats["largest_batch"] == 3 and batcher.stats["items"] == 8


def test_waits_briefly_to_fill_a_batch_under_load_and_not_on_an_idle_queue():
    batcher = QueryBatcher(max_batch=3, max_wait=30.0, max_queue_seconds=600)
    run = Recorder()
    run.release.set()
    # Idle: a lone query goes at once (held for max_wait, it would miss result()'s 5 s).
    assert batcher.submit("k", "alone", run).result(5) == "done:alone"
    # Under load: three queries queue behind a pass and go together; the batch after them waits for
    # company (max_batch 3 fills each, so nothing here waits out the 30 s).
    gate = threading.Event()
    busy = batcher.submit("k", "busy", lambda p: gate.wait(10) and [f"done:{x}" for x in p])
    _wait_until_serving(batcher, run)
    queued = [batcher.submit("k", name, run) for name in ("q1", "q2", "q3")]
    gate.set()
    assert busy.result(5) == "done:busy" and [f.result(5) for f in queued] == ["done:q1", "done:q2", "done:q3"]
    first = batcher.submit("k", "w1", run)
    time.sleep(0.05)
    rest = [batcher.submit("k", name, run) for name in ("w2", "w3")]
    assert [f.result(5) for f in [first, *rest]] == ["done:w1", "done:w2", "done:w3"]
    assert run.batches == [["alone"], ["q1", "q2", "q3"], ["w1", "w2", "w3"]]


def test_refuses_at_once_when_the_queue_holds_more_than_its_bound():
    batcher = QueryBatcher(max_batch=1, max_wait=0.0, max_queue_seconds=0.25)
    batcher._seconds_per_item = 0.1  # as measured on a slow model
    run = Recorder()
    accepted = [batcher.submit("k", 0, run)]
    _wait_until_serving(batcher, run)
    accepted.append(batcher.submit("k", 1, run))  # 2 x 0.1 s of work: within the bound
    started = time.monotonic()
    with pytest.raises(QueryQueueFullError) as refused:
        batcher.submit("k", 2, run)  # 3 x 0.1 s > 0.25 s
    assert time.monotonic() - started < 0.05
    error = refused.value
    assert error.status_code == 503 and error.code == "query_queue_full"
    assert error.extra["retry_after_seconds"] >= 1 and error.extra["pending"] == 2
    assert error.extra["where"] == "encoder queue"
    run.release.set()
    assert [f.result(5) for f in accepted] == ["done:0", "done:1"]
    assert batcher.stats["refused"] == 1
    # Once drained, it accepts again.
    assert batcher.submit("k", 3, run).result(5) == "done:3"


def test_a_failing_batch_fails_its_items_and_the_queue_lives_on():
    batcher = QueryBatcher(max_batch=4, max_wait=0.0, max_queue_seconds=60)

    def broken(payloads):
        raise ValueError("model exploded")

    with pytest.raises(ValueError, match="model exploded"):
        batcher.submit("k", 1, broken).result(timeout=5)
    assert batcher.submit("k", 2, lambda p: [x * 10 for x in p]).result(timeout=5) == 20


def test_lru_cache_keeps_the_most_recently_used():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c"), len(cache)) == (1, None, 3, 2)


@pytest.fixture
def fresh_batcher(settings, tiny_models_dir, monkeypatch):
    """A process batcher that waits long enough for concurrent queries to share one pass, over the
    tiny real models loaded through the product's loading code."""
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_ALLOW_DOWNLOADS = False
    settings.LOUPE_ALLOWED_ENCODERS = []
    settings.LOUPE_DEVICE = "cpu"
    settings.LOUPE_QUERY_BATCH_WAIT_MS = 300
    settings.LOUPE_QUERY_BATCH_MAX = 8
    monkeypatch.setattr(query_encoding, "_singletons", {})
    yield


@pytest.mark.parametrize("spec", [DINOV2_TINY, OPEN_CLIP_TINY])
def test_a_batched_query_pass_equals_one_pass_per_query(fresh_batcher, spec):
    from PIL import Image

    from encoders.pooled_encoder import PooledEncoder
    from encoders.registry import get_encoder

    base = get_encoder(spec)
    model_id = PooledEncoder(base).model_id
    images = [noise_png(size=(48, 40), seed=seed) for seed in range(6)]

    with ThreadPoolExecutor(max_workers=6) as pool:
        batched = list(pool.map(
            lambda data: query_encoding.encode_locally(model_id=model_id, texts={}, image_bytes=data, ensemble=False),
            images,
        ))
    assert query_encoding.query_batcher().stats["largest_batch"] > 1
    for data, result in zip(images, batched, strict=True):
        single = PooledEncoder(base).encode_images([Image.open(io.BytesIO(data)).convert("RGB")])[0]
        np.testing.assert_allclose(np.asarray(result["vectors"]["image"]), single, atol=1e-5)


def test_batched_texts_equal_single_texts_and_repeats_come_from_the_cache(fresh_batcher):
    from encoders.registry import get_encoder

    base = get_encoder(OPEN_CLIP_TINY)
    texts = ["red sled", "a dog", "kids on the sled", "cat"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        batched = list(pool.map(
            lambda t: query_encoding.encode_locally(model_id=base.model_id, texts={"text": t}, image_bytes=None,
                                                    ensemble=False),
            texts,
        ))
    batcher = query_encoding.query_batcher()
    assert batcher.stats["largest_batch"] > 1
    for text, result in zip(texts, batched, strict=True):
        np.testing.assert_allclose(result["vectors"]["text"], base.encode_texts([text])[0], atol=1e-5)

    items_before = batcher.stats["items"]
    again = query_encoding.encode_locally(model_id=base.model_id, texts={"text": "a dog", "negative": "cat"},
                                          image_bytes=None, ensemble=False)
    assert batcher.stats["items"] == items_before  # no forward pass: both from the cache
    np.testing.assert_array_equal(again["vectors"]["text"], batched[1]["vectors"]["text"])
    # The ensembled vector of the same words is another entry, not the plain one.
    ensembled = query_encoding.encode_locally(model_id=base.model_id, texts={"text": "a dog"}, image_bytes=None,
                                              ensemble=True)
    assert batcher.stats["items"] == items_before + 1
    assert not np.allclose(ensembled["vectors"]["text"], batched[1]["vectors"]["text"])


def test_admission_refuses_past_its_limit_at_once_and_admits_again_when_a_slot_frees():
    from search.query_batcher import QueryAdmission

    admission = QueryAdmission(limit=2)
    with admission.slot(), admission.slot():
        assert admission.in_flight == 2
        started = time.monotonic()
        with pytest.raises(QueryQueueFullError) as refused:
            with admission.slot():
                pass
        assert time.monotonic() - started < 0.05
        assert refused.value.extra["retry_after_seconds"] >= 1 and refused.value.extra["pending"] == 2
        assert refused.value.extra["where"] == "web process"
    assert admission.in_flight == 0
    with admission.slot():
        assert admission.in_flight == 1


def test_a_full_encode_queue_is_a_503_with_retry_after_through_the_api(fresh_batcher, alice, client_for, monkeypatch):
    """An encode the process cannot admit is answered at once: 503, Retry-After, the one error shape."""
    from albums import services as album_services
    from albums.models import Album
    from encoders.registry import get_encoder
    from search.query_batcher import QueryAdmission

    base = get_encoder(OPEN_CLIP_TINY)
    album = album_services.album_create(owner=alice, name="busy", encoder_spec=OPEN_CLIP_TINY)
    Album.objects.filter(pk=album.pk).update(active_model_id=base.model_id)
    full = QueryAdmission(limit=1)
    monkeypatch.setitem(query_encoding._singletons, "admission", full)
    with full.slot():
        response = client_for(alice).post(f"/api/v1/albums/{album.pk}/search/", {"text": "red sled"}, format="json")
    assert response.status_code == 503
    assert response.json()["code"] == "query_queue_full"
    assert int(response["Retry-After"]) == response.json()["extra"]["retry_after_seconds"] >= 1


def test_a_search_carrying_an_image_is_refused_before_its_body_is_parsed(fresh_batcher, alice, bob, client_for,
                                                                         monkeypatch):
    """With every encode slot taken, a search whose body carries an image gets its 503 before the body
    is parsed; the album check still comes first (a stranger still gets the same 404), and a small
    text query still reaches the encoder's own admission."""
    from albums import services as album_services
    from albums.models import Album
    from encoders.registry import get_encoder
    from rest_framework.request import Request
    from search.query_batcher import QueryAdmission

    base = get_encoder(OPEN_CLIP_TINY)
    album = album_services.album_create(owner=alice, name="busy", encoder_spec=OPEN_CLIP_TINY)
    Album.objects.filter(pk=album.pk).update(active_model_id=base.model_id)
    full = QueryAdmission(limit=1)
    monkeypatch.setitem(query_encoding._singletons, "admission", full)
    parsed = []
    real_data = Request.data.fget
    monkeypatch.setattr(Request, "data", property(lambda request: parsed.append(1) or real_data(request)))
    big = {"image_base64": "A" * (64 * 1024)}
    with full.slot():
        refused = client_for(alice).post(f"/api/v1/albums/{album.pk}/search/", big, format="json")
        stranger = client_for(bob).post(f"/api/v1/albums/{album.pk}/search/", big, format="json")
    assert refused.status_code == 503 and refused.json()["extra"]["where"] == "web process"
    assert "Retry-After" in refused
    assert stranger.status_code == 404
    assert parsed == []  # neither body was parsed
    # ... but the refused body was read off the connection, so keep-alive goes on (gunicorn would
    # otherwise find the rest of the upload where it expects the next request).
    assert refused.wsgi_request._stream.read() == b""


def test_an_encoder_that_does_not_answer_in_time_is_a_503_not_a_500(fresh_batcher, settings, monkeypatch):
    from config.errors import ServiceUnavailableError
    from encoders.registry import get_encoder

    settings.LOUPE_QUERY_TIMEOUT_SECONDS = 0.2
    base = get_encoder(OPEN_CLIP_TINY)
    stuck = QueryBatcher(max_batch=4, max_wait=0.0, max_queue_seconds=60)
    blocker = Recorder()
    stuck.submit("busy", "blocker", blocker)
    monkeypatch.setitem(query_encoding._singletons, "batcher", stuck)
    try:
        with pytest.raises(ServiceUnavailableError) as failed:
            query_encoding.encode_locally(model_id=base.model_id, texts={"text": "red sled"}, image_bytes=None,
                                          ensemble=False)
        assert failed.value.status_code == 503 and failed.value.code == "query_encoder_timeout"
        assert failed.value.extra["retry_after_seconds"] == 5
    finally:
        blocker.release.set()
