"""Storage kinds for vectors, measured: `python -m bench.quantization` (`--quick` for a smoke run).

On the same synthetic clustered unit vectors (bench/search_data.py), stored three times in
search_embedding under one model_id per storage kind (`…`, `…+storage=halfvec`, `…+storage=binary`,
as albums with those settings store them), each with the product's own HNSW index
(`hnsw_index_ensure`: float32 `vector_cosine_ops`, float16 `halfvec_cosine_ops`, or
`binary_quantize(…)::bit(D)` with `bit_hamming_ops`), it reports per kind:

- memory per image: the heap row (`pg_relation_size('search_embedding')` / rows — the float32
  column every kind keeps for the exact re-score) and the kind's HNSW index
  (`pg_relation_size(index)` / rows), and their sum;
- recall@10 of Loupe's search path (`search.selectors.search_candidates`: the index proposes
  k' candidates, or k' × the binary oversampling, every one re-scored on the float32 column, then
  the exact top 10) against exact float32 search (NumPy over the same vectors), and its drop against
  the float32 index measured in the same run;
- p50/p95 latency of that path, with the machine's load average (a shared 2-core box: timings
  are indicative, recall and bytes are not affected by load);
- for binary, recall at several oversampling factors, so the product's factor is a measured choice.

It starts its own embedded PostgreSQL in a temporary directory (never var/). Results are printed
and, unless --quick/--no-doc, written between the quantization markers of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction

from bench.doc_sections import replace_marked_section
from bench.search import server_info, temporary_django
from bench.search_data import ClusteredSpace, copy_album_vectors, copy_embeddings, insert_images
from encoders.model_ids import compose_model_id, parse_model_id
from workers.vector_store import hnsw_index_ensure, index_name

REPO = Path(__file__).resolve().parent.parent
DOC_PATH = REPO / "docs" / "benchmarks.md"
START, END = "<!-- quantization:start -->", "<!-- quantization:end -->"
BASE_MODEL_ID = "dense:bench-synthetic@sha256:{dim:012d}"
KINDS = ("vector", "halfvec", "binary")
MAX_RESULTS = 100  # the album default: k' = max(LOUPE_SEARCH_CANDIDATES, 100)
RECALL_DROP_LIMIT = 0.01  # the bar for offering a kind: recall@10 within 1 point of float32


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def load(space: ClusteredSpace, *, size: int, seed: int) -> tuple[int, dict[str, str]]:
    """One album, `size` images, the same vectors under each kind's model_id. Returns the album id."""
    from albums.models import Album  # imports models: only once temporary_django() has set Django up

    base = BASE_MODEL_ID.format(dim=space.dim)
    model_ids = {kind: compose_model_id(base, storage=kind) for kind in KINDS}
    user, _ = get_user_model().objects.get_or_create(username="bench-quantization")
    album = Album.objects.create(owner=user, name=f"quantization-{space.dim}-{size}", encoder_spec=base.rsplit("@", 1)[0],
                                 active_model_id=model_ids["vector"], max_search_results=MAX_RESULTS)
    rng = np.random.default_rng([seed, space.dim, size])
    vectors, _ = space.sample(size, rng)
    with transaction.atomic():
        connection.ensure_connection()
        conn = connection.connection
        image_ids = insert_images(conn, album_id=album.pk, n=size)
        for model_id in model_ids.values():
            copy_embeddings(conn, album_id=album.pk, model_id=model_id, image_ids=image_ids, vectors=vectors)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE search_embedding")
    return album.pk, model_ids


def build(model_id: str, dim: int, maintenance_work_mem: str) -> dict:
    with connection.cursor() as cursor:
        cursor.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
    started = time.perf_counter()
    hnsw_index_ensure(model_id=model_id, dim=dim)
    build_s = time.perf_counter() - started
    with connection.cursor() as cursor:
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("SELECT pg_relation_size(%s::regclass), pg_get_indexdef(%s::regclass)",
                       [index_name(model_id, dim), index_name(model_id, dim)])
        index_bytes, definition = cursor.fetchone()
    return {"build_s": build_s, "index_bytes": index_bytes, "definition": definition}


