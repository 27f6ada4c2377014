from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from albums import services as album_services
from albums.models import Image
from albums.roles import Role

BASE_DIR = Path(__file__).resolve().parent.parent

# A whole run writes about 0.5 GB (the test database, media, stacks of their own under the temp
# folder). On a disk that fills midway PostgreSQL stops writing, and every later test errors without
# saying why; refuse to start instead, naming the folder.
MIN_FREE_BYTES = int(os.environ.get("LOUPE_TEST_MIN_FREE_MB", "1024")) << 20


def pytest_sessionstart(session):
    free = {folder: shutil.disk_usage(folder).free for folder in (tempfile.gettempdir(), str(settings.TEST_VAR_DIR))}
    short = [f"{folder} ({size >> 20} MB free)" for folder, size in free.items() if size < MIN_FREE_BYTES]
    if short:
        pytest.exit(f"The test run needs {MIN_FREE_BYTES >> 20} MB free on the disk of each of: " + ", ".join(short)
                    + ". Free some space (old bench folders under the temp folder, for one) and run again.",
                    returncode=3)


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture
def make_user(db):
    counter = iter(range(1, 10_000))

    def make(username: str | None = None, **extra):
        username = username or f"user{next(counter)}"
        return get_user_model().objects.create_user(username=username, password="pw-" + username, **extra)

    return make


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def client_for():
    def make(user=None) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return make


@pytest.fixture
def album(alice):
    return album_services.album_create(owner=alice, name="Alice's trip")


@pytest.fixture
def member_of(album):
    def add(user, role: str = Role.VIEWER):
        return album_services.album_member_add(album=album, username=user.username, role=role)

    return add


# --- A real Celery worker consuming the real broker -------------------------------------------------


def _test_database_url() -> str:
    from django.db import connection

    parts = urlsplit(settings.DATABASE_URL)
    return urlunsplit(parts._replace(path="/" + connection.settings_dict["NAME"]))


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory) -> Path:
    from tests.tiny_models import build_tiny_models

    return build_tiny_models(tmp_path_factory.mktemp("models"))


# Small chunks and micro-batches, so a handful of test images still crosses batch boundaries.
WORKER_ENV = {"LOUPE_INDEX_CHUNK": "3", "LOUPE_ENCODE_BATCH_SIZE": "2", "LOUPE_DEVICE": "cpu", "LOUPE_DECODE_WORKERS": "2"}


