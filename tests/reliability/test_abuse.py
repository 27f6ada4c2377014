"""Cheap requests that must not make the server do unbounded work, and limits a client cannot
step around (issue #16, "Abuse"). Each test here failed on the code before its fix."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from tests.reliability.test_security import _assert_throttled, low_rates  # noqa: F401 — low_rates is a fixture

pytestmark = pytest.mark.django_db

GUESS = {"username": "alice", "password": "guess"}


def _fresh_addresses(*addresses: str) -> None:
    for address in addresses:
        cache.delete(f"throttle_auth_{address}")


def test_rotating_x_forwarded_for_does_not_escape_the_token_throttle(alice, low_rates):
    addresses = [f"203.0.113.{i}" for i in range(5)]
    _fresh_addresses("127.0.0.1", *addresses)
    client = APIClient()
    statuses = [
        client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR=address).status_code
        for address in addresses[:3]
    ]
    assert statuses == [400, 400, 400]
    _assert_throttled(client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR=addresses[3]))


def test_behind_one_proxy_the_address_the_proxy_saw_is_the_client(alice, low_rates, settings):
    """With LOUPE_TRUSTED_PROXIES=1 the last X-Forwarded-For entry (the proxy's own record) counts;
    what the client itself put in front of it does not."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    _fresh_addresses("198.51.100.7", "198.51.100.8")
    client = APIClient()
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        response = client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR=f"{forged}, 198.51.100.7")
        assert response.status_code == 400
    _assert_throttled(client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR="4.4.4.4, 198.51.100.7"))
    # Another client behind the same proxy has its own allowance.
    assert client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 400


def test_the_sign_in_page_is_throttled_and_shares_the_token_endpoints_allowance(alice, low_rates):
    _fresh_addresses("127.0.0.1")
    assert APIClient().post("/api/v1/auth/token/", GUESS, format="json").status_code == 400
    page = Client()
    for _ in range(2):
        response = page.post("/accounts/login/", GUESS)
        assert response.status_code == 200 and b"didn" in response.content  # the wrong-password message
    response = page.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})  # right, but too late
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in page.session
    _fresh_addresses("127.0.0.1")
    response = page.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302 and page.session["_auth_user_id"] == str(alice.pk)


# --- Refused uploads on a kept-alive connection --------------------------------------------------


@pytest.fixture
def gunicorn_url(transactional_db, tmp_path):
    """The web as `make run` serves it (gunicorn, threads, keep-alive) on the test database."""
    import socket
    import subprocess
    import sys
    import time

    import requests

    from tests.conftest import BASE_DIR, worker_env

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "web.log", "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", "4", "--keep-alive", "5"],
        cwd=BASE_DIR, env=worker_env(media_root=tmp_path / "media", models_dir=tmp_path / "models"),
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            requests.get(f"{url}/api/v1/health/web/", timeout=10)
            break
        except requests.RequestException:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not start:\n{(tmp_path / 'web.log').read_text()[-3000:]}")
            time.sleep(0.2)
    yield url
    process.terminate()
    process.wait(timeout=20)
    from config.celery import app

    app.control.purge()  # the uploads' metadata tasks: their rows are gone with this test


def test_refused_uploads_do_not_reset_a_kept_alive_connection(gunicorn_url, alice, album):
    """One connection, as a browser or SDK keeps it: uploads refused before their body was read
    (anonymous: 401) alternate with accepted ones, and none of the 200 meets a connection error."""
    import random

    import requests

    from albums.tokens import api_token_create
    from tests.images import image_bytes

    _, key = api_token_create(user=alice, name="keep-alive")
    rng = random.Random(7)
    payload = image_bytes("PNG", size=(64, 64)) + bytes(rng.getrandbits(8) for _ in range(300 * 1024))
    session = requests.Session()
    outcomes = []
    for i in range(200):
        headers = {"Authorization": f"Token {key}"} if i % 2 else {}
        try:
            response = session.post(f"{gunicorn_url}/api/v1/albums/{album.pk}/images/", headers=headers,
                                    files={"files": (f"{i}.png", payload, "image/png")}, timeout=30)
            outcomes.append(response.status_code)
        except requests.ConnectionError as exc:
            outcomes.append(type(exc).__name__)
    errors = [o for o in outcomes if not isinstance(o, int)]
    assert errors == [], f"{len(errors)} connection errors"
    assert set(outcomes[0::2]) == {401} and set(outcomes[1::2]) <= {200, 201}


