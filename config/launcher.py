"""`make run`: database, broker, migrations, admin account, workers, Flower and the web server.

Flower asks for a password: FLOWER_BASIC_AUTH if set, else one generated on the first run and kept in
var/flower-basic-auth (0600); the launcher says where when everything is up.

Embedded PostgreSQL + pgvector and Redis start under var/ unless DATABASE_URL / REDIS_URL are set.
Ctrl-C (or SIGTERM) stops the children in reverse order: web, Flower, workers, then Redis and
PostgreSQL, so no worker loses its database mid-task. A second launcher on the same var/ says so
and exits instead of starting a second set of servers on the same data.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from config import processes, runtime
from config.flower import FlowerAuthError, basic_auth_from_file, basic_auth_problem
from encoders.threads import cores

BASE_DIR = Path(__file__).resolve().parent.parent
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _log(message: str) -> None:
    print(f"[loupe] {message}", flush=True)


class AlreadyRunning(Exception):
    pass


def _take_lock(var_dir: Path):
    run_dir = var_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = open(run_dir / "launcher.lock", "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        raise AlreadyRunning(handle.read().strip() or "another launcher") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()}")
    handle.flush()
    return handle


class Launcher:
    def __init__(self) -> None:
        self.var_dir = Path(os.environ.get("LOUPE_VAR_DIR", BASE_DIR / "var")).resolve()
        self.host = os.environ.get("LOUPE_HOST", "127.0.0.1")
        self.port = int(os.environ.get("LOUPE_PORT", "8000"))
        self.flower_port = int(os.environ.get("LOUPE_FLOWER_PORT", "5555"))
        self.env = dict(os.environ)
        self.env.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
        self.env["LOUPE_VAR_DIR"] = str(self.var_dir)
        self.env.setdefault("LOUPE_FLOWER_URL", f"http://{self.host}:{self.flower_port}/")
        # One process holds the models and batches every query (worker-query); gunicorn's processes
        # stay small (docs/benchmarks.md, "Under load": ~200 MB against ~3.7 GB when each encodes).
        self.env.setdefault("LOUPE_QUERY_ENCODING", "worker")
        # The service, not a development server: no debug pages, and no CursorDebugWrapper formatting
        # every statement (a search's 25 KB vector literals included) into a query log.
        self.env.setdefault("DJANGO_DEBUG", "false")
        self.children: list[tuple[str, subprocess.Popen]] = []
        self.postgres: runtime.EmbeddedPostgres | None = None
        self.redis: runtime.EmbeddedRedis | None = None
        self.stopping = False
        self.flower_credentials_note = "credentials from FLOWER_BASIC_AUTH"

    # --- lifecycle ---------------------------------------------------------------------------

    def start_backing_services(self) -> None:
        if not self.env.get("DATABASE_URL"):
            _log(f"starting embedded PostgreSQL + pgvector under {self.var_dir / 'postgres'}")
            self.postgres = runtime.start_postgres(self.var_dir)
            self.env["DATABASE_URL"] = self.postgres.url
        if not self.env.get("REDIS_URL"):
            _log("starting embedded Redis")
            self.redis = runtime.start_redis(self.var_dir)
            self.env["REDIS_URL"] = self.redis.url

    def manage(self, *args: str) -> None:
        subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=self.env, check=True)

    def spawn(self, name: str, argv: list[str], *, env: dict[str, str] | None = None) -> None:
        # Own session: Ctrl-C reaches only the launcher, which stops children in order.
        process = subprocess.Popen(argv, cwd=BASE_DIR, env={**self.env, **(env or {})}, start_new_session=True)
        self.children.append((name, process))
        _log(f"started {name} (pid {process.pid})")

    def start_children(self) -> None:
        configured = int(self.env.get("LOUPE_TORCH_THREADS") or 0)
        self.spawn("worker-encode", processes.WORKERS["encode"].argv(self.env))
        # One batched forward pass at a time in the query worker: each has every core.
        self.spawn("worker-query", processes.WORKERS["query"].argv(self.env),
                   env={"LOUPE_TORCH_THREADS": str(configured or cores())})
        self.spawn("worker-default", processes.WORKERS["default"].argv(self.env))
        # Behind basic auth (its API can stop workers and send tasks); the password travels in the environment.
        self.spawn("flower", [sys.executable, "-m", "config.flower", f"--address={self.host}", f"--port={self.flower_port}"],
                   env={"FLOWER_BASIC_AUTH": self.flower_credentials()})
        # When the web encodes queries itself, each gunicorn process runs one batched pass at a time.
        torch_threads = str(configured or max(1, cores() // processes.web_workers(self.env)))
        self.spawn("web", processes.web_argv(f"{self.host}:{self.port}", self.env), env={"LOUPE_TORCH_THREADS": torch_threads})

    def flower_credentials(self) -> str:
        """The operator's FLOWER_BASIC_AUTH if set (refused when a placeholder), else the generated one."""
        if self.env.get("FLOWER_BASIC_AUTH"):
            if problem := basic_auth_problem(self.env["FLOWER_BASIC_AUTH"]):
                raise FlowerAuthError(problem)
            return self.env["FLOWER_BASIC_AUTH"]
        value, path = basic_auth_from_file(self.var_dir)
        self.flower_credentials_note = f"user {value.split(':', 1)[0]}, password in {path}"
        return value

    def stop(self) -> None:
        self.stopping = True
        for name, process in reversed(self.children):
            if process.poll() is None:
                _log(f"stopping {name}")
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for name, process in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _log(f"{name} did not stop in time; killing it")
                process.kill()
                process.wait()
        if self.redis is not None:
            _log("stopping Redis")
            self.redis.stop()
        if self.postgres is not None:
            _log("stopping PostgreSQL")
            self.postgres.stop()

    def run(self) -> int:
        try:
            self.flower_credentials()  # a refused password stops the launch before anything starts
        except FlowerAuthError as exc:
            _log(f"refusing to start Flower: {exc}")
            return 1
        stop_requested: list[int] = []
        for sig in STOP_SIGNALS:
            signal.signal(sig, lambda signum, frame: stop_requested.append(signum))
        try:
            self.start_backing_services()
            self.manage("migrate", "--noinput")
            self.manage("collectstatic", "--noinput", "--verbosity", "0")
            self.manage("ensure_admin")
            # Queued before the workers start; a worker downloads while the web comes up (offline: it
            # fails within seconds and albums fall back to the default that is here).
            self.manage("fetch_default_encoder")
            self.start_children()
            _log(f"Loupe is up: http://{self.host}:{self.port}/  (Flower: http://{self.host}:{self.flower_port}/, "
                 f"{self.flower_credentials_note})")
            _log("press Ctrl-C to stop")
            while not stop_requested:
                for name, process in self.children:
                    if process.poll() is not None:
                        _log(f"{name} exited with {process.returncode}; stopping everything")
                        return 1
                time.sleep(0.5)
            return 0
        except subprocess.CalledProcessError as exc:
            _log(f"set-up step failed: {' '.join(map(str, exc.cmd[1:]))} (exit {exc.returncode})")
            return 1
        finally:
            for sig in STOP_SIGNALS:
                signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not interrupt the shutdown
            self.stop()
            _log("stopped")


def main() -> int:
    launcher = Launcher()
    try:
        lock = _take_lock(launcher.var_dir)
    except AlreadyRunning as exc:
        _log(f"Loupe is already running from {launcher.var_dir} ({exc}); stop it first (Ctrl-C in its terminal).")
        return 2
    try:
        return launcher.run()
    finally:
        lock.close()


if __name__ == "__main__":
    sys.exit(main())
