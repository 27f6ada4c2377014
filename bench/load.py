"""Search while indexing runs, on loopback: `python -m bench.load [--clients 16 32 64] [--duration 20]`.

A whole Loupe (`bench.stack.Stack`: its own PostgreSQL, Redis, gunicorn with production settings,
one Celery worker, a tiny real open_clip encoder) gets an indexed album; then, while a second upload
is being indexed, N closed-loop clients (threads, keep-alive) search it: half by text (encoded in
the web process), half by a stored image's vector. Reports requests/s, p50/p95/p99 latency and the
error count per level (0 is the goal). Bounded by --duration per level.

`python -m bench.load --soak 600` instead runs a steady load (8 clients) plus an upload every 15 s
for that many seconds, sampling the resident memory of web (gunicorn and its workers) and worker
every 10 s, and reports the first, last and peak values and the growth per minute.

The throttle for search is raised for the run (one user stands for all clients); `--json PATH` keeps
the figures for docs/reliability.md.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from bench.faults import noise_images
from bench.stack import Stack, process_rss_mb, scratch_dir, wait_until

WORKER_ENV = {"LOUPE_INDEX_CHUNK": "64", "LOUPE_ENCODE_BATCH_SIZE": "32", "LOUPE_DECODE_WORKERS": "1"}
WEB_ENV = {"LOUPE_SEARCH_THROTTLE": "1000000/minute", "LOUPE_UPLOAD_THROTTLE": "1000000/minute"}
WORDS = "a photo of drawing an illustration painting dog cat red sled kids on the".split()


def _client_loop(stack: Stack, album_id: int, image_ids: list[int], stop: threading.Event, seed: int, out: list):
    rng = random.Random(seed)
    with stack.client(timeout=30) as client:
        while not stop.is_set():
            if rng.random() < 0.5:
                body = {"text": " ".join(rng.sample(WORDS, 3)), "min_score": -1, "max_results": 20}
            else:
                body = {"image_id": rng.choice(image_ids), "min_score": -1, "max_results": 20}
            started = time.perf_counter()
            try:
                response = client.post(f"/api/v1/albums/{album_id}/search/", json=body)
                ok = response.status_code == 200
                status = response.status_code
            except httpx.HTTPError as exc:
                ok, status = False, type(exc).__name__
            out.append((time.perf_counter() - started, ok, status))


def run_level(stack: Stack, album_id: int, image_ids: list[int], *, clients: int, duration: float) -> dict:
    stop = threading.Event()
    results: list[list] = [[] for _ in range(clients)]
    threads = [threading.Thread(target=_client_loop, args=(stack, album_id, image_ids, stop, i, results[i]), daemon=True)
               for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(duration)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.perf_counter() - started
    rows = [r for per_client in results for r in per_client]
    latencies = np.array([r[0] for r in rows]) * 1000
    errors: dict[str, int] = {}
    for _, ok, status in rows:
        if not ok:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {
        "clients": clients,
        "requests": len(rows),
        "requests_per_s": round(len(rows) / elapsed, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 1) if rows else None,
        "p95_ms": round(float(np.percentile(latencies, 95)), 1) if rows else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 1) if rows else None,
        "errors": sum(errors.values()),
        "errors_by_status": errors,
    }


def _indexed_album(stack: Stack, images: int) -> tuple[int, list[int]]:
    album = stack.create_album("load")
    stack.upload(album, noise_images(images, seed=11), per_request=100)
    wait_until(lambda: stack.album_settled(album), timeout=600, what="the first upload to be indexed")
    ids = [row[0] for row in stack.sql("SELECT image_id FROM search_embedding WHERE album_id = %s", [album])]
    return album, ids


def load(workdir: Path, *, images: int, indexing_images: int, levels: list[int], duration: float) -> dict:
    with Stack.started(workdir, worker_env=WORKER_ENV, web_env=WEB_ENV) as stack:
        stack.start_worker("w1")
        album, ids = _indexed_album(stack, images)
        run_level(stack, album, ids, clients=4, duration=5)  # warm: each gunicorn worker loads the encoder
        background = threading.Thread(
            target=stack.upload, args=(album, noise_images(indexing_images, seed=12)), kwargs={"per_request": 50}, daemon=True)
        background.start()
        rows = []
        for clients in levels:
            indexing = stack.sql("SELECT count(*) FROM workers_indexjob WHERE album_id = %s AND status IN "
                                 "('queued', 'running')", [album])[0][0]
            row = run_level(stack, album, ids, clients=clients, duration=duration)
            row["indexing_job_active_at_start"] = bool(indexing)
            rows.append(row)
            print(json.dumps(row), flush=True)
        background.join(timeout=600)
        wait_until(lambda: stack.album_settled(album), timeout=600, what="the second upload to be indexed")
        vectors = stack.vectors_per_image(album)
        return {"levels": rows, "album_images": len(vectors), "images_with_one_vector": sum(n == 1 for n in vectors.values())}


def soak(workdir: Path, *, images: int, duration: float, clients: int = 8) -> dict:
    with Stack.started(workdir, worker_env=WORKER_ENV, web_env=WEB_ENV) as stack:
        stack.start_worker("w1")
        album, ids = _indexed_album(stack, images)
        stop = threading.Event()
        results: list[list] = [[] for _ in range(clients)]
        threads = [threading.Thread(target=_client_loop, args=(stack, album, ids, stop, i, results[i]), daemon=True)
                   for i in range(clients)]
        for t in threads:
            t.start()
        samples, started, next_upload, seed = [], time.monotonic(), 0.0, 100
        while (elapsed := time.monotonic() - started) < duration:
            if elapsed >= next_upload:
                seed += 1
                threading.Thread(target=stack.upload, args=(album, noise_images(20, seed=seed)), daemon=True).start()
                next_upload += 15
            samples.append({"t_s": round(elapsed), "web_mb": round(process_rss_mb(stack.web_pid), 1),
                            "worker_mb": round(process_rss_mb(stack.worker_pid("w1")), 1)})
            time.sleep(10)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        rows = [r for per_client in results for r in per_client]

        def growth(key: str) -> float:
            half = samples[len(samples) // 2:]  # after warm-up: the second half's slope, MB per minute
            if len(half) < 2:
                return 0.0
            slope = np.polyfit([s["t_s"] for s in half], [s[key] for s in half], 1)[0]
            return round(float(slope) * 60, 2)

        return {
            "duration_s": round(time.monotonic() - started),
            "clients": clients,
            "requests": len(rows),
            "errors": sum(1 for r in rows if not r[1]),
            "web_mb": {"first": samples[0]["web_mb"], "last": samples[-1]["web_mb"], "peak": max(s["web_mb"] for s in samples),
                       "growth_mb_per_min_second_half": growth("web_mb")},
            "worker_mb": {"first": samples[0]["worker_mb"], "last": samples[-1]["worker_mb"],
                          "peak": max(s["worker_mb"] for s in samples),
                          "growth_mb_per_min_second_half": growth("worker_mb")},
            "album_images": stack.sql("SELECT count(*) FROM albums_image WHERE album_id = %s", [album])[0][0],
            "samples": samples,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000, help="indexed before the load starts")
    parser.add_argument("--indexing-images", type=int, default=1500, help="uploaded (and indexed) during the load")
    parser.add_argument("--clients", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per level")
    parser.add_argument("--soak", type=float, help="run the soak for this many seconds instead")
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with scratch_dir(args.workdir, prefix="loupe-load-") as workdir:
        if args.soak:
            result = soak(workdir, images=min(args.images, 500), duration=args.soak)
        else:
            result = load(workdir, images=args.images, indexing_images=args.indexing_images, levels=args.clients,
                          duration=args.duration)
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