# --- Query and mask uploads: sized before they are read ------------------------------------------


def _declared_only(url: str, path: str, *, length: int, token: str, content_type: str) -> bytes:
    """Send the headers of a body of `length` bytes, and 1 KB of it; return what the server says."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=5) as conn:
        conn.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n\r\n".encode() + b"x" * 1024
        )
        answer = b""
        while b"\r\n\r\n{" not in answer or not answer.endswith(b"}"):  # headers, then the JSON body
            data = conn.recv(4096)  # socket.timeout (a failure) if the server waits for the body
            if not data:
                break
            answer += data
        return answer


def test_a_body_declared_past_the_limit_is_refused_at_once(gunicorn_url, alice, album):
    from albums.tokens import api_token_create

    _, key = api_token_create(user=alice, name="declared")
    for path, content_type in ((f"/api/v1/albums/{album.pk}/search/", "application/json"),
                               ("/api/v1/images/1/mask/", "multipart/form-data; boundary=x")):
        head = _declared_only(gunicorn_url, path, length=2**31, token=key, content_type=content_type)
        assert head.startswith(b"HTTP/1.1 413"), head[:200]
        assert b'"code":"request_too_large"' in head.replace(b" ", b"")


@pytest.fixture
def small_query_limit(settings):
    settings.LOUPE_MAX_QUERY_BYTES = 2000
    from config.request_limits import query_image_body_limit

    return query_image_body_limit()


def test_query_images_past_the_limit_are_413_whichever_way_they_come(alice, album, client_for, small_query_limit,
                                                                       monkeypatch):
    import base64
    import io

    from rest_framework.request import Request

    from tests.images import image_bytes

    picture = image_bytes("PNG", size=(200, 200))
    assert 2000 < len(picture) < small_query_limit
    client, url = client_for(alice), f"/api/v1/albums/{album.pk}/search/"
    for response in (client.post(url, {"image": io.BytesIO(picture)}, format="multipart"),
                     client.post(url, {"image_base64": base64.b64encode(picture).decode()}, format="json")):
        assert response.status_code == 413 and response.json()["code"] == "query_image_too_large", response.content
        assert response.json()["extra"]["max_bytes"] == 2000
    parsed = []
    real_data = Request.data.fget
    monkeypatch.setattr(Request, "data", property(lambda request: parsed.append(1) or real_data(request)))
    huge = {"image_base64": "A" * small_query_limit}
    for caller in (client, client_for(None)):  # refused unread, for anyone: the answer says nothing of the album
        response = caller.post(url, huge, format="json")
        assert response.status_code == 413 and response.json()["code"] == "request_too_large"
        assert response.json()["extra"]["max_bytes"] == small_query_limit
    assert parsed == []


def test_masks_past_the_limit_are_413(alice, album, client_for, small_query_limit):
    import io

    from albums import services
    from tests.images import image_bytes

    from albums.models import ImageMask

    image_id = services.image_upload_many(album=album, user=alice, files=[("a.png", io.BytesIO(image_bytes("PNG")))])[0].image_id
    client = client_for(alice)
    mask = image_bytes("PNG", size=(200, 200))
    response = client.put(f"/api/v1/images/{image_id}/mask/", {"mask": io.BytesIO(mask)}, format="multipart")
    assert response.status_code == 413 and response.json()["code"] == "mask_too_large"
    response = client.put(f"/api/v1/images/{image_id}/mask/", {"mask": io.BytesIO(b"\0" * small_query_limit)},
                          format="multipart")
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    assert not ImageMask.objects.filter(image_id=image_id).exists()


# --- Bounds on what one request may ask for --------------------------------------------------------


def _vector_album(owner, vectors: list[list[float]]):
    """An album searchable under a tiny model, with the given 4-d vectors stored (no encoder needed
    for requests that never encode a query)."""
    from albums import services
    from albums.models import Album, Image
    from workers.models import Embedding
    from tests.search.test_search_api import MODEL, unit

    album = services.album_create(owner=owner, name=f"vectors-{len(vectors)}")
    Album.objects.filter(pk=album.pk).update(active_model_id=MODEL, encoder_spec="open-clip:tiny-vit/random")
    album.refresh_from_db()
    for i, vector in enumerate(vectors):
        image = Image.objects.create(album=album, file=f"{i}.png", original_name=f"{i}.png", sha256=f"{i:064d}", bytes=1,
                                     mime="image/png", width=1, height=1, status="indexed")
        Embedding.objects.create(image=image, album=album, model_id=MODEL, dim=4, vector=unit(vector))
    return album


def test_result_depth_is_bounded_on_search_similar_and_the_album(alice, client_for, settings):
    settings.LOUPE_MAX_SEARCH_RESULTS = 300
    album = _vector_album(alice, [[1, 0, 0, 0]])
    image_id = album.images.get().pk
    client = client_for(alice)
    for response in (client.post(f"/api/v1/albums/{album.pk}/search/", {"image_id": image_id, "max_results": 301},
                                 format="json"),
                     client.get(f"/api/v1/images/{image_id}/similar/?max_results=301")):
        assert response.status_code == 400 and "300" in response.json()["extra"]["fields"]["max_results"][0]
    response = client.patch(f"/api/v1/albums/{album.pk}/", {"max_search_results": 301}, format="json")
    assert response.status_code == 400 and "max_search_results" in response.content.decode()
    album.refresh_from_db()
    assert album.max_search_results == 100
    assert client.patch(f"/api/v1/albums/{album.pk}/", {"max_search_results": 300}, format="json").status_code == 200


def test_patch_grids_are_bounded_when_a_set_is_made_changed_or_classified(alice, album, client_for, settings):
    import base64

    from tests.images import image_bytes

    settings.LOUPE_RAG_MAX_PATCHES = 64
    client = client_for(alice)
    body = {"album": album.pk, "name": "fine", "support_resolution": 448, "patch_size": 16}
    response = client.post("/api/v1/support-sets/", body, format="json")
    assert response.status_code == 400 and "patch_size" in response.json()["extra"]["fields"]
    response = client.post("/api/v1/support-sets/", {**body, "patch_size": 32}, format="json")  # 14 x 14 = 196 > 64
    assert response.status_code == 400 and response.json()["code"] == "too_many_patches"
    assert response.json()["extra"] == {"patches": 196, "max_patches": 64}
    created = client.post("/api/v1/support-sets/", {**body, "patch_size": 64}, format="json")  # 7 x 7
    assert created.status_code == 201, created.content
    set_id = created.json()["id"]
    response = client.patch(f"/api/v1/support-sets/{set_id}/", {"support_resolution": 1024}, format="json")  # 16 x 16
    assert response.status_code == 400 and response.json()["code"] == "too_many_patches"
    picture = base64.b64encode(image_bytes()).decode()
    response = client.post(f"/api/v1/support-sets/{set_id}/classify/", {"image_base64": picture, "input_resolution": 2048},
                           format="json")
    assert response.status_code == 400 and response.json()["code"] == "too_many_patches"


def test_duplicates_are_bounded_before_any_vector_is_loaded(alice, client_for, settings, monkeypatch):
    from search import duplicates, selectors

    album = _vector_album(alice, [[1, 0, 0, 0], [1, 0.01, 0, 0], [0, 1, 0, 0], [0, 1, 0.01, 0], [0, 0, 1, 0]])
    client, url = client_for(alice), f"/api/v1/albums/{album.pk}/duplicates/"
    response = client.get(f"{url}?threshold=0.5")
    assert response.status_code == 400 and "0.8" in str(response.json()["extra"])
    loaded = []
    monkeypatch.setattr(duplicates, "album_vectors", lambda **kw: loaded.append(kw) or selectors.album_vectors(**kw))
    settings.LOUPE_DUPLICATES_INLINE_MAX = settings.LOUPE_DUPLICATES_EXACT_MAX = 4
    response = client.get(url)
    assert response.status_code == 409 and response.json()["code"] == "album_too_large" and loaded == []
    assert response.json()["extra"] == {"images": 5, "max_images": 4, "scan": False}
    settings.LOUPE_DUPLICATES_INLINE_MAX = settings.LOUPE_DUPLICATES_EXACT_MAX = 5
    settings.LOUPE_DUPLICATES_MAX_PAIRS = 1
    response = client.get(f"{url}?threshold=0.99")
    assert response.status_code == 409 and response.json()["code"] == "too_many_pairs"
    settings.LOUPE_DUPLICATES_MAX_PAIRS, settings.LOUPE_DUPLICATES_MAX_GROUPS = 100, 1
    body = client.get(f"{url}?threshold=0.99").json()
    assert (body["count"], body["total"], body["truncated"], body["pairs"]) == (1, 2, True, 2)


def test_a_thumbnail_asked_for_before_the_worker_made_it_is_rendered_once(alice, album, client_for, monkeypatch):
    import io

    from albums import services
    from albums.api import views
    from tests.images import image_bytes

    image_id = services.image_upload_many(album=album, user=alice, files=[("a.jpg", io.BytesIO(image_bytes()))])[0].image_id
    from albums.models import Image

    cache.delete(views.pending_thumbnail_key(Image.objects.get(pk=image_id)))  # left by an earlier run
    rendered = []
    real = views.make_thumbnail
    monkeypatch.setattr(views, "make_thumbnail", lambda fp, size: rendered.append(size) or real(fp, size=size))
    client = client_for(alice)
    bodies = [b"".join(client.get(f"/api/v1/images/{image_id}/thumbnail").streaming_content) for _ in range(3)]
    assert len(rendered) == 1 and bodies[0] == bodies[1] == bodies[2] and bodies[0][8:12] == b"WEBP"


def test_thumbnails_crops_masks_and_duplicates_are_throttled(alice, album, client_for, settings):
    from django.core.cache import cache

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
                                                          "render": "2/minute", "search": "2/minute"}}
    for scope in ("render", "search"):
        cache.delete(f"throttle_{scope}_{alice.pk}")
    client = client_for(alice)
    for _ in range(2):
        assert client.get("/api/v1/images/999999/thumbnail").status_code == 404
    _assert_throttled(client.get("/api/v1/images/999999/thumbnail"))
    _assert_throttled(client.get("/api/v1/images/999999/mask/"))
    _assert_throttled(client.get("/api/v1/support-images/999999/crop?box=0,0,1,1"))
    for _ in range(2):
        assert client.get(f"/api/v1/albums/{album.pk}/duplicates/").status_code in (409,)  # album not indexed
    _assert_throttled(client.get(f"/api/v1/albums/{album.pk}/duplicates/"))


def test_an_album_too_large_to_answer_in_the_request_is_scanned_as_a_job(alice, bob, client_for, settings,
                                                                         django_capture_on_commit_callbacks, monkeypatch):
    """Past LOUPE_DUPLICATES_INLINE_MAX the request says to scan; the scan is a job with progress
    whose result is what the request would have answered (run here in-process, as the worker runs it)."""
    from search import duplicates
    from workers.models import IndexJob

    album = _vector_album(alice, [[1, 0, 0, 0], [1, 0.01, 0, 0], [0, 1, 0, 0], [0, 1, 0.01, 0], [0, 0, 1, 0]])
    url = f"/api/v1/albums/{album.pk}/duplicates/"
    inline = client_for(alice).get(f"{url}?threshold=0.99").json()
    settings.LOUPE_DUPLICATES_INLINE_MAX = 4
    refused = client_for(alice).get(f"{url}?threshold=0.99")
    assert refused.status_code == 409 and refused.json()["extra"] == {"images": 5, "max_images": 4, "scan": True}
    from albums import services

    services.album_member_add(album=album, username="bob", role="viewer")  # a viewer may scan: it writes only the job
    with django_capture_on_commit_callbacks(execute=False) as sent:
        started = client_for(bob).post(url, {"threshold": 0.99}, format="json")
        joined = client_for(alice).post(url, {"threshold": 0.99}, format="json")
    assert (started.status_code, joined.status_code) == (202, 200) and len(sent) == 1
    job_id = started.json()["id"]
    assert joined.json()["id"] == job_id and started.json()["kind"] == "duplicates"
    assert client_for(alice).post(url, {"threshold": 0.5}, format="json").status_code == 400
    monkeypatch.setattr(duplicates, "BLOCK_ROWS", 2)  # progress after each of three blocks
    assert duplicates.duplicate_scan_run(job_id=job_id) == {"groups": 2, "pairs": 2}
    job = client_for(bob).get(f"/api/v1/jobs/{job_id}/").json()
    assert (job["status"], job["done"], job["total"]) == ("succeeded", 5, 5)
    assert job["result"] == inline and job["params"] == {"threshold": 0.99}
    assert duplicates.duplicate_scan_run(job_id=job_id) == {"skipped": "not queued"}  # a redelivery does nothing
    assert IndexJob.objects.get(pk=job_id).status == "succeeded"


def test_a_scan_cancelled_mid_way_stops_at_the_next_block(alice, client_for, settings, django_capture_on_commit_callbacks,
                                                         monkeypatch):
    from search import duplicates
    from workers.models import IndexJob

    album = _vector_album(alice, [[1, i / 10, 0, 0] for i in range(6)])
    settings.LOUPE_DUPLICATES_INLINE_MAX = 1
    with django_capture_on_commit_callbacks(execute=False):
        job_id = client_for(alice).post(f"/api/v1/albums/{album.pk}/duplicates/", {"threshold": 0.9},
                                        format="json").json()["id"]
    monkeypatch.setattr(duplicates, "BLOCK_ROWS", 2)
    real_find = duplicates.find_groups

    def cancel_after_first_block(ids, vectors, *, threshold, on_block):
        def hook(rows):
            on_block(rows)
            client_for(alice).post(f"/api/v1/jobs/{job_id}/cancel/")

        return real_find(ids, vectors, threshold=threshold, on_block=hook)

    monkeypatch.setattr(duplicates, "find_groups", cancel_after_first_block)
    assert duplicates.duplicate_scan_run(job_id=job_id) == {"cancelled": job_id}
    job = IndexJob.objects.get(pk=job_id)
    assert (job.status, job.done, job.result) == ("cancelled", 2, None)
    from workers.models import Embedding

    assert Embedding.objects.filter(album=album).count() == 6  # a cancelled scan deletes no vector


def test_duplicate_groups_list_each_member_at_or_above_the_threshold_closest_first_with_names(alice, client_for):
    """A chain a~b~c with a and c below the threshold is one group (transitive); each member shows
    its closest match inside the group, so none reads below the threshold."""
    import numpy as np

    angle = np.deg2rad(20)  # cos 20° = 0.94: neighbours in the chain; a and c are 40° apart (0.77)
    album = _vector_album(alice, [[1, 0, 0, 0], [np.cos(angle), np.sin(angle), 0, 0],
                                  [np.cos(2 * angle), np.sin(2 * angle), 0, 0], [0, 0, 1, 0]])
    body = client_for(alice).get(f"/api/v1/albums/{album.pk}/duplicates/?threshold=0.9").json()
    assert body["count"] == 1 and body["pairs"] == 2
    [group] = body["groups"]
    ids = list(album.images.order_by("pk").values_list("pk", flat=True))
    assert {m["image_id"] for m in group} == set(ids[:3])
    assert all(m["similarity"] >= 0.9 for m in group)
    assert [m["similarity"] for m in group] == sorted((m["similarity"] for m in group), reverse=True)
    assert {m["name"] for m in group} == {"0.png", "1.png", "2.png"}
    middle = next(m for m in group if m["image_id"] == ids[1])
    assert middle["closest_image_id"] in (ids[0], ids[2])