def heap_bytes_per_row() -> float:
    with connection.cursor() as cursor:  # freshly loaded by COPY: no dead rows to discount
        cursor.execute("SELECT pg_relation_size('search_embedding'), (SELECT count(*) FROM search_embedding)")
        heap, rows = cursor.fetchone()
    return heap / rows


def exact_top(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> list[np.ndarray]:
    out = []
    for start in range(0, len(queries), 64):
        sims = queries[start : start + 64] @ vectors.T
        for row in sims:
            top = np.argpartition(-row, k)[:k]
            order = np.lexsort((ids[top], -row[top]))
            out.append(ids[top[order]])
    return out


def measure(album_id: int, model_id: str, queries: np.ndarray, truth: list[np.ndarray], *, k_prime: int) -> dict:
    from search.selectors import search_candidates  # imports models: only once temporary_django() has set Django up

    recalls, times = [], []
    rows_seen = []
    for i, query in enumerate(queries):
        started = time.perf_counter()
        candidates = search_candidates(album_id=album_id, model=parse_model_id(model_id), queries={"image": query}, k=k_prime)
        elapsed = time.perf_counter() - started
        cos = candidates.cosines["image"]
        order = np.lexsort((candidates.image_ids, -cos))[:10]
        got = candidates.image_ids[order]
        recalls.append(len(set(got.tolist()) & set(truth[i][:10].tolist())) / 10)
        rows_seen.append(len(candidates.image_ids))
        if i >= 2:  # the first ones warm the cache
            times.append(elapsed)
    ms = np.asarray(times) * 1000
    return {"recall@10": float(np.mean(recalls)), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95)), "candidates_mean": float(np.mean(rows_seen))}


def run(args) -> dict:
    # imports models: only once temporary_django() has set Django up
    from search import selectors
    from search.selectors import candidate_count

    started = time.perf_counter()
    info = server_info()
    k_prime = candidate_count(MAX_RESULTS)
    results = {"date": datetime.date.today().isoformat(), "server": info, "size": args.size, "dim": args.dim,
               "queries": args.queries, "k_prime": k_prime, "product_oversample": selectors.BINARY_OVERSAMPLE,
               "command": "python -m bench.quantization " + " ".join(sys.argv[1:]), "kinds": {}, "binary_oversample": []}
    space = ClusteredSpace.make(args.dim, n_clusters=args.clusters, seed=args.seed)
    log(f"loading {args.size:,} × {args.dim}-d vectors under {len(KINDS)} model ids")
    load_started = time.perf_counter()
    album_id, model_ids = load(space, size=args.size, seed=args.seed)
    results["load_s"] = time.perf_counter() - load_started
    heap_row = heap_bytes_per_row()
    connection.ensure_connection()
    ids, vectors = copy_album_vectors(connection.connection, album_id=album_id, model_id=model_ids["vector"], dim=args.dim)
    queries = space.queries(args.queries, seed=args.seed + 7)["image"]
    truth = exact_top(vectors, ids, queries, 10)
    del vectors
    for kind in KINDS:
        log(f"{kind}: building the HNSW index")
        built = build(model_ids[kind], args.dim, args.maintenance_work_mem)
        log(f"{kind}: built in {built['build_s']:.1f} s, {built['index_bytes'] / 2**20:.1f} MiB; measuring")
        load_before = os.getloadavg()[0]
        row = measure(album_id, model_ids[kind], queries, truth, k_prime=k_prime)
        row.update(built, heap_bytes_per_row=heap_row, index_bytes_per_row=built["index_bytes"] / args.size,
                   loadavg=(load_before, os.getloadavg()[0]))
        results["kinds"][kind] = row
        log(f"{kind}: {json.dumps({k: v for k, v in row.items() if k != 'definition'})}")
    product = selectors.BINARY_OVERSAMPLE
    try:
        for factor in args.oversample:
            selectors.BINARY_OVERSAMPLE = factor
            row = measure(album_id, model_ids["binary"], queries, truth, k_prime=k_prime)
            row["oversample"] = factor
            results["binary_oversample"].append(row)
            log(f"binary × {factor}: {json.dumps(row)}")
    finally:
        selectors.BINARY_OVERSAMPLE = product
    results["hnsw"] = {"m": settings.LOUPE_HNSW_M, "ef_construction": settings.LOUPE_HNSW_EF_CONSTRUCTION}
    results["wall_s"] = time.perf_counter() - started
    return results


