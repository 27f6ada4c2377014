"""The semantic map: `python -m bench.map [--fashion N] [--sizes 10000,100000] [--no-service] [--no-doc]`.

Two parts, each figure with the conditions it was measured under:

- **The layout's quality and cost, in this process** (the product's own functions,
  `workers/map_layout.py`: `fit`, `cluster`, `place`):
  - Fashion-MNIST (Debian's `dataset-fashion-mnist`, N test images, 10 true classes) embedded by the
    real EfficientNet-Lite0 through the product's encoder registry, as bench/quality.py does.
    Trustworthiness (`sklearn.manifold.trustworthiness`, 10 neighbours, cosine) and kNN recall@10 of
    the 2-D layout against the vectors; adjusted Rand index of the clusters against the true classes:
    HDBSCAN on the layout (what the product does), HDBSCAN on the vectors, k-means with k = 10 on the
    vectors (the baseline), and PhotoMapAI's DBSCAN on its own layout. Placement: fitted on 90 %, the
    other 10 % placed without a refit (`place`), measured the same way.
  - Synthetic clustered unit vectors (1,280-d, bench/search_data.py's space, 100 clusters) at each
    size: fit time and peak memory (a child process per fit: its own peak RSS), placement of 1,000
    new vectors, trustworthiness on a 3,000-point sample.
  - PhotoMapAI side by side: `photomapai` 1.3.2 is on PyPI, but its package imports colorama, dash,
    fastapi, … that this environment does not carry (and nothing is installed for a benchmark), so its
    `create_umap_index` is reproduced with the parameters read from its source
    (`photomap/backend/embeddings.py`: `UMAP(n_neighbors=min(15, n-1), n_components=2, min_dist=0.05,
    metric="cosine")`, no random_state) and its clusters with its `adaptive_cluster_eps` rule
    (`photomap/backend/cluster_eps.py`: DBSCAN, min_samples 10, eps the largest k-distance quantile of
    40..90 whose biggest cluster stays under 25 % of the album). Labelled as such.
- **Through the service** (bench/stack.py: its own PostgreSQL, Redis, gunicorn, one Celery worker on
  `default`), per size: synthetic vectors inserted through the product's insert path under the real
  EfficientNet-Lite0 model_id, `POST …/map/rebuild/`, the job's own start-to-finish time and the worker's
  peak RSS; then twice 1,000 more vectors and the call an index job's finish makes
  (`map_refresh_after_index`), which queues the placement job: its time; then `GET …/map/` (time to the
  last byte, bytes, best of 3).

Results are printed and written between the map markers of docs/benchmarks.md (unless --no-doc).
Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import multiprocessing
import os
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sklearn.cluster import DBSCAN, HDBSCAN, KMeans
from sklearn.manifold import trustworthiness
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import NearestNeighbors
from umap import UMAP

from bench.doc_sections import replace_marked_section
from bench.indexing import machine_description
from bench.quality import DATASET_DIR, ENCODER_SPEC, _source_state, direct_global, draw_per_class, load_split
from bench.search_data import ClusteredSpace
from bench.stack import Stack, process_rss_mb
from encoders.registry import get_encoder
from workers import map_layout

REPO = Path(__file__).resolve().parent.parent
DOC_PATH = REPO / "docs" / "benchmarks.md"
HEADING = "## Semantic map"
START, END = "<!-- map:start -->", "<!-- map:end -->"
DIM = 1280
SYNTHETIC_CLUSTERS = 100
SAMPLE = 3000  # trustworthiness is all-pairs: measured on a sample of the points


def _progress(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def _django(models_env: dict | None = None) -> None:
    """Settings for the encoder and the layout functions only: nothing here connects to a database."""
    os.environ.update({"DJANGO_SETTINGS_MODULE": "config.settings.local", "DATABASE_URL": "postgres://unused@127.0.0.1:1/x",
                       "REDIS_URL": "redis://127.0.0.1:1/0", "LOUPE_DEVICE": "cpu", **(models_env or {})})
    import django  # after the environment above: Django reads it on setup

    django.setup()


# --- PhotoMapAI, reproduced from its source (see the module docstring) ----------------------------------


def photomap_layout(vectors: np.ndarray) -> np.ndarray:
    n_neighbors = min(15, len(vectors) - 1) if len(vectors) > 1 else 1
    return UMAP(n_neighbors=n_neighbors, n_components=2, min_dist=0.05, metric="cosine").fit_transform(vectors)


def photomap_clusters(coords: np.ndarray, min_samples: int = 10) -> np.ndarray:

    k = min(min_samples, len(coords) - 1)
    distances = NearestNeighbors(n_neighbors=k + 1).fit(coords).kneighbors(coords)[0][:, -1]
    candidates = [e for e in (float(np.percentile(distances, q)) for q in (40, 50, 60, 70, 80, 90)) if e > 0]
    best = candidates[0] if candidates else 0.2
    for eps in candidates:
        labels = DBSCAN(eps=eps, min_samples=min_samples).fit(coords).labels_
        clustered = labels[labels != -1]
        if clustered.size and np.bincount(clustered).max() / labels.size > 0.25:
            break
        best = eps
    return DBSCAN(eps=best, min_samples=min_samples).fit(coords).labels_


# --- measures ---------------------------------------------------------------------------------------------


def trust(vectors: np.ndarray, xy: np.ndarray, *, seed: int = 0) -> float:

    if len(vectors) > SAMPLE:
        keep = np.random.default_rng(seed).choice(len(vectors), SAMPLE, replace=False)
        vectors, xy = vectors[keep], xy[keep]
    return round(float(trustworthiness(vectors, xy, n_neighbors=10, metric="cosine")), 4)


def knn_recall(vectors: np.ndarray, xy: np.ndarray, k: int = 10, *, seed: int = 0) -> float:
    """Of each point's 10 nearest neighbours by cosine, the share that are among its 10 nearest on the map."""
    rows = np.random.default_rng(seed).choice(len(vectors), min(SAMPLE, len(vectors)), replace=False)
    hits = 0
    for start in range(0, len(rows), 500):
        part = rows[start:start + 500]
        sims = vectors[part] @ vectors.T
        sims[np.arange(len(part)), part] = -np.inf
        true = np.argpartition(-sims, k, axis=1)[:, :k]
        dist = ((xy[part, None, :] - xy[None, :, :]) ** 2).sum(-1)
        dist[np.arange(len(part)), part] = np.inf
        near = np.argpartition(dist, k, axis=1)[:, :k]
        hits += sum(len(set(a) & set(b)) for a, b in zip(true.tolist(), near.tolist()))
    return round(hits / (len(rows) * k), 4)


