"""Reading vectors for search: candidates from pgvector, then an exact re-rank in NumPy.

Candidates: for each part that proposes images (image, text), the k' nearest vectors of the album
under the model, ordered by the same expression the HNSW index is built on, with the model_id as a
literal so the partial index applies. PostgreSQL picks HNSW (with iterative scan, so the album
filter does not starve the result) for large albums and a btree + exact sort for small ones. The
union is then scored exactly with `search.scoring`, so the final order is the exact order on the
candidates; for an album of at most k' images that is the exact order, full stop.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from psycopg import sql

from workers.models import Embedding
from workers.vector_store import (
    BINARY,
    BINARY_OVERSAMPLE,
    distance_operator,
    index_expression,
    query_operand,
    storage_of,
)

_to_db = Embedding._meta.get_field("vector").get_prep_value

PROPOSING_PARTS = ("image", "text")


@dataclass
class Candidates:
    image_ids: np.ndarray  # (n,) int64
    cosines: dict[str, np.ndarray]  # part -> (n,) exact cosine with the full-precision vector
    rows: dict[int, dict]  # image_id -> display fields


def ef_search(k: int) -> int:
    """HNSW's candidate list for k results: twice k (pgvector caps it at 1,000). At 1M rows, ef = k' =
    200 gave recall@10 0.974; the design's measurements reached 0.993-0.999 with ef 200-400 for
    100-200 re-ranked candidates."""
    return min(1000, max(100, 2 * k))


@contextmanager
def hnsw_settings(*, ef_search: int, max_scan_tuples: int):
    """A cursor on which pgvector's HNSW scan settings hold for the next statements.

    Every search uses the same few values, so on a persistent connection (CONN_MAX_AGE) outside a
    transaction they are set for the session, and only when they change: no BEGIN, set_config and
    COMMIT round trips per search. Inside a transaction a session-level SET would be undone by a
    rollback, so there they are set local to the transaction, as before. They matter only to HNSW
    scans; every other statement ignores them."""
    wanted = (str(int(ef_search)), "relaxed_order", str(int(max_scan_tuples)))
    statement = ("SELECT set_config('hnsw.ef_search', %s, {local}), set_config('hnsw.iterative_scan', %s, {local}), "
                 "set_config('hnsw.max_scan_tuples', %s, {local})")
    if connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(statement.format(local="true"), list(wanted))
            yield cursor
        return
    with connection.cursor() as cursor:
        raw = connection.connection
        if getattr(raw, "_loupe_hnsw_settings", None) != wanted:
            cursor.execute(statement.format(local="false"), list(wanted))
            raw._loupe_hnsw_settings = wanted
        yield cursor


def candidate_count(max_results: int) -> int:
    return max(settings.LOUPE_SEARCH_CANDIDATES, int(max_results))


def _nearest_sql(*, album_id: int, model_id: str, dim: int) -> sql.Composable:
    """The album's k nearest rows under the model. Album and model are literals, so the planner can
    prove a partial index's predicate: the album's own graph (vector_store.album_graph_ensure), else
    the model's graph, else the (album, model) btree and an exact sort."""
    storage = storage_of(model_id)
    return sql.SQL(
        "(SELECT id FROM search_embedding WHERE album_id = {album_id} AND model_id = {model_id} "
        "ORDER BY {expr} {op} {query} LIMIT %s)"
    ).format(
        album_id=sql.Literal(int(album_id)), model_id=sql.Literal(model_id), expr=index_expression(dim, storage),
        op=distance_operator(dim, storage), query=query_operand(dim, storage),
    )


def proposals_per_part(model_id: str, k: int) -> int:
    """How many nearest rows each proposing part takes from the index: k, or more for an index whose
    distance is coarser than the final score (binary)."""
    return k * BINARY_OVERSAMPLE if storage_of(model_id) == BINARY else k


