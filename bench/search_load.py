"""Search under load: `python -m bench.search_load --var-dir DIR` (after `python -m bench.search --var-dir DIR`).

Against the real server on loopback: gunicorn (config.wsgi) on a free 127.0.0.1 port with the
benchmark's PostgreSQL, a user with a token and membership of a benchmark album, and N closed-loop
clients (threads, keep-alive http.client) each POSTing `/api/v1/albums/{id}/search/` with a random
`image_id` of the album (stored vectors: no encoder needed). Bounded by --duration (≤ 60 s per level)
and --max-requests. Reports requests/s, p50/p95/p99 and errors per concurrency level, and the
highest throughput seen with p95 ≤ 100 ms. No assertion is about time.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def setup(var_dir: Path, album_name: str):
    from config.runtime import start_postgres

    pg = start_postgres(var_dir)
    env = {"DATABASE_URL": pg.url, "DJANGO_SETTINGS_MODULE": "config.settings.local", "REDIS_URL": "redis://127.0.0.1:1/0",
           "DJANGO_DEBUG": "0", "LOUPE_VAR_DIR": str(var_dir), "LOUPE_QUERY_ENCODING": "web"}
    os.environ.update(env)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    from albums.models import Album, AlbumMembership, Image
    from albums.roles import Role

    album = Album.objects.get(name=album_name)
    user, _ = get_user_model().objects.get_or_create(username="bench-load")
    AlbumMembership.objects.get_or_create(album=album, user=user, defaults={"role": Role.VIEWER})
    token, _ = Token.objects.get_or_create(user=user)
    image_ids = list(Image.objects.filter(album=album).order_by("?").values_list("id", flat=True)[:5000])
    return env, album, token.key, image_ids


def run_level(port: int, path: str, token: str, image_ids: list[int], *, clients: int, duration: float, max_requests: int):
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    stop_at = time.monotonic() + duration
    issued = [0]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop_at:
            with lock:
                if issued[0] >= max_requests:
                    return
                issued[0] += 1
            body = json.dumps({"image_id": rng.choice(image_ids), "page_size": 20})
            started = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers={"Authorization": f"Token {token}",
                                                               "Content-Type": "application/json"})
                response = conn.getresponse()
                payload = response.read()
                elapsed = time.perf_counter() - started
                key = None if response.status == 200 and b'"results"' in payload else f"HTTP {response.status}"
            except (OSError, http.client.HTTPException) as exc:
                elapsed, key = time.perf_counter() - started, type(exc).__name__
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            with lock:
                if key is None:
                    latencies.append(elapsed)
                else:
                    errors[key] = errors.get(key, 0) + 1
        conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    ms = np.asarray(latencies) * 1000 if latencies else np.zeros(1)
    return {"clients": clients, "requests": len(latencies), "errors": errors, "wall_s": wall,
            "rps": len(latencies) / wall, "p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)),
            "p99_ms": float(np.percentile(ms, 99))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--var-dir", type=Path, required=True, help="the cluster kept by bench.search --var-dir")
    parser.add_argument("--album", default="bench-512-100000")
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients per level")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per level (at most 60)")
    parser.add_argument("--max-requests", type=int, default=3000, help="per level")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    duration = min(60.0, args.duration)
    env, album, token, image_ids = setup(args.var_dir.resolve(), args.album)
    port = _free_port()
    gunicorn = Path(sys.executable).with_name("gunicorn")
    server = subprocess.Popen(
        [str(gunicorn), "config.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
         "--timeout", "60", "--log-level", "warning"],
        cwd=REPO, env={**os.environ, **env}, start_new_session=True,
    )
    results = {"album": args.album, "album_id": album.pk, "workers": args.workers, "levels": []}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("gunicorn did not start")
                time.sleep(0.3)
        path = f"/api/v1/albums/{album.pk}/search/"
        run_level(port, path, token, image_ids, clients=2, duration=3, max_requests=50)  # warm every worker
        for clients in [int(x) for x in args.levels.split(",")]:
            level = run_level(port, path, token, image_ids, clients=clients, duration=duration, max_requests=args.max_requests)
            results["levels"].append(level)
            print(f"{clients:>3} clients: {level['requests']} ok, errors {level['errors'] or 0}, {level['rps']:.1f} req/s, "
                  f"p50 {level['p50_ms']:.0f} ms, p95 {level['p95_ms']:.0f} ms, p99 {level['p99_ms']:.0f} ms", flush=True)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
    ok = [lv for lv in results["levels"] if lv["p95_ms"] <= 100 and not lv["errors"]]
    results["best_rps_at_p95_le_100ms"] = max((lv["rps"] for lv in ok), default=None)
    print(f"best req/s with p95 ≤ 100 ms and no errors: {results['best_rps_at_p95_le_100ms']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
