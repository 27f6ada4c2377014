"""The map's numbers: UMAP layout, HDBSCAN clusters, placement of new points, cluster terms.

Pure NumPy in and out, no database. umap-learn and scikit-learn (requirements/worker.txt) are
imported inside the functions: only a worker running a map job loads them (and numba's compile).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from encoders.concepts import concept_index
from encoders.model_ids import parse_model_id
from encoders.registry import TEXT_EMBEDDING, get_encoder, text_search

N_NEIGHBORS = 15
# Points of one kind packed together: on Fashion-MNIST a trustworthiness of 0.969 against 0.965 for
# PhotoMapAI's 0.05, and clusters that HDBSCAN separates better (docs/benchmarks.md). The page zooms.
MIN_DIST = 0.0
# Past REDUCE_FROM images, UMAP runs on the PCA_DIMS principal components (Euclidean, which on unit
# vectors ranks as cosine does) instead of the full vectors: on Fashion-MNIST that halved the fit and
# kept the neighbours at least as well (docs/benchmarks.md). Small albums keep the exact cosine.
PCA_DIMS = 64
REDUCE_FROM = 5_000
N_EPOCHS_PLACE = 100  # what umap-learn's transform() runs on up to 10,000 points
CLUSTER_SHARE = 0.03  # the least cluster, of the album's images
PLACE_ANCHORS = 20_000  # fitted points new ones are placed against (a stable sample past this)
VOCABULARY = Path(__file__).resolve().parent.parent / "encoders" / "data" / "map_vocabulary.txt"


@dataclass(frozen=True)
class Layout:
    xy: np.ndarray  # (n, 2) float32 in [-1, 1]²
    params: dict  # what placement needs: UMAP's curve (a, b), neighbours, and the scaling to the box


def _scale_into_box(xy: np.ndarray) -> tuple[np.ndarray, list[float], float]:
    """Centre on the bounding box and scale both axes by one factor (the aspect kept) into [-1, 1]²."""
    low, high = xy.min(axis=0), xy.max(axis=0)
    centre = (low + high) / 2
    half = float(max((high - low).max() / 2, 1e-9))
    return ((xy - centre) / half).astype(np.float32), centre.astype(float).tolist(), half


def fit(vectors: np.ndarray, *, n_neighbors: int = N_NEIGHBORS, min_dist: float = MIN_DIST,
        random_state: int | None = None, reduce_from: int = REDUCE_FROM) -> Layout:
    """UMAP to 2-D with cosine distance (on the principal components past `reduce_from` images).
    Tiny albums (under 4 images) are laid out on a line: UMAP needs neighbours to work with."""
    n = len(vectors)
    if n < 4:
        xy = np.zeros((n, 2), dtype=np.float32)
        xy[:, 0] = np.linspace(-1, 1, n) if n > 1 else 0
        return Layout(xy=xy, params={"n_neighbors": 1, "min_dist": min_dist, "a": 1.0, "b": 1.0,
                                     "centre": [0.0, 0.0], "half": 1.0})
    import umap  # worker tier only: umap-learn and numba are not installed for the web tier

    metric, data, reduced = "cosine", vectors, None
    if n >= reduce_from and vectors.shape[1] > PCA_DIMS:
        from sklearn.decomposition import PCA  # worker tier only, as above

        data = PCA(n_components=PCA_DIMS, svd_solver="randomized", random_state=0).fit_transform(vectors)
        metric, reduced = "euclidean", PCA_DIMS
    neighbours = max(2, min(n_neighbors, n - 1))
    reducer = umap.UMAP(n_components=2, n_neighbors=neighbours, min_dist=min_dist, metric=metric,
                        init="spectral" if n > neighbours + 2 else "random", random_state=random_state,
                        low_memory=True, transform_mode="embedding")
    raw = reducer.fit_transform(data)
    xy, centre, half = _scale_into_box(raw)
    return Layout(xy=xy, params={"n_neighbors": neighbours, "min_dist": min_dist, "a": float(reducer._a),
                                 "b": float(reducer._b), "centre": centre, "half": half, "pca_dims": reduced})


def cluster(xy: np.ndarray, *, min_cluster_size: int | None = None) -> np.ndarray:
    """HDBSCAN on the 2-D layout, then each point HDBSCAN left as noise joins the cluster most of its
    5 nearest clustered points are in, as a placed image does: cluster ids, -1 only where nothing
    clustered. Leaf clusters of at least 3 % of the album (5 images or more). Each choice measured on
    Fashion-MNIST (docs/benchmarks.md): on the layout rather than the vectors (as good or better, in
    milliseconds where the vectors took seconds at 2,000 images); leaf rather than the default
    "excess of mass" selection, which merged the map into 2 to 5 blobs; noise joined to its
    neighbours' cluster, which is what lifted the match with the classes past k-means with k = 10."""
    n = len(xy)
    if n < 5:
        return np.full(n, -1, dtype=np.int64)
    from sklearn.cluster import HDBSCAN  # worker tier only: scikit-learn is not installed for the web tier

    size = min(n, min_cluster_size or max(5, round(n * CLUSTER_SHARE)))
    labels = HDBSCAN(min_cluster_size=size, min_samples=min(size, 10), cluster_selection_method="leaf",
                     copy=True).fit_predict(xy).astype(np.int64)
    noise = labels < 0
    if noise.any() and not noise.all():
        labels[noise] = nearest_clusters(xy[noise], anchor_xy=xy[~noise], anchor_clusters=labels[~noise])
    return labels