def ari(truth: np.ndarray, found: np.ndarray) -> float:

    return round(float(adjusted_rand_score(truth, found)), 4)


def _timed(fn, *args, **kwargs):
    started = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - started, 2)


# --- Fashion-MNIST -----------------------------------------------------------------------------------------


def fashion(n: int) -> dict:
    _django()
    import torch  # the encoder's threads: both cores for this process

    torch.set_num_threads(2)

    samples = draw_per_class(load_split(DATASET_DIR, "t10k"), "t10k", per_class=n // 10, rng=np.random.default_rng(0))
    truth = np.array([s.label for s in samples])
    _progress(f"fashion: embedding {len(samples)} images with {ENCODER_SPEC}")
    vectors, embed_s = _timed(lambda: direct_global(get_encoder(ENCODER_SPEC), samples).astype(np.float32))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    out: dict = {"images": len(samples), "embed_s": embed_s}
    warm = map_layout.fit(vectors[:200])  # numba's compile, once, outside the timings
    map_layout.place(vectors[200:250], anchor_vectors=vectors[:200], anchor_xy=warm.xy, params=warm.params)
    _progress("fashion: Loupe fit")
    layout, out["loupe_fit_s"] = _timed(map_layout.fit, vectors)
    clusters, out["loupe_cluster_s"] = _timed(map_layout.cluster, layout.xy)
    on_vectors, out["hdbscan_vectors_s"] = _timed(map_layout.cluster, vectors)  # the same settings, on the vectors
    size = max(5, round(len(vectors) * map_layout.CLUSTER_SHARE))
    eom = HDBSCAN(min_cluster_size=size, min_samples=min(size, 10), copy=True).fit_predict(layout.xy)
    leaf = HDBSCAN(min_cluster_size=size, min_samples=min(size, 10), cluster_selection_method="leaf",
                   copy=True).fit_predict(layout.xy)
    reduced, out["loupe_pca_fit_s"] = _timed(map_layout.fit, vectors, reduce_from=0)
    reduced_clusters = map_layout.cluster(reduced.xy)
    kmeans = KMeans(n_clusters=10, n_init=10, random_state=0).fit_predict(vectors)
    # What keeping the fitted reducer would cost: umap-learn's UMAP with the product's parameters, pickled.
    reducer = UMAP(n_components=2, n_neighbors=map_layout.N_NEIGHBORS, min_dist=map_layout.MIN_DIST,
                   metric="cosine").fit(vectors)
    out["reducer_pickle_mb"] = round(len(pickle.dumps(reducer)) / 2**20, 1)
    out["vectors_mb"] = round(vectors.nbytes / 2**20, 1)
    _progress("fashion: PhotoMapAI's parameters")
    pm_xy, out["photomap_fit_s"] = _timed(photomap_layout, vectors)
    pm_clusters = photomap_clusters(pm_xy)
    out.update({
        "loupe_trust": trust(vectors, layout.xy), "photomap_trust": trust(vectors, pm_xy),
        "loupe_knn_recall": knn_recall(vectors, layout.xy), "photomap_knn_recall": knn_recall(vectors, pm_xy),
        "ari_hdbscan_layout": ari(truth, clusters), "ari_hdbscan_vectors": ari(truth, on_vectors),
        "ari_kmeans10_vectors": ari(truth, kmeans), "ari_hdbscan_layout_eom": ari(truth, eom),
        "ari_hdbscan_layout_leaf_noise": ari(truth, leaf), "noise_layout_leaf": round(float((leaf < 0).mean()), 3),
        "clusters_layout_leaf": int(leaf.max() + 1), "loupe_pca_trust": trust(vectors, reduced.xy),
        "loupe_pca_knn_recall": knn_recall(vectors, reduced.xy), "ari_pca": ari(truth, reduced_clusters),
        "clusters_pca": int(reduced_clusters.max() + 1),
        "clusters_layout_eom": int(eom.max() + 1), "noise_layout_eom": round(float((eom < 0).mean()), 3), "ari_photomap_dbscan": ari(truth, pm_clusters),
        "clusters_layout": int(clusters.max() + 1), "noise_layout": round(float((clusters < 0).mean()), 3),
        "clusters_vectors": int(on_vectors.max() + 1), "noise_vectors": round(float((on_vectors < 0).mean()), 3),
        "clusters_photomap": int(pm_clusters.max() + 1), "noise_photomap": round(float((pm_clusters < 0).mean()), 3),
    })
    _progress("fashion: fit on 90 %, place 10 %")
    order = np.random.default_rng(1).permutation(len(vectors))
    fitted, new = order[: len(order) * 9 // 10], order[len(order) * 9 // 10:]
    part = map_layout.fit(vectors[fitted])
    placed, place_s = _timed(map_layout.place, vectors[new], anchor_vectors=vectors[fitted], anchor_xy=part.xy,
                             params=part.params)
    combined = np.empty((len(vectors), 2), dtype=np.float32)
    combined[fitted], combined[new] = part.xy, placed
    part_clusters = map_layout.cluster(part.xy)
    new_clusters = map_layout.nearest_clusters(placed, anchor_xy=part.xy, anchor_clusters=part_clusters)
    all_clusters = np.empty(len(vectors), dtype=np.int64)
    all_clusters[fitted], all_clusters[new] = part_clusters, new_clusters
    out.update({"placed": len(new), "place_s": place_s, "placed_trust": trust(vectors, combined),
                "placed_knn_recall": knn_recall(vectors, combined), "placed_ari": ari(truth, all_clusters),
                "placed_points_knn_recall": _placed_recall(vectors, combined, new)})
    return out


def _placed_recall(vectors: np.ndarray, xy: np.ndarray, rows: np.ndarray, k: int = 10) -> float:
    """kNN recall@10 of the placed points alone (their neighbours among all points)."""
    sims = vectors[rows] @ vectors.T
    sims[np.arange(len(rows)), rows] = -np.inf
    true = np.argpartition(-sims, k, axis=1)[:, :k]
    dist = ((xy[rows, None, :] - xy[None, :, :]) ** 2).sum(-1)
    dist[np.arange(len(rows)), rows] = np.inf
    near = np.argpartition(dist, k, axis=1)[:, :k]
    return round(sum(len(set(a) & set(b)) for a, b in zip(true.tolist(), near.tolist())) / (len(rows) * k), 4)


# --- synthetic, one child process per fit (its own peak memory) ---------------------------------------------


def _synthetic(n: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    space = ClusteredSpace.make(DIM, n_clusters=SYNTHETIC_CLUSTERS, seed=seed)
    return space.sample(n, np.random.default_rng([seed, n]))


def _child_fit(which: str, n: int, queue) -> None:
    _django()

    vectors, _ = _synthetic(n + 1000)
    fitted, new = vectors[:n], vectors[n:]
    map_layout.fit(vectors[:200])  # compile outside the timing (the worker pays it once per process)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if which == "loupe":
        layout, fit_s = _timed(map_layout.fit, fitted)
        xy = layout.xy
        _, cluster_s = _timed(map_layout.cluster, xy)
        map_layout.place(new[:50], anchor_vectors=fitted, anchor_xy=xy, params=layout.params)  # compile
        _, place_s = _timed(map_layout.place, new, anchor_vectors=fitted, anchor_xy=xy, params=layout.params)
    else:
        xy, fit_s = _timed(photomap_layout, fitted)
        _, cluster_s = _timed(photomap_clusters, xy)
        place_s = None  # PhotoMapAI refits the whole album on every index
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"fit_s": fit_s, "cluster_s": cluster_s, "place_1000_s": place_s,
               "peak_rss_mb": round(peak / 1024), "fit_rss_growth_mb": round((peak - before) / 1024),
               "trust": trust(fitted, np.asarray(xy)), "knn_recall": knn_recall(fitted, np.asarray(xy))})


def synthetic(n: int, which: str) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_child_fit, args=(which, n, queue))
    child.start()
    result = queue.get()
    child.join()
    return result


