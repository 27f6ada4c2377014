"""Writing vectors and keeping their HNSW indexes: SQL that the ORM does not express well.

The `vector` column has no fixed dimension because albums use different encoders. pgvector can
only index a fixed dimension, so each (model_id, dim) gets its own expression + partial index
(pgvector FAQ), created the first time that model gets vectors. Queries that want the index must
use the same expression (`index_expression`) and the model_id as a literal: a partial index is
not used for a bound parameter (shared/design.md).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence

import numpy as np
from django.conf import settings
from django.db import connection
from pgvector.django import VectorField
from psycopg import sql

logger = logging.getLogger(__name__)

# pgvector's limits on indexed dimensions.
MAX_VECTOR_INDEX_DIM = 2000
MAX_HALFVEC_INDEX_DIM = 4000

_to_db = VectorField().get_prep_value


def index_name(model_id: str, dim: int) -> str:
    return f"emb_hnsw_{hashlib.sha256(model_id.encode()).hexdigest()[:16]}_{dim}"


def uses_halfvec(dim: int) -> bool:
    return settings.LOUPE_HNSW_HALFVEC or dim > MAX_VECTOR_INDEX_DIM


def index_expression(dim: int) -> sql.Composable:
    """The indexed expression for this dimension; a query must repeat it verbatim to use the index."""
    kind = "halfvec" if uses_halfvec(dim) else "vector"
    return sql.SQL("(vector::{}({}))").format(sql.SQL(kind), sql.Literal(int(dim)))


def hnsw_index_ensure(*, model_id: str, dim: int) -> str | None:
    """Create the HNSW index for (model_id, dim) if it is missing, without blocking writes.

    m=16 with ef_construction=128: measured here at 1M rows, the default 64 topped out at 0.964
    recall@10 whatever ef_search (whole clusters unreachable), 128 gave 0.993-0.999 with a re-rank
    (shared/design.md). Must run outside a transaction (CREATE INDEX CONCURRENTLY).
    """
    if dim > MAX_HALFVEC_INDEX_DIM:
        logger.warning("no HNSW index for %s: %d dims is over pgvector's limit; searches scan exactly", model_id, dim)
        return None
    name = index_name(model_id, dim)
    opclass = "halfvec_cosine_ops" if uses_halfvec(dim) else "vector_cosine_ops"
    statement = sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON search_embedding USING hnsw ({expr} {opclass}) "
        "WITH (m = {m}, ef_construction = {efc}) WHERE model_id = {model_id}"
    ).format(
        name=sql.Identifier(name),
        expr=index_expression(dim),
        opclass=sql.SQL(opclass),
        m=sql.Literal(settings.LOUPE_HNSW_M),
        efc=sql.Literal(settings.LOUPE_HNSW_EF_CONSTRUCTION),
        model_id=sql.Literal(model_id),
    )
    with connection.cursor() as cursor:
        # An interrupted concurrent build leaves an INVALID index that IF NOT EXISTS would keep.
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s", [name]
        )
        row = cursor.fetchone()
        if row is not None and not row[0]:
            cursor.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)).as_string(cursor.connection))
        cursor.execute(statement.as_string(cursor.connection))
    return name


def embeddings_insert(*, model_id: str, image_ids: Sequence[int], vectors: np.ndarray) -> set[int]:
    """Insert one vector per image in one statement; rows already there are kept (the same input
    gives the same vector, and a redelivered batch must not rewrite). Returns the ids inserted."""
    if not len(image_ids):
        return set()
    vectors = np.asarray(vectors, dtype=np.float32)
    assert vectors.shape[0] == len(image_ids), "one vector per image"
    with connection.cursor() as cursor:
        cursor.execute(
            # The join takes each image's album and skips images deleted since they were decoded.
            "INSERT INTO search_embedding (image_id, album_id, model_id, dim, vector, created_at) "
            "SELECT t.image_id, i.album_id, %s, %s, t.v::vector, now() "
            "FROM unnest(%s::bigint[], %s::text[]) AS t(image_id, v) JOIN albums_image i ON i.id = t.image_id "
            "ON CONFLICT (image_id, model_id) DO NOTHING RETURNING image_id",
            [model_id, int(vectors.shape[1]), list(map(int, image_ids)), [_to_db(v) for v in vectors]],
        )
        return {row[0] for row in cursor.fetchall()}


def embeddings_delete_other_models(*, album_id: int, keep_model_id: str) -> int:
    """Drop an album's vectors of every model but the one search now uses."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM search_embedding WHERE album_id = %s AND model_id <> %s", [album_id, keep_model_id])
        return cursor.rowcount
