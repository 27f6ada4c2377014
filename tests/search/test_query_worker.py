"""Query encoding on the `query` queue (search/query_worker.py), through the real stack: a real
Celery worker, the real broker, the API's exception handler."""

from __future__ import annotations

import time
from contextlib import contextmanager

import pytest

from tests.conftest import wait_for
from tests.test_upload_index_search import _indexed_album

pytestmark = pytest.mark.slow


@contextmanager
def queue_paused(worker, queue: str):
    """The session worker stops consuming `queue` (and only that), and consumes it again on the way
    out, whatever happened inside, so later tests find the worker as they expect."""
    from config.celery import app

    def session_worker():
        names = app.control.inspect(timeout=2).ping() or {}
        return next((n for n in names if n.startswith(worker["name"] + "@")), None)

    full_name = wait_for(session_worker, what="the session worker to answer a ping")

    def consuming() -> bool:
        queues = (app.control.inspect(destination=[full_name], timeout=2).active_queues() or {}).get(full_name, [])
        return queue in {q["name"] for q in queues}

    app.control.cancel_consumer(queue, destination=[full_name], reply=True, timeout=5)
    try:
        assert not consuming()
        yield
    finally:
        app.control.add_consumer(queue, destination=[full_name], reply=True, timeout=5)
        wait_for(consuming, what=f"the session worker to consume `{queue}` again")


def test_no_query_worker_answering_is_a_503_with_retry_after_and_search_recovers(worker, alice, client_for, settings):
    album, _, _ = _indexed_album(alice, count=2)
    settings.LOUPE_QUERY_ENCODING = "worker"
    settings.LOUPE_QUERY_TIMEOUT_SECONDS = 1.5
    client = client_for(alice)

    def search():
        return client.post(f"/api/v1/albums/{album.pk}/search/", {"text": "red sled", "min_score": -1}, format="json")

    with queue_paused(worker, "query"):
        started = time.monotonic()
        response = search()
        waited = time.monotonic() - started
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["code"] == "query_worker_unavailable" and "`query` queue" in body["message"]
    assert response["Retry-After"] == "5" and body["extra"] == {"retry_after_seconds": 5}
    assert 1.5 <= waited < 5, "the request waits out LOUPE_QUERY_TIMEOUT_SECONDS, no longer"

    # The consumer is back: the same search is answered (the expired task is dropped, not run late).
    response = search()
    assert response.status_code == 200, response.content
    assert len(response.json()["results"]) == 2


def test_a_query_image_gone_before_the_worker_took_it_is_a_503_to_retry(db):
    """The web leaves a query image's bytes in Redis for as long as it waits; a task that finds them
    gone (expired, Redis flushed) answers a 503 the caller can retry, and never another's image."""
    from search.query_worker import QUERY_IMAGE_KEY_PREFIX, query_image_stash, query_image_take
    from search.tasks import query_encode

    key = query_image_stash(b"jpeg bytes", seconds=5)
    assert key.startswith(QUERY_IMAGE_KEY_PREFIX) and query_image_take(key) == b"jpeg bytes"
    answer = query_encode.run("dense:efficientnet-lite0@sha256:000000000000", {}, None, False, None, image_key=key)
    assert answer["error"]["code"] == "query_image_expired" and answer["error"]["status"] == 503
    with pytest.raises(ValueError):
        query_image_take("loupe:sessions:somebody-else")  # only keys it made are read