def render(results: dict) -> str:
    info, kinds = results["server"], results["kinds"]
    base = kinds["vector"]
    out = [
        f"Run {results['date']} on {info['machine']}; PostgreSQL {info['postgresql']} + pgvector {info['pgvector']} "
        f"(embedded). {results['size']:,} synthetic clustered unit vectors of {results['dim']} dimensions (DINOv2-small's "
        f"width; bench/search_data.py), stored once per kind in one table; {results['queries']} held-out image queries; "
        f"HNSW m {results['hnsw']['m']}, ef_construction {results['hnsw']['ef_construction']}; k' = "
        f"{results['k_prime']} candidates (× {results['product_oversample']} for binary), each re-scored on the float32 "
        f"column. Command: `{results['command']}` (wall time {results['wall_s'] / 60:.1f} min).",
        "",
        "| storage kind | HNSW build s | heap bytes / image (float32 row) | index bytes / image | total bytes / image | "
        "index × float32 | total × float32 | recall@10 vs exact float32 | drop vs float32 index | p50 ms | p95 ms | "
        "load avg |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, row in kinds.items():
        total = row["heap_bytes_per_row"] + row["index_bytes_per_row"]
        base_total = base["heap_bytes_per_row"] + base["index_bytes_per_row"]
        drop = base["recall@10"] - row["recall@10"]
        out.append(
            f"| `{kind}` | {row['build_s']:.1f} | {row['heap_bytes_per_row']:,.0f} | {row['index_bytes_per_row']:,.0f} | "
            f"{total:,.0f} | {row['index_bytes_per_row'] / base['index_bytes_per_row']:.2f} | {total / base_total:.2f} | "
            f"{row['recall@10']:.4f} | {drop:+.4f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} | "
            f"{row['loadavg'][0]:.1f}→{row['loadavg'][1]:.1f} |"
        )
    out += ["", "Binary quantization by oversampling factor (Hamming candidates per query = factor × k', all re-scored "
            "in float32):", "", "| factor | candidates per query (mean) | recall@10 | drop vs float32 index | p50 ms | p95 ms |",
            "|---|---|---|---|---|---|"]
    for row in results["binary_oversample"]:
        out.append(f"| {row['oversample']} | {row['candidates_mean']:.0f} | {row['recall@10']:.4f} | "
                   f"{base['recall@10'] - row['recall@10']:+.4f} | {row['p50_ms']:.1f} | {row['p95_ms']:.1f} |")
    offered = [kind for kind, row in kinds.items() if base["recall@10"] - row["recall@10"] < RECALL_DROP_LIMIT]
    out += ["", f"Offered as album settings (recall@10 drop against the float32 index under "
            f"{RECALL_DROP_LIMIT:.0%} in this run): {', '.join(f'`{k}`' for k in offered)}."]
    return "\n".join(out)


def write_doc(body: str) -> None:
    """Replace only the text between the quantization markers; everything else in the file is kept."""
    replace_marked_section(DOC_PATH, start=START, end=END, heading="## Vector storage and quantization", body=body)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5k rows, 30 queries; no doc written")
    parser.add_argument("--size", type=int, default=None, help="images (default 150000)")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=None, help="held-out queries (default 200)")
    parser.add_argument("--oversample", default="1,2,4,8", help="binary oversampling factors to measure")
    parser.add_argument("--clusters", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--maintenance-work-mem", default="2GB")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--render-only", type=Path, default=None, help="no run: render from a --json file")
    parser.add_argument("--notes", type=Path, default=None, help="markdown appended to the doc section")
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = 5000 if args.quick else 150_000
    if args.queries is None:
        args.queries = 30 if args.quick else 200
    if args.quick:
        args.no_doc = True
    args.oversample = [int(x) for x in args.oversample.split(",") if x.strip()]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.render_only:
        body = render(json.loads(args.render_only.read_text()))
    else:
        with temporary_django("loupe-bench-quantization-", maintenance_work_mem=args.maintenance_work_mem):
            results = run(args)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1, default=str))
            body = render(results)
    if args.notes:
        body += "\n\n" + args.notes.read_text().strip()
    print("\n" + body + "\n", flush=True)
    if not args.no_doc:
        write_doc(body)
        log(f"wrote the quantization section of {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
