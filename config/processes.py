"""The processes Loupe runs, defined once. `make run` (config/launcher.py) spawns them from here,
and the Dockerfile and docker-compose.yml start each one by name:

    python -m config.processes web [--bind ADDRESS]
    python -m config.processes worker encode|query|default

so a queue's pool and concurrency, or gunicorn's workers and threads, cannot differ between the two
(tests/test_compose.py checks that compose names only processes this table has). Concurrency comes
from the environment where an operator may want another value.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Worker:
    queue: str
    pool: str  # "threads" or "prefork"
    concurrency: int
    concurrency_env: str | None = None
    why: str = ""

    def argv(self, env=os.environ) -> list[str]:
        concurrency = env.get(self.concurrency_env) if self.concurrency_env else None
        return [sys.executable, "-m", "celery", "-A", "config", "worker", "-Q", self.queue, "-P", self.pool,
                "-c", str(concurrency or self.concurrency), "-n", f"{self.queue}@%h", "--loglevel", "INFO"]


WORKERS = {
    # Threads: the model loads once per process, the main thread stays free for the heartbeat during a
    # long batch, and the indexer may start a process pool for decoding (prefork children cannot).
    "encode": Worker("encode", "threads", 1, "LOUPE_ENCODE_CONCURRENCY", "indexing chunks and support patches"),
    # Query encodes share forward passes through one batching queue per process
    # (search/query_batcher.py): the task threads mostly wait on it, and each pass has every core.
    "query": Worker("query", "threads", 32, None, "query encoding and classification"),
    "default": Worker("default", "prefork", 2, "LOUPE_DEFAULT_CONCURRENCY",
                      "metadata and thumbnails, folder imports, duplicate scans, the recovery sweep"),
}

# Many threads: a request waiting for its query encode holds one, and a request that finds the encode
# queue full must reach Django to be told so (503) instead of waiting in gunicorn's queue.
WEB_THREADS = 32
WEB_WORKERS_DEFAULT = 2


def web_workers(env=os.environ) -> int:
    return int(env.get("LOUPE_WEB_WORKERS") or WEB_WORKERS_DEFAULT)


def web_argv(bind: str, env=os.environ) -> list[str]:
    return [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", bind,
            "--workers", str(web_workers(env)), "--threads", str(WEB_THREADS), "--timeout", "120",
            "--access-logfile", "-"]


def main(argv: list[str]) -> None:
    if argv[:1] == ["web"]:
        bind = argv[argv.index("--bind") + 1] if "--bind" in argv else "0.0.0.0:8000"
        command = web_argv(bind)
    elif argv[:1] == ["worker"] and len(argv) == 2 and argv[1] in WORKERS:
        command = WORKERS[argv[1]].argv()
    else:
        sys.exit(f"usage: python -m config.processes web [--bind ADDRESS] | worker {{{'|'.join(WORKERS)}}}")
    os.execv(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
