"""Per-class patch matching: every query patch against every support patch of the set, exactly.

Returns:

- per class and query patch, the best cosine with any of the class's support patches — what the
  class score averages (search/rag/scoring.py);
- per class, the k support patches with the highest cosine to any query patch, each with the query
  patch it matched — the evidence shown and sent to a vision-language model.

The vectors live in PostgreSQL (pgvector); the all-pairs product runs in NumPy on a per-process
copy of the set's support matrix. The first version ran it as one SQL statement: at 20 shots ×
10 classes (9,800 patches of 1,280 dims against 49 query patches) that took 3.8 s (p50), most of it
fetching each vector from TOAST again per pair and sorting 480k pair rows; the held matrix answers in
51 ms, 0.6 s when it must be fetched first (bench/rag_retrieval.py, docs/benchmarks.md). Patch rows are immutable
(re-patching deletes and inserts), so the copy stays right as long as its patch ids are those the
database lists now; that list is read on every call, and only vectors not yet held are fetched.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection

from search.rag.models import PatchEmbedding

# vector_send is pgvector's binary output: int16 dim, int16 unused, then dim big-endian float4s.
_IDS_SQL = """
SELECT p.id, p.support_class_id
FROM rag_patchembedding p JOIN rag_supportimage si ON si.id = p.support_image_id
WHERE si.support_set_id = %s AND si.status = 'ready' AND p.model_key = %s
ORDER BY p.id
"""
_VECTORS_SQL = "SELECT id, vector_send(vector) FROM rag_patchembedding WHERE id = ANY(%s) ORDER BY id"


@dataclass(frozen=True)
class SupportMatrix:
    ids: np.ndarray  # (n,) int64, ascending
    vectors: np.ndarray  # (n, dim) float32, unit rows

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.vectors.nbytes


class _MatrixCache:
    """LRU of support matrices by (set, model key), bounded in bytes (LOUPE_RAG_CACHE_MB)."""

    def __init__(self):
        self._items: OrderedDict[tuple[int, str], SupportMatrix] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key) -> SupportMatrix | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
            return item

    def put(self, key, item: SupportMatrix) -> None:
        budget = settings.LOUPE_RAG_CACHE_MB * 1024 * 1024
        with self._lock:
            self._items.pop(key, None)
            if item.nbytes > budget:
                return
            self._items[key] = item
            while sum(m.nbytes for m in self._items.values()) > budget:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


cache = _MatrixCache()


def _fetch_vectors(ids: np.ndarray) -> dict[int, np.ndarray]:
    with connection.cursor() as cursor:
        cursor.execute(_VECTORS_SQL, [ids.tolist()])
        rows = cursor.fetchall()
    return {pk: np.frombuffer(bytes(data), dtype=">f4", offset=4).astype(np.float32) for pk, data in rows}


def support_matrix(support_set_id: int, model_key: str) -> tuple[SupportMatrix, np.ndarray]:
    """The set's ready patches under the key, and each one's class id (read fresh every call)."""
    with connection.cursor() as cursor:
        cursor.execute(_IDS_SQL, [support_set_id, model_key])
        rows = cursor.fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    class_ids = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    key = (support_set_id, model_key)
    held = cache.get(key)
    if held is not None and np.array_equal(held.ids, ids):
        return held, class_ids
    kept = {}
    if held is not None:
        common, at_held, _ = np.intersect1d(held.ids, ids, assume_unique=True, return_indices=True)
        kept = dict(zip(common.tolist(), held.vectors[at_held]))
    missing = np.setdiff1d(ids, np.fromiter(kept, dtype=np.int64, count=len(kept)), assume_unique=True)
    kept.update(_fetch_vectors(missing) if len(missing) else {})
    if len(kept) < len(ids):  # examples deleted between the two reads: they no longer count
        present = np.isin(ids, np.fromiter(kept, dtype=np.int64, count=len(kept)))
        ids, class_ids = ids[present], class_ids[present]
    vectors = np.stack([kept[pk] for pk in ids.tolist()]) if len(ids) else np.zeros((0, 0), dtype=np.float32)
    matrix = SupportMatrix(ids=ids, vectors=np.ascontiguousarray(vectors, dtype=np.float32))
    cache.put(key, matrix)
    return matrix, class_ids


@dataclass(frozen=True)
class RetrievedPatch:
    class_id: int
    patch_id: int
    support_image_id: int
    image_id: int
    box: tuple[int, int, int, int]
    similarity: float
    query_patch: int  # index into the query's patch list


@dataclass(frozen=True)
class PatchMatches:
    best_per_query: dict[int, np.ndarray]  # class id → (query patches,) best cosine in that class
    evidence: list[RetrievedPatch]  # per class, best first


def match_patches(*, support_set_id: int, model_key: str, query_vectors: np.ndarray, k: int,
                  query_keep: np.ndarray | None = None) -> PatchMatches:
    """`query_keep` marks the query patches evidence may match (the foreground; None or none marked:
    all), so that black background is not shown as black background's best evidence. Every query
    patch still gets its best cosine per class; the scores choose which to count."""
    queries = np.asarray(query_vectors, dtype=np.float32)
    matrix, class_ids = support_matrix(support_set_id, model_key)
    if not len(matrix.ids):
        return PatchMatches(best_per_query={}, evidence=[])
    if matrix.vectors.shape[1] != queries.shape[1]:
        raise ValueError(f"query patches have {queries.shape[1]} dims, the support patches {matrix.vectors.shape[1]}")
    sims = matrix.vectors @ queries.T  # (support patches, query patches), cosines of unit vectors
    kept = np.arange(len(queries))
    if query_keep is not None and np.any(query_keep):
        kept = np.flatnonzero(query_keep)
    best_query = kept[sims[:, kept].argmax(axis=1)]  # the first maximum: ties go to the lower query patch
    best_sim = sims[np.arange(len(sims)), best_query]

    best: dict[int, np.ndarray] = {}
    chosen: list[tuple[int, int, int, float]] = []
    for class_id in np.unique(class_ids).tolist():
        rows = np.flatnonzero(class_ids == class_id)
        best[class_id] = sims[rows].max(axis=0).astype(np.float64)
        # Highest similarity first, ties to the lower patch id (rows are in id order).
        top = rows[np.lexsort((rows, -best_sim[rows]))[:k]]
        chosen += [(class_id, int(matrix.ids[r]), int(best_query[r]), float(best_sim[r])) for r in top]
    return PatchMatches(best_per_query=best, evidence=_with_details(chosen))


def _with_details(chosen: list[tuple[int, int, int, float]]) -> list[RetrievedPatch]:
    details = {
        row["pk"]: row
        for row in PatchEmbedding.objects.filter(pk__in=[c[1] for c in chosen]).values(
            "pk", "support_image_id", "support_image__image_id", "x0", "y0", "x1", "y1"
        )
    }
    return [
        RetrievedPatch(
            class_id=class_id,
            patch_id=patch_id,
            support_image_id=details[patch_id]["support_image_id"],
            image_id=details[patch_id]["support_image__image_id"],
            box=(details[patch_id]["x0"], details[patch_id]["y0"], details[patch_id]["x1"], details[patch_id]["y1"]),
            similarity=sim,
            query_patch=qi,
        )
        for class_id, patch_id, qi, sim in chosen
        if patch_id in details  # an example removed since the matrix was read
    ]