# --- through the service ----------------------------------------------------------------------------------

LOADER = """
import json, numpy as np
from django.contrib.auth import get_user_model
from albums import services
from albums.models import Album, Image
from bench.map import _synthetic
from encoders.pooled_encoder import PooledEncoder
from encoders.registry import get_encoder
from workers.vector_store import embeddings_insert

N, EXTRA, NAME = {n}, {extra}, {name!r}
user = get_user_model().objects.get(username="bench")
album = Album.objects.filter(name=NAME).first() or services.album_create(owner=user, name=NAME,
                                                                          encoder_spec="dense:efficientnet-lite0")
model_id = PooledEncoder(get_encoder(album.encoder_spec)).model_id
vectors, _ = _synthetic(N + 2 * EXTRA)
start = Image.objects.filter(album=album).count()
count = N if start == 0 else EXTRA
images = Image.objects.bulk_create(
    # A thumbnail name, so that the recovery sweep does not re-queue metadata for files that were never there.
    Image(album=album, file=f"bench/{{i}}.jpg", original_name=f"photo-{{i}}.jpg", sha256=f"{{album.pk:08d}}{{i:056d}}",
          bytes=1, mime="image/jpeg", width=1600, height=1200, status="indexed", thumbnail=f"bench/{{i}}.webp")
    for i in range(start, start + count))
ids = [image.pk for image in images]
rows = vectors[start:start + count]
for at in range(0, len(ids), 2000):
    embeddings_insert(model_id=model_id, image_ids=ids[at:at + 2000], vectors=rows[at:at + 2000])
Album.objects.filter(pk=album.pk).update(active_model_id=model_id)
print("LOADED " + json.dumps({{"album": album.pk, "added": len(ids)}}))
"""


