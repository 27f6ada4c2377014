"""`make run`'s launcher, for real: embedded PostgreSQL and Redis, migrations, workers, Flower and
gunicorn come up; health reports every component; Ctrl-C stops them all; data survives a restart;
a second launcher on the same data refuses to start."""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health(port: int, token: str | None = None) -> dict | None:
    """Anyone gets the status; the admin's token (staff) gets the components."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/health/")
    if token:
        request.add_header("Authorization", f"Token {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.load(response)
    except urllib.error.HTTPError as exc:
        return json.load(exc)
    except OSError:
        return None


def start(env, log):
    return subprocess.Popen([sys.executable, "-m", "config.launcher"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def wait_healthy(process, port, log_path, timeout=180):
    deadline = time.monotonic() + timeout
    report = None
    while time.monotonic() < deadline:
        assert process.poll() is None, f"launcher exited early:\n{log_path.read_text()[-5000:]}"
        report = health(port)
        if report and report["status"] == "ok":
            return report
        time.sleep(0.2)  # health is cheap to ask; polling each second lost up to a second per wait
    raise AssertionError(f"not healthy in {timeout}s: {report}\n{log_path.read_text()[-5000:]}")


def wait_workers(port, names, token, timeout=120):
    deadline = time.monotonic() + timeout
    report = None
    while time.monotonic() < deadline:
        report = health(port, token)
        if report and {w.split("@")[0] for w in report["components"]["workers"].get("workers", [])} == names:
            return report
        time.sleep(0.2)  # health is cheap to ask; polling each second lost up to a second per wait
    raise AssertionError(f"workers {names} not all live in {timeout}s: {report}")


def stop(process, log_path):
    children = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=90) == 0, log_path.read_text()[-5000:]
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"children left running: {alive}"


def test_launcher_runs_everything_stops_cleanly_and_keeps_data(tmp_path):
    port, flower_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        LOUPE_VAR_DIR=str(tmp_path / "var"), LOUPE_PORT=str(port), LOUPE_FLOWER_PORT=str(flower_port),
        LOUPE_ADMIN_USERNAME="admin", LOUPE_ADMIN_PASSWORD="launcher-test-pw", LOUPE_WEB_WORKERS="1",
        LOUPE_DEFAULT_CONCURRENCY="1",
        # No hub answers (a closed port), network or not: the default text encoder's download,
        # queued at start (LOUPE_ALLOW_DOWNLOADS defaults to auto), fails and nothing waits on it.
        HF_ENDPOINT=f"http://127.0.0.1:{free_port()}",
    )
    log_path = tmp_path / "launcher.log"
    with open(log_path, "wb") as log:
        process = start(env, log)
        try:
            assert wait_healthy(process, port, log_path) == {"status": "ok"}  # what a stranger sees
            assert "open-clip:ViT-B-32/laion2b_s34b_b79k: downloading in the background" in log_path.read_text()
            admin_token = _post_json(port, "/api/v1/auth/token/", {"username": "admin", "password": "launcher-test-pw"})["token"]
            report = health(port, admin_token)
            assert report["components"]["database"]["pgvector"].startswith("0.8")
            # Health is ok once every queue this configuration uses has a worker; the launcher starts
            # all three, each on its own queue (the query worker may still be loading).
            report = wait_workers(port, {"encode", "default", "query"}, admin_token)
            assert report["components"]["workers"]["queues"] == {
                "default": [w for w in report["components"]["workers"]["workers"] if w.startswith("default@")],
                "encode": [w for w in report["components"]["workers"]["workers"] if w.startswith("encode@")],
                "query": [w for w in report["components"]["workers"]["workers"] if w.startswith("query@")],
            }

            # The admin account works, and the UI answers.
            token = _post_json(port, "/api/v1/auth/token/", {"username": "admin", "password": "launcher-test-pw"})["token"]
            album = _post_json(port, "/api/v1/albums/", {"name": "kept"}, token=token)
            assert album["role"] == "owner"
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/accounts/login/", timeout=5) as page:
                assert b"Sign in" in page.read()
            with urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/healthcheck", timeout=5) as page:
                assert page.read().strip() == b"OK"
            # Flower's API asks for the password the launcher generated into var/ (readable by this user only).
            secret_file = tmp_path / "var" / "flower-basic-auth"
            assert secret_file.stat().st_mode & 0o077 == 0
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{flower_port}/api/workers", timeout=10)
            assert refused.value.code == 401
            signed = urllib.request.Request(f"http://127.0.0.1:{flower_port}/api/workers")
            signed.add_header("Authorization", "Basic " + base64.b64encode(secret_file.read_text().strip().encode()).decode())
            with urllib.request.urlopen(signed, timeout=10) as page:
                assert page.status == 200

            # A second launcher on the same data says so and leaves the first alone.
            second = subprocess.run([sys.executable, "-m", "config.launcher"], cwd=ROOT, env=env,
                                    capture_output=True, text=True, timeout=60)
            assert second.returncode == 2
            assert "already running" in second.stdout
            assert health(port)["status"] == "ok"
        finally:
            if process.poll() is None:
                stop(process, log_path)
    assert "stopping PostgreSQL" in log_path.read_text()

    # Restart on the same data: the album is still there.
    with open(tmp_path / "launcher2.log", "wb") as log:
        process = start(env, log)
        try:
            wait_healthy(process, port, tmp_path / "launcher2.log")
            token = _post_json(port, "/api/v1/auth/token/", {"username": "admin", "password": "launcher-test-pw"})["token"]
            albums = _get_json(port, "/api/v1/albums/", token=token)
            assert [a["name"] for a in albums["results"]] == ["kept"]
        finally:
            stop(process, tmp_path / "launcher2.log")


def _request(port, path, *, token=None, data=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Token {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def _post_json(port, path, body, *, token=None):
    return _request(port, path, token=token, data=json.dumps(body).encode())


def _get_json(port, path, *, token=None):
    return _request(port, path, token=token)
