"""Recall and latency of the album kNN by hnsw.ef_search and query kind: `python -m bench.ef_sweep --var-dir DIR`.

Reads the albums `bench.search` loaded into a kept cluster (`--var-dir` of that run: 512-d synthetic
clustered vectors; the 1M album sits in a table of 1.33M rows) and runs the product's own candidate
statement (`search.selectors.search_candidates`, one part, k = max_results) under each ef_search,
for two kinds of query: image-like (a fresh sample near the stored images, as a stored or uploaded
photo is) and text-like (from the same cluster but noisier, as a caption is). Recall is against the
exact ranking of the whole album in NumPy. Nothing here asserts a time.

Why: a single-part query is ranked by the index's own distance, so ef_search alone decides how many
of the true nearest it finds; the product chooses ef per query kind from this table.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from bench.search import MODEL_IDS, log, setup_django
from bench.search_data import ClusteredSpace, copy_album_vectors


def _recall(got, truth, k: int) -> float:
    return len(set(map(int, got[:k])) & set(map(int, truth[:k]))) / k


def sweep(args) -> dict:
    # Django is set up by now (setup_django): the product's modules import here.
    from django.db import connection
    from albums.models import Album
    from encoders.model_ids import parse_model_id
    from search import selectors

    model_id = MODEL_IDS[args.dim]
    model = parse_model_id(model_id)
    space = ClusteredSpace.make(args.dim, n_clusters=args.clusters, seed=args.seed)
    out = {"dim": args.dim, "max_results": args.max_results, "albums": []}
    with connection.cursor() as cursor:
        cursor.execute("SHOW shared_buffers")
        out["shared_buffers"] = cursor.fetchone()[0]
    chosen = {"ef": None}
    real_ef_search = selectors.ef_search
    selectors.ef_search = lambda k: chosen["ef"] if chosen["ef"] is not None else real_ef_search(k)
    for size in args.sizes:
        album = Album.objects.get(name=f"bench-{args.dim}-{size}")
        connection.ensure_connection()
        ids, X = copy_album_vectors(connection.connection, album_id=album.pk, model_id=model_id, dim=args.dim)
        queries = space.queries(args.queries, seed=args.seed + size)
        block = {"album_rows": len(ids), "rows": []}
        for kind in ("image", "text"):
            Q = queries[kind]
            scores = X @ Q.T
            k = args.max_results
            top = np.argpartition(-scores, k, axis=0)[:k]
            truth = [ids[top[:, j][np.argsort(-scores[top[:, j], j], kind="stable")]] for j in range(len(Q))]
            del scores
            for ef in args.efs:
                chosen["ef"] = ef
                for warm in range(3):  # the graph's pages into the caches, the settings onto the session
                    selectors.search_candidates(album_id=album.pk, model=model, queries={"image": Q[warm]}, k=k)
                times, r10, rk = [], [], []
                for j in range(len(Q)):
                    started = time.perf_counter()
                    candidates = selectors.search_candidates(album_id=album.pk, model=model, queries={"image": Q[j]}, k=k)
                    times.append(time.perf_counter() - started)
                    order = np.argsort(-candidates.cosines["image"], kind="stable")
                    got = candidates.image_ids[order]
                    r10.append(_recall(got, truth[j], 10))
                    rk.append(_recall(got, truth[j], k))
                row = {"kind": kind, "ef_search": ef, "recall@10": float(np.mean(r10)), f"recall@{k}": float(np.mean(rk)),
                       "p50_ms": float(np.percentile(times, 50) * 1000), "p95_ms": float(np.percentile(times, 95) * 1000),
                       "loadavg": os.getloadavg()[0]}
                block["rows"].append(row)
                log(f"  {len(ids):>9,} {kind:<5} ef {ef:>4}: recall@10 {row['recall@10']:.4f}  recall@{k} {row[f'recall@{k}']:.4f}  "
                    f"p50 {row['p50_ms']:.2f} ms  p95 {row['p95_ms']:.2f} ms")
        out["albums"].append(block)
        del X
    chosen["ef"] = None
    return out


def render(result: dict) -> str:
    k = result["max_results"]
    lines = [f"shared_buffers {result['shared_buffers']}; max_results (k) {k}; {result['dim']}-d.", "",
             f"| album rows | query | ef_search | recall@10 | recall@{k} | p50 ms | p95 ms |", "|---|---|---|---|---|---|---|"]
    for block in result["albums"]:
        for row in block["rows"]:
            lines.append(f"| {block['album_rows']:,} | {row['kind']} | {row['ef_search']} | {row['recall@10']:.4f} | "
                         f"{row[f'recall@{k}']:.4f} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", type=Path, required=True, help="the cluster a `bench.search --var-dir` run kept")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--efs", default="64,100,200,400,800")
    parser.add_argument("--max-results", type=int, default=50)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--clusters", type=int, default=3000, help="as the bench.search run that loaded the albums")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--shared-buffers", default=None, help="set (and restart) if given")
    parser.add_argument("--without-model-graph", action="store_true",
                        help="drop the model's shared graph inside a transaction rolled back at the end, so the "
                             "albums' own graphs serve every query (which graph the planner picks is its choice)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.efs = [int(x) for x in args.efs.split(",")]
    setup_django(args.var_dir, maintenance_work_mem="6GB", shared_buffers=args.shared_buffers)
    if args.without_model_graph:
        # Django is set up only now (setup_django above): its modules import here.
        from django.db import connection, transaction
        from workers.vector_store import index_name

        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(f'DROP INDEX "{index_name(MODEL_IDS[args.dim], args.dim)}"')
            result = sweep(args)
            result["without_model_graph"] = True
            transaction.set_rollback(True)
    else:
        result = sweep(args)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