def nearest_neighbours(queries: np.ndarray, points: np.ndarray, k: int, *, block: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine kNN of unit vectors by blocks of matrix products: (indices, distances), nearest first."""
    k = min(k, len(points))
    indices = np.empty((len(queries), k), dtype=np.int64)
    distances = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), block):
        sims = queries[start:start + block] @ points.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        part_sims = np.take_along_axis(sims, part, axis=1)
        order = np.argsort(-part_sims, axis=1, kind="stable")
        indices[start:start + block] = np.take_along_axis(part, order, axis=1)
        distances[start:start + block] = np.clip(1 - np.take_along_axis(part_sims, order, axis=1), 0, 2)
    return indices, distances


def place(vectors: np.ndarray, *, anchor_vectors: np.ndarray, anchor_xy: np.ndarray, params: dict,
          random_state: int = 0) -> np.ndarray:
    """New points placed against the fitted ones, the way umap-learn's `UMAP.transform` does, with its
    own functions: the fitted neighbours' fuzzy memberships, the weighted mean of their places as the
    start, then a short optimisation that moves only the new points. The fitted reducer is not kept
    (its bulk is a copy of the vectors): the fitted points' vectors and places stand for it. Into
    [-1, 1]² like the fit; a point past the box is clamped to it."""
    if len(anchor_vectors) > PLACE_ANCHORS:
        keep = np.random.default_rng(0).choice(len(anchor_vectors), PLACE_ANCHORS, replace=False)
        anchor_vectors, anchor_xy = anchor_vectors[keep], anchor_xy[keep]
    k = max(1, min(int(params.get("n_neighbors", N_NEIGHBORS)), len(anchor_vectors)))
    indices, distances = nearest_neighbours(vectors, anchor_vectors, k)
    if k < 2:
        return np.clip(anchor_xy[indices[:, 0]], -1, 1).astype(np.float32)
    # worker tier only: umap-learn's own transform steps, on the stored fit
    import scipy.sparse
    from umap.umap_ import (
        compute_membership_strengths,
        init_graph_transform,
        make_epochs_per_sample,
        optimize_layout_euclidean,
        smooth_knn_dist,
    )

    sigmas, rhos = smooth_knn_dist(distances, float(k), local_connectivity=1.0)
    rows, cols, vals, _ = compute_membership_strengths(indices, distances, sigmas, rhos)
    graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(vectors), len(anchor_vectors))).tocsr()
    # umap's own coordinates were scaled into the box; placement runs in the fit's units, then scales back.
    centre, half = np.asarray(params["centre"], dtype=np.float32), float(params["half"])
    tail = (anchor_xy.astype(np.float32) * half + centre).astype(np.float32)
    head = init_graph_transform(graph, tail).astype(np.float32)
    graph = graph.tocoo()
    graph.data[graph.data < graph.data.max() / float(N_EPOCHS_PLACE)] = 0
    graph.eliminate_zeros()
    epochs_per_sample = make_epochs_per_sample(graph.data, N_EPOCHS_PLACE)
    rng_state = np.random.RandomState(random_state).randint(np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max - 1,
                                                             3).astype(np.int64)
    head = optimize_layout_euclidean(
        head, tail, graph.row, graph.col, N_EPOCHS_PLACE, graph.shape[1], epochs_per_sample,
        float(params["a"]), float(params["b"]), rng_state, move_other=False)
    return np.clip((head - centre) / half, -1, 1).astype(np.float32)


def nearest_clusters(xy: np.ndarray, *, anchor_xy: np.ndarray, anchor_clusters: np.ndarray, k: int = 5) -> np.ndarray:
    """A placed point joins the cluster most of its k nearest fitted points on the map are in."""
    from scipy.spatial import cKDTree  # worker tier only (scipy comes with scikit-learn)

    k = min(k, len(anchor_xy))
    _, near = cKDTree(anchor_xy).query(xy, k=k)
    near = near.reshape(len(xy), k)
    out = np.empty(len(xy), dtype=np.int64)
    for i, row in enumerate(anchor_clusters[near]):
        values, counts = np.unique(row, return_counts=True)
        out[i] = values[np.argmax(counts)]
    return out


def concept_terms(means: np.ndarray, *, top: int) -> list[list[str]]:
    """Each cluster's dominant ImageNet concepts: the classes of highest mean probability."""
    names = concept_index().class_names
    return [[_short(names[c]) for c in np.argsort(-row, kind="stable")[:top]] for row in means]


def _short(class_name: str) -> str:
    return class_name.split(",")[0].strip()


@functools.cache
def vocabulary() -> tuple[str, ...]:
    words = [line.strip() for line in VOCABULARY.read_text().splitlines()]
    return tuple(w for w in words if w and not w.startswith("#"))


def vocabulary_terms(*, model_id: str, means: np.ndarray, top: int) -> list[list[str]] | None:
    """With a text encoder, each cluster's best-matching words of the bundled vocabulary: its mean
    vector against the encoded prompts. None for an image-only encoder."""
    model = parse_model_id(model_id)
    if text_search(model.spec) != TEXT_EMBEDDING:
        return None
    words = vocabulary()
    texts = get_encoder(model.spec).encode_texts([f"a photo of {w}" for w in words])
    means = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    scores = means @ np.asarray(texts, dtype=np.float32).T
    return [[words[j] for j in np.argsort(-row, kind="stable")[:top]] for row in scores]