def test_a_query_through_the_worker_comes_back_exact_without_a_sent_event_or_a_log_line(worker, alice, monkeypatch,
                                                                                          settings):
    """The vectors travel as float32 bytes (base64) on a reply list; a query task sends no
    task-sent event (it sends no others, so Flower would list it as never started) and writes no
    per-task lines in the worker's log (each held the vector's repr)."""
    from pathlib import Path

    import numpy as np
    from celery.events.dispatcher import EventDispatcher

    from encoders.model_ids import parse_model_id
    from search.query_encoding import encode_locally, encode_query

    album, _, _ = _indexed_album(alice, count=1)
    settings.LOUPE_QUERY_ENCODING = "worker"
    published = []
    real_publish = EventDispatcher.publish
    monkeypatch.setattr(EventDispatcher, "publish",
                        lambda self, type, *args, **kwargs: published.append(type) or real_publish(self, type, *args, **kwargs))
    texts = {"text": "kids on a red sled", "negative": "a blurry screenshot"}
    answer = encode_query(model=parse_model_id(album.active_model_id), texts=texts, image_bytes=None, ensemble=False)
    local = encode_locally(model_id=album.active_model_id, texts=texts, image_bytes=None, ensemble=False)
    assert set(answer.vectors) == {"text", "negative"}
    for part in answer.vectors:
        assert answer.vectors[part].dtype == np.float32
        # Equal within what batching with other queries may change (the wire itself is exact: below).
        np.testing.assert_allclose(answer.vectors[part], local["vectors"][part], atol=1e-5)
    assert "task-sent" not in published
    # The answer came on a reply list, not through Celery's result backend; nothing is left behind.
    from django.conf import settings as django_settings
    import redis

    store = redis.Redis.from_url(django_settings.REDIS_URL)
    assert not store.keys("celery-task-meta-*") and not store.keys("loupe:query-reply:*")
    # A second query: the worker wrote the first one's lines (if any) before it took the second.
    encode_query(model=parse_model_id(album.active_model_id), texts={"text": "a dog"}, image_bytes=None, ensemble=False)
    lines = Path(worker["log"]).read_text(errors="replace").splitlines()
    assert any("workers.tasks.encode_index_job[" in line and "succeeded" in line for line in lines)  # logged as before
    assert not [line for line in lines if "search.tasks.query_encode[" in line and ("received" in line or "succeeded" in line)]


def test_vectors_on_the_wire_are_exact_and_a_list_from_an_earlier_release_still_reads():
    import numpy as np

    from search.query_worker import vectors_from_wire, vectors_to_wire

    vector = np.random.default_rng(3).standard_normal(512).astype(np.float32)
    wire = vectors_to_wire({"text": vector})
    assert isinstance(wire["text"], str)
    np.testing.assert_array_equal(vectors_from_wire(wire)["text"], vector)
    np.testing.assert_array_equal(vectors_from_wire({"image": vector.tolist()})["image"], vector)


def test_a_web_process_of_the_earlier_release_still_gets_its_answer_from_the_result_backend(worker, alice):
    """During an upgrade, web processes of the release before send query tasks without a reply key
    and wait on Celery's result backend: the worker answers them there."""
    import numpy as np

    from search.query_encoding import encode_locally
    from search.query_worker import vectors_from_wire
    from search.tasks import query_encode

    album, _, _ = _indexed_album(alice, count=1)
    answer = query_encode.apply_async((album.active_model_id, {"text": "a red sled"}, None, False)).get(timeout=20)
    local = encode_locally(model_id=album.active_model_id, texts={"text": "a red sled"}, image_bytes=None, ensemble=False)
    np.testing.assert_allclose(vectors_from_wire(answer["vectors"])["text"], local["vectors"]["text"], atol=1e-5)


def test_a_reply_goes_only_to_a_reply_key_and_expires_when_nobody_takes_it(db):
    import redis
    from django.conf import settings as django_settings

    from search.query_worker import REPLY_KEY_PREFIX, REPLY_SECONDS, send_reply

    with pytest.raises(ValueError):
        send_reply("loupe:sessions:somebody-else", {"vectors": {}})
    key = REPLY_KEY_PREFIX + "nobody-waits"
    send_reply(key, {"model_id": "m", "vectors": {}})
    store = redis.Redis.from_url(django_settings.REDIS_URL)
    try:
        assert 0 < store.ttl(key) <= REPLY_SECONDS
        assert store.lrange(key, 0, -1) == [b'{"model_id":"m","vectors":{}}']
    finally:
        store.delete(key)