def _load(stack, *, n: int, extra: int, name: str) -> dict:
    out = stack.manage("shell", "-c", LOADER.format(n=n, extra=extra, name=name), timeout=1800)
    return json.loads(out.split("LOADED ", 1)[1].splitlines()[0])


def _wait_job(stack, client, job_id: int, *, pid: int, timeout: float) -> tuple[dict, float]:
    peak, deadline = 0.0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        peak = max(peak, process_rss_mb(pid))
        job = client.get(f"/api/v1/jobs/{job_id}/").json()
        if job["status"] not in ("queued", "running"):
            return job, peak
        time.sleep(0.5)
    raise TimeoutError(f"map job {job_id} did not finish in {timeout:.0f} s")


def _seconds(job: dict) -> float:
    parse = datetime.datetime.fromisoformat
    return round((parse(job["finished_at"]) - parse(job["started_at"])).total_seconds(), 1)


def service(sizes: list[int], workdir: Path) -> list[dict]:
    rows = []
    with Stack.started(workdir) as stack:
        stack.start_worker("map", queues="default,encode", concurrency=1)
        pid = stack.worker_pid("map")
        with stack.client(timeout=600) as client:
            for n in sizes:
                name = f"map-{n}"
                _progress(f"service: loading {n} vectors")
                album = _load(stack, n=n, extra=1000, name=name)["album"]
                idle = process_rss_mb(pid)
                started = client.post(f"/api/v1/albums/{album}/map/rebuild/")
                started.raise_for_status()
                _progress(f"service: fitting {n}")
                job, peak = _wait_job(stack, client, started.json()["job"]["id"], pid=pid, timeout=3600)
                row = {"images": n, "fit_status": job["status"], "fit_job_s": _seconds(job), "fit_message": job["message"],
                       "worker_rss_idle_mb": round(idle), "worker_rss_peak_mb": round(peak)}
                seen = {job["id"]}
                for round_ in ("cold", "warm"):  # the first placement in a worker process compiles numba's part
                    _load(stack, n=n, extra=1000, name=name)
                    # What an index job's finish calls (workers/indexing.py: _follow_up). Not the index job
                    # itself: at 100,000 images its HNSW graphs took the box 15 minutes, none of it the map's.
                    stack.manage("shell", "-c", f"from workers.maps import map_refresh_after_index as r; r(album_id={album})")

                    def placement():
                        jobs = client.get(f"/api/v1/albums/{album}/jobs/").json()["results"]
                        return next((j for j in jobs if j["kind"] == "map" and j["id"] not in seen), None)

                    deadline = time.monotonic() + 600
                    while (placed := placement()) is None and time.monotonic() < deadline:
                        time.sleep(0.5)
                    placed, _ = _wait_job(stack, client, placed["id"], pid=pid, timeout=600)
                    seen.add(placed["id"])
                    row.update({f"place_{round_}_status": placed["status"], f"place_{round_}_job_s": _seconds(placed),
                                f"place_{round_}_message": placed["message"]})
                best, size = float("inf"), 0
                for _ in range(3):
                    t = time.perf_counter()
                    response = client.get(f"/api/v1/albums/{album}/map/")
                    body = response.content
                    best = min(best, time.perf_counter() - t)
                    size = len(body)
                gzipped = len(__import__("gzip").compress(body, 6))
                got = response.json()
                row.update({"get_ms": round(best * 1000), "get_bytes": size, "get_gzip_bytes": gzipped,
                            "get_points": got["count"], "get_unplaced": got["unplaced"]})
                rows.append(row)
                _progress(f"service: {row}")
    return rows


