"""Reading vectors for search: candidates from pgvector, then an exact re-rank in NumPy.

Candidates: for each part that proposes images (image, text), the k' nearest vectors of the album
under the model, ordered by the same expression the HNSW index is built on, with the model_id as a
literal so the partial index applies. PostgreSQL picks HNSW (with iterative scan, so the album
filter does not starve the result) for large albums and a btree + exact sort for small ones. The
union is then scored exactly with `search.scoring`, so the final order is the exact order on the
candidates; for an album of at most k' images that is the exact order, full stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from search.models import Embedding
from search.vector_store import index_expression, uses_halfvec

_to_db = Embedding._meta.get_field("vector").get_prep_value

PROPOSING_PARTS = ("image", "text")
IMAGE_FIELDS = ("image_id", "vector", "image__original_name", "image__width", "image__height", "image__taken_at")


@dataclass
class Candidates:
    image_ids: np.ndarray  # (n,) int64
    vectors: np.ndarray  # (n, dim) float32
    rows: dict[int, dict]  # image_id -> display fields


def candidate_count(max_results: int) -> int:
    return max(settings.LOUPE_SEARCH_CANDIDATES, int(max_results))


def _nearest_sql(*, model_id: str, dim: int) -> sql.Composable:
    cast = "halfvec" if uses_halfvec(dim) else "vector"
    return sql.SQL(
        "(SELECT id FROM search_embedding WHERE album_id = %s AND model_id = {model_id} "
        "ORDER BY {expr} <=> %s::{cast}({dim}) LIMIT %s)"
    ).format(model_id=sql.Literal(model_id), expr=index_expression(dim), cast=sql.SQL(cast), dim=sql.Literal(int(dim)))


def search_candidates(
    *, album_id: int, model_id: str, queries: dict[str, np.ndarray], k: int, exclude_image_ids: tuple[int, ...] = ()
) -> Candidates:
    """Union of each proposing part's k nearest vectors, with full-precision vectors to re-rank."""
    proposing = [part for part in PROPOSING_PARTS if part in queries]
    dim = int(next(iter(queries.values())).shape[-1])
    nearest = _nearest_sql(model_id=model_id, dim=dim)
    k_fetch = k + len(exclude_image_ids)
    with transaction.atomic(), connection.cursor() as cursor:
        # Local to this transaction: other queries on the connection keep the server's settings.
        cursor.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('hnsw.max_scan_tuples', %s, true)",
            [str(min(1000, max(40, k_fetch))), str(max(20_000, 4 * k_fetch))],
        )
        statement = sql.SQL(" UNION ").join([nearest] * len(proposing)).as_string(cursor.connection)
        params: list = []
        for part in proposing:
            params += [album_id, _to_db(queries[part]), k_fetch]
        cursor.execute(statement, params)
        embedding_ids = [row[0] for row in cursor.fetchall()]
    rows = list(
        Embedding.objects.filter(pk__in=embedding_ids).exclude(image_id__in=exclude_image_ids).values_list(*IMAGE_FIELDS)
    )
    if not rows:
        return Candidates(np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32), {})
    return Candidates(
        image_ids=np.array([r[0] for r in rows], dtype=np.int64),
        vectors=np.stack([np.asarray(r[1], dtype=np.float32) for r in rows]),
        rows={r[0]: {"original_name": r[2], "width": r[3], "height": r[4], "taken_at": r[5]} for r in rows},
    )


def image_vector(*, image_id: int, model_id: str) -> np.ndarray | None:
    vector = Embedding.objects.filter(image_id=image_id, model_id=model_id).values_list("vector", flat=True).first()
    return None if vector is None else np.asarray(vector, dtype=np.float32)


def album_vectors(*, album_id: int, model_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Every vector of the album under the model, ordered by image id (for exact all-pairs work)."""
    rows = list(
        Embedding.objects.filter(album_id=album_id, model_id=model_id).order_by("image_id").values_list("image_id", "vector")
    )
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.array([r[0] for r in rows], dtype=np.int64), np.stack([np.asarray(r[1], dtype=np.float32) for r in rows])
