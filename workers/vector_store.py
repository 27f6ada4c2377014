"""Writing vectors and keeping their HNSW indexes: SQL that the ORM does not express well.

The `vector` column has no fixed dimension because albums use different encoders. pgvector can
only index a fixed dimension, so each (model_id, dim) gets its own expression + partial index
(pgvector FAQ), created the first time that model gets vectors. Queries that want the index must
use the same expression (`index_expression`) and the model_id as a literal: a partial index is
not used for a bound parameter (docs/design-notes.md).

The album's storage kind (part of its model_id, encoders/model_ids.py) picks the indexed form:
`vector` (float32), `halfvec` (float16: half the index), `binary` (`binary_quantize`, one bit per
dimension, Hamming distance: ~1/32 of the vector bytes in the index). The column itself always keeps
float32, and every candidate is re-scored on it (search/selectors.py), so the quantized index only
proposes; docs/benchmarks.md (quantization) measures what each kind costs in recall and saves in
bytes.
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

from encoders.model_ids import parse_model_id
from encoders.pooling import REGIONS

logger = logging.getLogger(__name__)

# pgvector's limits on indexed dimensions.
MAX_VECTOR_INDEX_DIM = 2000
MAX_HALFVEC_INDEX_DIM = 4000

_to_db = VectorField().get_prep_value


def index_name(model_id: str, dim: int) -> str:
    return f"emb_hnsw_{hashlib.sha256(model_id.encode()).hexdigest()[:16]}_{dim}"


VECTOR, HALFVEC, BINARY = "vector", "halfvec", "binary"
STORAGE_KINDS = (VECTOR, HALFVEC, BINARY)
# A Hamming distance over sign bits ranks coarsely: the binary index proposes this many times the
# candidates a float index would, all re-scored in float32 (docs/benchmarks.md, quantization).
BINARY_OVERSAMPLE = 4
_OPCLASS = {VECTOR: "vector_cosine_ops", HALFVEC: "halfvec_cosine_ops", BINARY: "bit_hamming_ops"}
_DISTANCE = {VECTOR: "<=>", HALFVEC: "<=>", BINARY: "<~>"}
# An album's own graph orders by inner product: the vectors are unit-norm, so the order is the
# cosine's, and a query ordering by `<#>` can use no other index. With both graphs matching a
# query, the planner chose the model's shared graph for an album that was most of the table (1M of
# 1.33M rows): recall@10 0.987 there against 0.996 on the album's own (docs/benchmarks.md).
_ALBUM_OPCLASS = {VECTOR: "vector_ip_ops", HALFVEC: "halfvec_ip_ops", BINARY: "bit_hamming_ops"}
_ALBUM_DISTANCE = {VECTOR: "<#>", HALFVEC: "<#>", BINARY: "<~>"}


def uses_halfvec(dim: int) -> bool:
    return settings.LOUPE_HNSW_HALFVEC or dim > MAX_VECTOR_INDEX_DIM


def index_kind(dim: int, storage: str = VECTOR) -> str:
    if storage == BINARY:
        return BINARY
    return HALFVEC if storage == HALFVEC or uses_halfvec(dim) else VECTOR


def storage_of(model_id: str) -> str:
    return parse_model_id(model_id).storage


def _quantized(operand: sql.Composable, dim: int, kind: str) -> sql.Composable:
    d = sql.Literal(int(dim))
    if kind == BINARY:
        return sql.SQL("(binary_quantize({}::vector({}))::bit({}))").format(operand, d, d)
    return sql.SQL("({}::{}({}))").format(operand, sql.SQL(kind), d)


def index_expression(dim: int, storage: str = VECTOR) -> sql.Composable:
    """The indexed expression for this dimension; a query must repeat it verbatim to use the index."""
    return _quantized(sql.SQL("vector"), dim, index_kind(dim, storage))


def query_operand(dim: int, storage: str = VECTOR) -> sql.Composable:
    """A `%s` query vector in the indexed form, for `ORDER BY index_expression <op> query_operand`."""
    return _quantized(sql.SQL("%s"), dim, index_kind(dim, storage))


def distance_operator(dim: int, storage: str = VECTOR, *, album_graph: bool = False) -> sql.Composable:
    """The operator a kNN orders by: the model's graph's (cosine), or with `album_graph` the one only
    an album's own graph is built for (inner product; `album_graph_ensure`)."""
    return sql.SQL((_ALBUM_DISTANCE if album_graph else _DISTANCE)[index_kind(dim, storage)])