# --- report -----------------------------------------------------------------------------------------------


def render(results: dict) -> str:
    lines = [f"Measured {results['date']} on {results['machine']} (load average before: {results['load']}), "
             f"{results['source']}. `python -m bench.map {results['argv']}`. Times are wall-clock on a box shared "
             "with other work: noisy, read them as orders of magnitude.", ""]
    f = results.get("fashion")
    if f:
        lines += [
            f"**Fashion-MNIST** ({f['images']:,} test images, real EfficientNet-Lite0 vectors, 10 classes), in one process:",
            "",
            "| | layout fit | trustworthiness@10 | kNN recall@10 | clusters (noise) | ARI vs classes |",
            "|---|---|---|---|---|---|",
            f"| Loupe: UMAP (cosine, min_dist 0) + HDBSCAN (leaf, 3 %) on the layout, noise to its neighbours' cluster | {f['loupe_fit_s']} s | {f['loupe_trust']} | "
            f"{f['loupe_knn_recall']} | {f['clusters_layout']} ({f['noise_layout']:.0%}) | {f['ari_hdbscan_layout']} |",
            f"| Loupe past 5,000 images: UMAP on 64 principal components | {f['loupe_pca_fit_s']} s | "
            f"{f['loupe_pca_trust']} | {f['loupe_pca_knn_recall']} | {f['clusters_pca']} (0%) | {f['ari_pca']} |",
            f"| the same layout, HDBSCAN's noise left as noise | — | — | — | {f['clusters_layout_leaf']} "
            f"({f['noise_layout_leaf']:.0%}) | {f['ari_hdbscan_layout_leaf_noise']} |",
            f"| the same layout, HDBSCAN's default (excess of mass) selection | — | — | — | {f['clusters_layout_eom']} "
            f"({f['noise_layout_eom']:.0%}) | {f['ari_hdbscan_layout_eom']} |",
            f"| HDBSCAN (same settings) on the vectors instead | — | — | — | {f['clusters_vectors']} ({f['noise_vectors']:.0%}) | "
            f"{f['ari_hdbscan_vectors']} ({f['hdbscan_vectors_s']} s) |",
            f"| baseline: k-means, k = 10, on the vectors | — | — | — | 10 (0%) | {f['ari_kmeans10_vectors']} |",
            f"| PhotoMapAI 1.3.2's parameters (reproduced, see bench/map.py) | {f['photomap_fit_s']} s | "
            f"{f['photomap_trust']} | {f['photomap_knn_recall']} | {f['clusters_photomap']} ({f['noise_photomap']:.0%}) "
            f"| {f['ari_photomap_dbscan']} |",
            "",
            f"A fitted umap-learn reducer for these {f['images']:,} images pickles to {f['reducer_pickle_mb']} MB, "
            f"the vectors being {f['vectors_mb']} MB of it (it keeps them, and a search index over them, for "
            "`transform()`): the map stores no reducer and places new images against the fitted points and the "
            "vectors PostgreSQL already holds.",
            "",
            f"Placement without a refit: fitted on 90 %, the other {f['placed']} placed in {f['place_s']} s; the "
            f"whole layout then has trustworthiness {f['placed_trust']}, kNN recall {f['placed_knn_recall']} "
            f"(the placed points alone: {f['placed_points_knn_recall']}), ARI {f['placed_ari']}.",
            "",
        ]
    synth = results.get("synthetic") or {}
    if synth:
        lines += ["**Synthetic clustered vectors** (1,280-d, 100 clusters), one child process per fit "
                  "(numba compiled before the timing; trustworthiness and recall on a 3,000-point sample; peak RSS is the "
                  "process's high-water mark, which the imports and numba's compile had set before the fit):", "",
                  "| images | who | fit | clusters | place 1,000 | peak RSS (growth in the fit) | trustworthiness@10 | kNN recall@10 |",
                  "|---|---|---|---|---|---|---|---|"]
        for n, by in synth.items():
            for who, r in by.items():
                place = f"{r['place_1000_s']} s" if r["place_1000_s"] is not None else "— (refits)"
                lines.append(f"| {int(n):,} | {who} | {r['fit_s']} s | {r['cluster_s']} s | {place} | "
                             f"{r['peak_rss_mb']} MB ({r['fit_rss_growth_mb']} MB) | {r['trust']} | {r['knn_recall']} |")
        lines.append("")
    svc = results.get("service") or []
    if svc:
        lines += ["**Through the service** (one Celery worker on `default`, threads, concurrency 1; vectors inserted "
                  "through the product's insert path). A map job's time is its own start to finish, and the fit's "
                  "includes numba's compile in the fresh worker process; umap-learn runs 500 epochs up to 10,000 "
                  "images and 200 past (and the load average differed between runs: see above):", "",
                  "| images | map job (fit) | worker RSS idle → peak | placement job, 1,000 new: first in the process, "
                  "then again | GET map/ | body (gzip) |",
                  "|---|---|---|---|---|---|"]
        for r in svc:
            lines.append(f"| {r['images']:,} | {r['fit_job_s']} s ({r['fit_status']}) | {r['worker_rss_idle_mb']} → "
                         f"{r['worker_rss_peak_mb']} MB | {r['place_cold_job_s']} s, {r['place_warm_job_s']} s "
                         f"({r['place_cold_message']} / {r['place_warm_message']}) | "
                         f"{r['get_ms']} ms | {r['get_bytes'] / 1e6:.1f} MB ({r['get_gzip_bytes'] / 1e6:.1f} MB) |")
        lines.append("")
    return "\n".join(lines)