@pytest.fixture(scope="session")
def postgres_template(tmp_path_factory) -> Path:
    """A stopped cluster, initdb'd and migrated once a run: the tests that start a PostgreSQL of their
    own (bench.stack, the benchmarks' subprocesses) copy it instead of paying initdb, a restart and
    every migration each time (~10 s apiece on a loaded box). Migrating a fresh database stays tested
    by the test database itself and by tests/test_launcher.py, which starts from nothing."""
    from config import runtime

    # Not under pytest's tmp_path: as root the server runs as another user, which cannot enter it.
    var_dir = Path(tempfile.mkdtemp(prefix="loupe-pg-template-"))
    var_dir.chmod(0o755)
    postgres = runtime.start_postgres(var_dir)
    try:
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test", "DATABASE_URL": postgres.url,
               "REDIS_URL": settings.REDIS_URL}
        migrated = subprocess.run([sys.executable, "manage.py", "migrate", "--no-input"], cwd=BASE_DIR, env=env,
                                  capture_output=True, text=True, timeout=300)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
    finally:
        postgres.stop()
    yield runtime.postgres_data_dir(var_dir)
    shutil.rmtree(var_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def import_root(tmp_path_factory) -> Path:
    """The one folder tree tests import from; workers get it as LOUPE_IMPORT_ROOTS too."""
    return tmp_path_factory.mktemp("import-root").resolve()


def worker_env(*, media_root: Path, models_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "DATABASE_URL": _test_database_url(),
        "REDIS_URL": settings.REDIS_URL,
        "LOUPE_MEDIA_ROOT": str(media_root),
        "LOUPE_MODELS_DIR": str(models_dir),
        **WORKER_ENV,
        **extra,
    }


def start_worker(env: dict[str, str], log_path: Path, *, name: str) -> subprocess.Popen:
    """A real `celery worker` on both queues with a thread pool, as the encode worker runs in production."""
    from config.celery import app

    log = open(log_path, "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", "default,encode,query", "-P", "threads", "-c", "2",
         "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not any(key.startswith(f"{name}@") for key in (app.control.inspect(timeout=0.5).ping() or {})):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"Celery worker did not start:\n{log_path.read_text()[-4000:]}")
    return process


def stop_worker(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture(scope="session")
def local_hub():
    """A model hub on loopback (tests/hub.py); workers get it as HF_ENDPOINT, so no test reaches the internet."""
    from tests.hub import LocalHub

    hub = LocalHub()
    yield hub
    hub.close()


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup, django_db_blocker, tmp_path_factory, tiny_models_dir, import_root,
                          local_hub):
    """A `celery worker` subprocess on the test database and broker, for the whole session."""
    import redis

    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # no stale messages from an aborted run
    media = tmp_path_factory.mktemp("worker-media")
    log_path = tmp_path_factory.mktemp("worker-log") / "worker.log"
    name = f"test-{os.getpid()}"
    env = worker_env(media_root=media, models_dir=tiny_models_dir, LOUPE_IMPORT_ROOTS=str(import_root),
                     HF_ENDPOINT=local_hub.url)
    process = start_worker(env, log_path, name=name)
    yield {"process": process, "media_root": media, "log": log_path, "name": name, "models_dir": tiny_models_dir}
    stop_worker(process)


@pytest.fixture
def worker(celery_worker_process, settings, transactional_db):
    """Tests that need the worker share its media root and models and commit their data (transactional_db)."""
    settings.MEDIA_ROOT = celery_worker_process["media_root"]
    settings.LOUPE_MODELS_DIR = celery_worker_process["models_dir"]
    settings.LOUPE_INDEX_DEBOUNCE_SECONDS = 0.2
    return celery_worker_process


@pytest.fixture
def no_worker_consuming():
    """No Celery worker takes tasks while the test runs, whichever earlier test started one (the
    session worker outlives its first user): a test that watches a job wait in the queue, or plays
    the worker's part itself, must not race a real one. The queues are consumed again afterwards;
    a task left in them then finds its job no longer queued and does nothing."""
    from config.celery import app  # the Celery app needs Django's settings loaded first

    consuming = {name: [q["name"] for q in queues]
                 for name, queues in (app.control.inspect(timeout=1).active_queues() or {}).items()}
    for name, queues in consuming.items():
        for queue in queues:
            app.control.cancel_consumer(queue, destination=[name], reply=True, timeout=5)
    yield
    for name, queues in consuming.items():
        for queue in queues:
            app.control.add_consumer(queue, destination=[name], reply=True, timeout=5)


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def upload_and_index(api, album, named: dict[str, bytes], *, timeout: float = 180) -> dict[str, int]:
    """Upload files by name through the API, wait until the worker has indexed every one, and return
    their image ids by name (without the extension)."""
    files = []
    for name, data in named.items():
        handle = io.BytesIO(data)
        handle.name = name
        files.append(handle)
    uploaded = api.post(f"/api/v1/albums/{album.pk}/images/", {"files": files}, format="multipart")
    assert uploaded.status_code == 201 and uploaded.json()["created"] == len(named), uploaded.content
    wait_for(lambda: Image.objects.filter(album=album, status="indexed").count() == len(named),
             timeout=timeout, what="the worker to index the photos")
    return {r["name"].rsplit(".", 1)[0]: r["image_id"] for r in uploaded.json()["results"]}