def search_candidates(
    *,
    album_id: int,
    model_id: str,
    queries: dict[str, np.ndarray],
    k: int,
    exclude_image_ids: tuple[int, ...] = (),
    proposers: list[np.ndarray] | None = None,
) -> Candidates:
    """Union of the proposing parts' k nearest vectors, each scored against every query part.

    The cosines are computed in PostgreSQL on the full-precision column (vectors are unit-norm, so
    the negated inner product is the cosine): shipping 200 vectors to Python to do the same cost
    ~4x the latency (docs/benchmarks.md)."""
    parts = sorted(queries)
    if proposers is None:
        proposers = [queries[part] for part in PROPOSING_PARTS if part in queries]
    dim = int(next(iter(queries.values())).shape[-1])
    nearest = _nearest_sql(album_id=album_id, model_id=model_id, dim=dim)
    k_fetch = proposals_per_part(model_id, k + len(exclude_image_ids))
    statement = sql.SQL(
        "WITH candidates AS ({union}) "
        "SELECT e.image_id, {cosines}, i.original_name, i.width, i.height, i.taken_at "
        "FROM candidates c JOIN search_embedding e ON e.id = c.id JOIN albums_image i ON i.id = e.image_id "
        "WHERE NOT (e.image_id = ANY(%s))"
    ).format(
        union=sql.SQL(" UNION ").join([nearest] * len(proposers)),
        cosines=sql.SQL(", ").join(sql.SQL("-(e.vector <#> %s::vector)") for _ in parts),
    )
    texts: dict[int, str] = {}  # the same vector (an image part that also proposes) is formatted once

    def as_text(vector: np.ndarray) -> str:
        if id(vector) not in texts:
            texts[id(vector)] = _to_db(vector)
        return texts[id(vector)]

    params: list = []
    for vector in proposers:
        params += [as_text(vector), k_fetch]
    params += [as_text(queries[part]) for part in parts]
    params.append(list(exclude_image_ids))
    with hnsw_settings(ef_search=ef_search(k_fetch), max_scan_tuples=max(20_000, 4 * k_fetch)) as cursor:
        cursor.execute(statement.as_string(cursor.connection), params)
        rows = cursor.fetchall()
    n_parts = len(parts)
    return Candidates(
        image_ids=np.array([r[0] for r in rows], dtype=np.int64),
        cosines={part: np.array([r[1 + j] for r in rows], dtype=np.float32) for j, part in enumerate(parts)},
        rows={
            r[0]: dict(zip(("original_name", "width", "height", "taken_at"), r[1 + n_parts :], strict=True)) for r in rows
        },
    )


def image_vector(*, image_id: int, model_id: str) -> np.ndarray | None:
    vector = Embedding.objects.filter(image_id=image_id, model_id=model_id).values_list("vector", flat=True).first()
    return None if vector is None else np.asarray(vector, dtype=np.float32)


def album_vector_count(*, album_id: int, model_id: str) -> int:
    return Embedding.objects.filter(album_id=album_id, model_id=model_id).count()


def album_vectors(*, album_id: int, model_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Every vector of the album under the model, ordered by image id (for exact all-pairs work)."""
    rows = list(
        Embedding.objects.filter(album_id=album_id, model_id=model_id).order_by("image_id").values_list("image_id", "vector")
    )
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    return np.array([r[0] for r in rows], dtype=np.int64), np.stack([np.asarray(r[1], dtype=np.float32) for r in rows])


@dataclass
class RegionMatches:
    image_ids: np.ndarray  # (n,) int64, best first (ties to the lower id)
    cosines: np.ndarray  # (n,) each image's best region cosine
    cells: np.ndarray  # (n,) which cell (row-major) gave it
    rows: dict[int, dict]


def region_matches(*, album_id: int, model_id: str, query: np.ndarray, limit: int,
                   exclude_image_ids: tuple[int, ...] = ()) -> RegionMatches:
    """Images ranked by their best region (max-sim of the query against each of their region tokens).

    As for whole-image search: the region tokens nearest the query propose candidate images through
    the model's HNSW index on search_regionembedding (iterative scan; PostgreSQL sorts exactly for a
    small album instead), then every region of each candidate is scored exactly and the best kept.
    An image has 12 regions, so twice k' region rows are proposed (× the binary oversampling)."""
    dim = int(np.asarray(query).shape[-1])
    storage = storage_of(model_id)
    k = candidate_count(limit)
    n_rows = 2 * proposals_per_part(model_id, k)
    statement = sql.SQL(
        "WITH near AS (SELECT image_id FROM search_regionembedding WHERE album_id = %s AND model_id = {model_id} "
        "  ORDER BY {expr} {op} {query} LIMIT %s), "
        "best AS (SELECT DISTINCT ON (r.image_id) r.image_id, r.cell, -(r.vector <#> %s::vector) AS score "
        "  FROM search_regionembedding r WHERE r.model_id = {model_id} "
        "  AND r.image_id IN (SELECT image_id FROM near) AND NOT (r.image_id = ANY(%s)) "
        "  ORDER BY r.image_id, r.vector <#> %s::vector, r.cell) "
        "SELECT b.image_id, b.score, b.cell, i.original_name, i.width, i.height, i.taken_at "
        "FROM best b JOIN albums_image i ON i.id = b.image_id ORDER BY b.score DESC, b.image_id LIMIT %s"
    ).format(model_id=sql.Literal(model_id), expr=index_expression(dim, storage), op=distance_operator(dim, storage),
             query=query_operand(dim, storage))
    q = _to_db(np.asarray(query, dtype=np.float32))
    with hnsw_settings(ef_search=ef_search(n_rows), max_scan_tuples=max(20_000, 4 * n_rows)) as cursor:
        cursor.execute(statement.as_string(cursor.connection),
                       [album_id, q, n_rows, q, list(exclude_image_ids), q, int(limit)])
        rows = cursor.fetchall()
    return RegionMatches(
        image_ids=np.array([r[0] for r in rows], dtype=np.int64),
        cosines=np.array([r[1] for r in rows], dtype=np.float32),
        cells=np.array([r[2] for r in rows], dtype=np.int64),
        rows={r[0]: dict(zip(("original_name", "width", "height", "taken_at"), r[3:], strict=True)) for r in rows},
    )