def _merged(earlier: dict, now: dict) -> dict:
    """`now` with what `earlier` measured and `now` did not; where both measured a size, `now`'s."""
    out = dict(now)
    out["fashion"] = now.get("fashion") or earlier.get("fashion")
    out["synthetic"] = {**earlier.get("synthetic", {}), **now.get("synthetic", {})}
    sizes = {row["images"] for row in now.get("service", [])}
    out["service"] = [row for row in earlier.get("service", []) if row["images"] not in sizes] + now.get("service", [])
    if not (now.get("fashion") or now.get("synthetic") or now.get("service")):  # a render of earlier runs only
        return {**out, **{key: earlier[key] for key in ("date", "machine", "argv", "load", "source")}}
    for key, joiner in (("argv", "`, then `python -m bench.map "), ("load", "; then "), ("source", "; then ")):
        if earlier.get(key) and earlier[key] not in now[key]:
            out[key] = f"{earlier[key]}{joiner}{now[key]}"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fashion", type=int, default=2000, help="Fashion-MNIST test images (0: skip)")
    parser.add_argument("--sizes", default="10000", help="synthetic album sizes, comma-separated")
    parser.add_argument("--no-photomap", action="store_true", help="skip PhotoMapAI's fits on synthetic vectors")
    parser.add_argument("--no-service", action="store_true")
    parser.add_argument("--no-direct", action="store_true", help="skip the in-process synthetic fits")
    parser.add_argument("--merge", type=Path, nargs="+",
                        help="--json files of earlier runs: the parts this run did not measure are kept from them")
    parser.add_argument("--no-doc", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise
    sizes = [int(s) for s in args.sizes.split(",") if s]
    results: dict = {"date": datetime.date.today().isoformat(), "machine": machine_description(),
                     "load": ", ".join(f"{x:.2f}" for x in os.getloadavg()), "source": _source_state(),
                     "argv": " ".join(argv if argv is not None else sys.argv[1:])}
    if args.fashion:
        results["fashion"] = fashion(args.fashion)
        _progress(json.dumps(results["fashion"]))
    results["synthetic"] = {}
    results["service"] = []
    for n in ([] if args.no_direct else sizes):
        results["synthetic"][n] = {"Loupe": synthetic(n, "loupe")}
        _progress(f"synthetic {n} Loupe: {results['synthetic'][n]['Loupe']}")
        if not args.no_photomap:
            results["synthetic"][n]["PhotoMapAI's parameters"] = synthetic(n, "photomap")
            _progress(f"synthetic {n} PhotoMapAI: {results['synthetic'][n]}")
    if not args.no_service and sizes:
        with tempfile.TemporaryDirectory(prefix="loupe-map-bench-") as workdir:
            results["service"] = service(sizes, Path(workdir))
    for earlier_path in args.merge or ():
        results = _merged(json.loads(earlier_path.read_text()), results)
    text = render(results)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    if not args.no_doc:
        replace_marked_section(DOC_PATH, start=START, end=END, heading=HEADING, body=text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