def album_graph_opclass(dim: int, storage: str = VECTOR) -> str:
    return _ALBUM_OPCLASS[index_kind(dim, storage)]


def hnsw_index_ensure(*, model_id: str, dim: int) -> str | None:
    """Create the HNSW index for (model_id, dim) if it is missing, without blocking writes; for a
    `regions` model also the one over its region tokens (search_regionembedding).

    m=16 with ef_construction=128: measured here at 1M rows, the default 64 topped out at 0.964
    recall@10 whatever ef_search (whole clusters unreachable), 128 gave 0.993-0.999 with a re-rank
    (docs/design-notes.md). Must run outside a transaction (CREATE INDEX CONCURRENTLY).
    """
    storage = storage_of(model_id)
    if dim > MAX_HALFVEC_INDEX_DIM and storage != BINARY:
        logger.warning("no HNSW index for %s: %d dims is over pgvector's limit; searches scan exactly", model_id, dim)
        return None
    name = index_name(model_id, dim)
    _create_hnsw(name=name, table="search_embedding", model_id=model_id, dim=dim, storage=storage)
    if parse_model_id(model_id).pooling == REGIONS:
        _create_hnsw(name=region_index_name(model_id, dim), table="search_regionembedding", model_id=model_id, dim=dim,
                     storage=storage)
    return name


def region_index_name(model_id: str, dim: int) -> str:
    return f"reg_hnsw_{hashlib.sha256(model_id.encode()).hexdigest()[:16]}_{dim}"


def _create_hnsw(*, name: str, table: str, model_id: str, dim: int, storage: str, album_id: int | None = None,
                 m: int | None = None, ef_construction: int | None = None) -> None:
    predicate = sql.SQL("model_id = {}").format(sql.Literal(model_id))
    opclass = _OPCLASS[index_kind(dim, storage)]
    if album_id is not None:
        predicate = sql.SQL("album_id = {} AND ").format(sql.Literal(int(album_id))) + predicate
        opclass = album_graph_opclass(dim, storage)
    statement = sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} USING hnsw ({expr} {opclass}) "
        "WITH (m = {m}, ef_construction = {efc}) WHERE {predicate}"
    ).format(
        name=sql.Identifier(name),
        table=sql.Identifier(table),
        expr=index_expression(dim, storage),
        opclass=sql.SQL(opclass),
        m=sql.Literal(m or settings.LOUPE_HNSW_M),
        efc=sql.Literal(ef_construction or settings.LOUPE_HNSW_EF_CONSTRUCTION),
        predicate=predicate,
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


ALBUM_GRAPH_PREFIX = "emb_album_"


def album_index_name(album_id: int, model_id: str, dim: int) -> str:
    return f"{album_index_prefix(album_id, model_id)}{dim}"


def album_index_prefix(album_id: int, model_id: str) -> str:
    """An album graph's name without its dimension (search reads both in one statement)."""
    return f"{ALBUM_GRAPH_PREFIX}{int(album_id)}_{hashlib.sha256(model_id.encode()).hexdigest()[:12]}_"


def _graph_album(index_name: str) -> int:
    """The album an `album_index_name` belongs to."""
    return int(index_name[len(ALBUM_GRAPH_PREFIX):].split("_", 1)[0])


def album_graph_ensure(*, album_id: int, model_id: str, dim: int) -> str | None:
    """An HNSW graph of the album's own vectors under the model, once it holds at least
    `LOUPE_ALBUM_GRAPH_MIN_ROWS` of them; None (an exact scan serves it) below that or over
    pgvector's dimension limit.

    In a table shared with other albums the model's graph holds everyone's rows: a filtered scan of
    it wades through other albums' neighbours (iterative scan) and an exact scan reads one heap page
    per row (~13 ms at 10,000 x 1280-d). A partial index `WHERE album_id = … AND model_id = …` is a
    graph of this album alone; search names both as literals so the planner can use it.
    Must run outside a transaction (CREATE INDEX CONCURRENTLY)."""
    if dim > MAX_HALFVEC_INDEX_DIM and storage_of(model_id) != BINARY:
        return None
    rows = _album_rows(album_id=album_id, model_id=model_id)
    if rows < settings.LOUPE_ALBUM_GRAPH_MIN_ROWS:
        return None
    name = album_index_name(album_id, model_id, dim)
    # A large album's graph gets more links per node and a deeper build: at 1M rows m 16 /
    # ef_construction 128 topped out at recall@10 0.966-0.987 whatever ef_search, m 32 / 200 reached
    # 0.996-0.997 (build 432 → 1,033 s; docs/benchmarks.md "ef_search").
    large = rows >= settings.LOUPE_ALBUM_GRAPH_LARGE_ROWS
    _create_hnsw(name=name, table="search_embedding", model_id=model_id, dim=dim, storage=storage_of(model_id),
                 album_id=album_id, m=settings.LOUPE_HNSW_LARGE_M if large else None,
                 ef_construction=settings.LOUPE_HNSW_LARGE_EF_CONSTRUCTION if large else None)
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("ANALYZE search_embedding").as_string(cursor.connection))
    return name


