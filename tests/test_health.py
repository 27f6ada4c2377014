import subprocess
import sys

import pytest
import redis

pytestmark = pytest.mark.django_db


@pytest.fixture
def heartbeats(settings):
    """Heartbeat keys written by hand, in a Redis database of their own (db 15), so the session's
    real worker, which beats into db 0, cannot add itself to what these tests count."""
    from workers.heartbeat import write_beat

    settings.REDIS_URL = _with_db(settings.REDIS_URL, 15)
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.flushdb()

    def beat(name, queues, ttl=30):
        write_beat(client, name, {"queues": queues, "pid": 1, "at": 0}, ttl=ttl)

    yield beat
    client.flushdb()
    client.close()


@pytest.fixture
def staff(client_for, make_user):
    """Health's details are for staff; everyone else gets the status (the tests at the end)."""
    return client_for(make_user("ops", is_staff=True))


def _with_db(url: str, db: int) -> str:
    if url.startswith("unix://"):
        return f"{url.split('?')[0]}?db={db}"
    return f"{url.rsplit('/', 1)[0]}/{db}" if url.count("/") > 2 else f"{url}/{db}"


def test_health_reports_each_component(staff, heartbeats):
    heartbeats("encode@a", ["encode"])
    heartbeats("all@b", ["default", "encode", "query"])
    response = staff.get("/api/v1/health/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok" and body["down"] == []
    assert body["components"]["database"]["pgvector"].startswith("0.8")
    assert body["components"]["database"]["postgres"].startswith("18")
    assert body["components"]["redis"]["ok"] is True
    workers = body["components"]["workers"]
    assert workers["workers"] == ["all@b", "encode@a"]
    assert workers["queues"] == {"default": ["all@b"], "encode": ["all@b", "encode@a"], "query": ["all@b"]}


def test_a_queue_without_a_live_worker_is_an_outage_named_by_queue(staff, heartbeats):
    heartbeats("encode@a", ["encode"])
    heartbeats("query@a", ["query"])
    response = staff.get("/api/v1/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["down"] == ["workers"]
    workers = body["components"]["workers"]
    assert workers["error"] == "no live worker consumes queue(s) default"
    assert workers["queues"]["default"] == [] and workers["workers"] == ["encode@a", "query@a"]


@pytest.mark.parametrize(
    ("encoding", "vlm", "query_required"),
    [("web", "", False), ("web", "openai:http://x/v1/m", False), ("worker", "", True), ("auto", "openai:http://x/v1/m", True)],
)
def test_the_query_queue_counts_only_when_work_is_sent_there(staff, heartbeats, settings, encoding, vlm, query_required):
    settings.LOUPE_QUERY_ENCODING, settings.LOUPE_VLM = encoding, vlm
    heartbeats("encode@a", ["encode"])
    heartbeats("default@a", ["default"])
    body = staff.get("/api/v1/health/").json()
    assert body["components"]["workers"]["queues"]["query"] == []  # always shown
    assert (body["down"] == ["workers"]) is query_required, body
    if query_required:
        assert body["components"]["workers"]["error"] == "no live worker consumes queue(s) query"


def test_an_expired_heartbeat_is_a_worker_gone(staff, heartbeats, settings):
    import time

    heartbeats("all@b", ["default", "encode", "query"], ttl=1)
    assert staff.get("/api/v1/health/").status_code == 200
    time.sleep(1.5)
    body = staff.get("/api/v1/health/").json()
    assert body["components"]["workers"]["workers"] == [] and body["down"] == ["workers"]
    # The name of a worker that died without saying so is dropped from the list health reads.
    from workers.heartbeat import NAMES_KEY

    assert redis.Redis.from_url(settings.REDIS_URL).smembers(NAMES_KEY) == set()


def test_health_is_degraded_and_names_the_part_that_is_down(staff, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nothing-here.sock"
    response = staff.get("/api/v1/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert set(body["down"]) == {"redis", "workers"}
    assert body["components"]["database"]["ok"] is True
    assert "nothing-here.sock" in body["components"]["redis"]["error"]


def test_web_health_needs_only_the_database(staff, settings, tmp_path):
    settings.REDIS_URL = f"unix://{tmp_path}/nothing-here.sock"  # Redis and workers down
    response = staff.get("/api/v1/health/web/")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.json()["components"]["database"]["pgvector"].startswith("0.8")


@pytest.mark.slow
def test_health_sees_a_real_worker_by_its_heartbeat(worker, staff, settings):
    body = staff.get("/api/v1/health/").json()
    workers = body["components"]["workers"]
    assert workers["ok"] is True, body
    name = workers["queues"]["encode"][0]
    assert all(name in consumers for consumers in workers["queues"].values()), workers

    # The container health check reads the same key.
    env_check = subprocess.run([sys.executable, "-m", "workers.heartbeat", name], capture_output=True, text=True,
                               env=_env(settings), timeout=60)
    assert env_check.returncode == 0 and "live, queues default, encode, query" in env_check.stdout, env_check
    missing = subprocess.run([sys.executable, "-m", "workers.heartbeat", "nobody@nowhere"], capture_output=True,
                             text=True, env=_env(settings), timeout=60)
    assert missing.returncode == 1 and "no live heartbeat" in missing.stdout


def _env(settings):
    import os

    return {**os.environ, "REDIS_URL": settings.REDIS_URL, "DJANGO_SETTINGS_MODULE": "config.settings.local"}


# --- what strangers and load balancers see ----------------------------------------------------------


def test_anonymous_callers_get_the_status_and_code_only(client_for, heartbeats, settings, tmp_path):
    heartbeats("all@b", ["default", "encode", "query"])
    ok = client_for(None).get("/api/v1/health/")
    assert ok.status_code == 200 and ok.json() == {"status": "ok"}
    settings.REDIS_URL = f"unix://{tmp_path}/nothing-here.sock"
    degraded = client_for(None).get("/api/v1/health/")
    assert degraded.status_code == 503 and degraded.json() == {"status": "degraded"}
    assert b"nothing-here" not in degraded.content  # no error text, paths, versions or host names


def test_web_health_gives_anonymous_callers_the_status_and_staff_the_details(client_for, staff):
    anonymous = client_for(None).get("/api/v1/health/web/")
    assert anonymous.status_code == 200 and anonymous.json() == {"status": "ok"}
    assert staff.get("/api/v1/health/web/").json()["components"]["database"]["postgres"].startswith("18")


def test_signed_in_users_who_are_not_staff_get_the_status_only(client_for, alice, heartbeats):
    heartbeats("all@b", ["default", "encode", "query"])
    assert client_for(alice).get("/api/v1/health/").json() == {"status": "ok"}
    assert client_for(alice).get("/api/v1/health/web/").json() == {"status": "ok"}


def test_staff_details_work_with_a_real_session_and_token(make_user, heartbeats):
    from django.test import Client

    from albums.tokens import api_token_create

    heartbeats("all@b", ["default", "encode", "query"])
    ops = make_user("ops", is_staff=True)
    session = Client()
    session.force_login(ops)
    assert session.get("/api/v1/health/").json()["components"]["workers"]["workers"] == ["all@b"]
    _, key = api_token_create(user=ops, name="monitoring")
    by_token = Client().get("/api/v1/health/", HTTP_AUTHORIZATION=f"Token {key}")
    assert by_token.json()["components"]["workers"]["workers"] == ["all@b"]


def test_a_bad_token_is_an_anonymous_caller_not_a_401(heartbeats):
    from django.test import Client

    heartbeats("all@b", ["default", "encode", "query"])
    response = Client().get("/api/v1/health/", HTTP_AUTHORIZATION="Token not-a-token")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_the_health_token_shows_details_without_a_user(settings, heartbeats):
    """For a monitor, and for the moment the database (and so every user) is unreachable."""
    from django.test import Client

    heartbeats("all@b", ["default", "encode", "query"])
    settings.LOUPE_HEALTH_TOKEN = "monitor-secret-0123456789"
    shown = Client().get("/api/v1/health/", HTTP_X_HEALTH_TOKEN="monitor-secret-0123456789")
    assert shown.json()["components"]["workers"]["workers"] == ["all@b"]
    assert Client().get("/api/v1/health/", HTTP_X_HEALTH_TOKEN="guess").json() == {"status": "ok"}
    settings.LOUPE_HEALTH_TOKEN = ""
    assert Client().get("/api/v1/health/", HTTP_X_HEALTH_TOKEN="").json() == {"status": "ok"}


def test_a_caller_that_cannot_be_recognised_because_the_database_is_down_still_gets_the_status(monkeypatch, heartbeats):
    from django.db import OperationalError
    from django.test import Client

    from albums.tokens import ApiTokenAuthentication

    def database_down(self, request):
        raise OperationalError("connection refused")

    heartbeats("all@b", ["default", "encode", "query"])
    monkeypatch.setattr(ApiTokenAuthentication, "authenticate", database_down)
    response = Client().get("/api/v1/health/", HTTP_AUTHORIZATION="Token some-key")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