def _album_rows(*, album_id: int, model_id: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM search_embedding WHERE album_id = %s AND model_id = %s", [album_id, model_id])
        return int(cursor.fetchone()[0])


def album_graphs_prune(*, album_id: int | None = None) -> list[str]:
    """Drop album graphs that serve nothing: their album is gone, or searches another model now (a
    rebuild switched it). For one album, or every album (the recovery sweep). Outside a transaction."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = 'search_embedding'::regclass AND c.relname LIKE %s",
            [f"{ALBUM_GRAPH_PREFIX}{'' if album_id is None else f'{int(album_id)}_'}%"],
        )
        names = [row[0] for row in cursor.fetchall()]
        cursor.execute("SELECT id, active_model_id FROM albums_album WHERE id = ANY(%s)",
                       [sorted({_graph_album(name) for name in names})])
        active = dict(cursor.fetchall())
    dropped = []
    for name in names:
        owner = _graph_album(name)
        model_id = active.get(owner)
        dim = int(name.rsplit("_", 1)[1])
        if model_id and album_index_name(owner, model_id, dim) == name:
            continue
        with connection.cursor() as cursor:
            cursor.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(name)).as_string(cursor.connection))
        dropped.append(name)
    return dropped


def embeddings_insert(
    *, model_id: str, image_ids: Sequence[int], vectors: np.ndarray, notes: dict[int, str] | None = None
) -> set[int]:
    """Insert one vector per image in one statement; rows already there are kept (the same input
    gives the same vector, and a redelivered batch must not rewrite). Returns the ids inserted.
    `notes`: per image, why masked pooling fell back to the mean."""
    if not len(image_ids):
        return set()
    vectors = np.asarray(vectors, dtype=np.float32)
    assert vectors.shape[0] == len(image_ids), "one vector per image"
    notes = notes or {}
    with connection.cursor() as cursor:
        cursor.execute(
            # The join takes each image's album and skips images deleted since they were decoded.
            "INSERT INTO search_embedding (image_id, album_id, model_id, dim, vector, pooling_note, created_at) "
            "SELECT t.image_id, i.album_id, %s, %s, t.v::vector, t.note, now() "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS t(image_id, v, note) "
            "JOIN albums_image i ON i.id = t.image_id "
            "ON CONFLICT (image_id, model_id) DO NOTHING RETURNING image_id",
            [model_id, int(vectors.shape[1]), list(map(int, image_ids)), [_to_db(v) for v in vectors],
             [notes.get(int(i), "")[:200] for i in image_ids]],
        )
        return {row[0] for row in cursor.fetchall()}


def regions_insert(*, model_id: str, image_ids: Sequence[int], regions: np.ndarray) -> int:
    """Insert each image's region tokens ((n, R, dim), row-major cells) in one statement; rows already
    there are kept, as for embeddings, so a redelivered chunk writes nothing twice."""
    if not len(image_ids):
        return 0
    regions = np.asarray(regions, dtype=np.float32)
    assert regions.shape[0] == len(image_ids), "one region grid per image"
    n_cells = regions.shape[1]
    ids = [int(i) for i in image_ids for _ in range(n_cells)]
    cells = list(range(n_cells)) * len(image_ids)
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO search_regionembedding (image_id, album_id, model_id, cell, vector) "
            "SELECT t.image_id, i.album_id, %s, t.cell, t.v::vector "
            "FROM unnest(%s::bigint[], %s::int[], %s::text[]) AS t(image_id, cell, v) "
            "JOIN albums_image i ON i.id = t.image_id "
            "ON CONFLICT (image_id, model_id, cell) DO NOTHING",
            [model_id, ids, cells, [_to_db(v) for v in regions.reshape(-1, regions.shape[-1])]],
        )
        return cursor.rowcount


def concepts_insert(*, model_id: str, image_ids: Sequence[int], concepts: np.ndarray) -> int:
    """Insert each image's class probabilities ((n, 1000)) in one statement, beside its vector;
    rows already there are kept, as for embeddings, so a redelivered chunk writes nothing twice."""
    if not len(image_ids):
        return 0
    concepts = np.asarray(concepts, dtype=np.float32)
    assert concepts.shape[0] == len(image_ids), "one row of class probabilities per image"
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO workers_imageconcepts (image_id, album_id, model_id, probabilities) "
            "SELECT t.image_id, i.album_id, %s, t.p::halfvec "
            "FROM unnest(%s::bigint[], %s::text[]) AS t(image_id, p) "
            "JOIN albums_image i ON i.id = t.image_id "
            "ON CONFLICT (image_id, model_id) DO NOTHING",
            [model_id, list(map(int, image_ids)), [_to_db(p) for p in concepts]],
        )
        return cursor.rowcount


def embeddings_delete_model(*, album_id: int, model_id: str) -> int:
    """Drop an album's vectors, region tokens and concepts of one model (a cancelled rebuild's partial work)."""
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM workers_imageconcepts WHERE album_id = %s AND model_id = %s", [album_id, model_id])
        cursor.execute("DELETE FROM search_regionembedding WHERE album_id = %s AND model_id = %s", [album_id, model_id])
        cursor.execute("DELETE FROM search_embedding WHERE album_id = %s AND model_id = %s", [album_id, model_id])
        return cursor.rowcount


def embeddings_delete_other_models(*, album_id: int, keep_model_id: str) -> int:
    """Drop an album's vectors (and region tokens, concepts) of every model but the one search now uses."""
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM workers_imageconcepts WHERE album_id = %s AND model_id <> %s", [album_id, keep_model_id]
        )
        cursor.execute(
            "DELETE FROM search_regionembedding WHERE album_id = %s AND model_id <> %s", [album_id, keep_model_id]
        )
        cursor.execute("DELETE FROM search_embedding WHERE album_id = %s AND model_id <> %s", [album_id, keep_model_id])
        return cursor.rowcount


def album_vectors_read(*, album_id: int, model_id: str, image_ids: Sequence[int] | None = None,
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Every vector of the album under the model (or of those of `image_ids` it has), ordered by image
    id: (ids int64, (n, dim) float32).

    Read in pgvector's binary form (`vector_send`: a 4-byte header, then big-endian float32s) rather
    than as text: parsing 100,000 × 1,280 values as text is most of a minute in Python."""
    with connection.cursor() as cursor:
        only = "" if image_ids is None else " AND image_id = ANY(%s)"
        cursor.execute("SELECT image_id, vector_send(vector) FROM search_embedding "
                       f"WHERE album_id = %s AND model_id = %s{only} ORDER BY image_id",
                       [album_id, model_id] + ([list(image_ids)] if image_ids is not None else []))
        rows = cursor.fetchall()
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    dim = (len(rows[0][1]) - 4) // 4
    vectors = np.empty((len(rows), dim), dtype=np.float32)  # filled row by row: no second copy of the album
    for i, (_, data) in enumerate(rows):
        vectors[i] = np.frombuffer(data, dtype=">f4", offset=4)
    return ids, vectors
