"""Reading vectors for search: candidates from pgvector, then an exact re-rank in NumPy.

Candidates: for each part that proposes images (image, text), the k' nearest vectors of the album
under the model, ordered by the same expression the HNSW index is built on, with the model_id as a
literal so the partial index applies. PostgreSQL picks HNSW (with iterative scan, so the album
filter does not starve the result) for large albums and a btree + exact sort for small ones. The
union is then scored exactly with `search.scoring`, so the final order is the exact order on the
candidates; for an album of at most k' images that is the exact order, full stop.
"""

from __future__ import annotations

import hashlib
import re
import struct
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import ProgrammingError, connection, transaction
from django.db.backends.postgresql.base import ServerBindingCursor
from pgvector import Vector
from psycopg import sql

from encoders.model_ids import ModelId
from search.hooks import LabelRestriction, labels_json, restricted_to
from workers.models import Embedding
from workers.vector_store import (
    BINARY,
    BINARY_OVERSAMPLE,
    VECTOR,
    album_index_prefix,
    distance_operator,
    index_expression,
    index_kind,
    query_operand,
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
    scans; every other statement ignores them. `plan_cache_mode` too: the statements search prepares
    (`_execute_prepared`) keep one generic plan instead of being planned again for every execution;
    nothing else on these connections is prepared (Django binds parameters on the client)."""
    wanted = (str(int(ef_search)), "relaxed_order", str(int(max_scan_tuples)), "force_generic_plan")
    statement = ("SELECT set_config('hnsw.ef_search', %s, {local}), set_config('hnsw.iterative_scan', %s, {local}), "
                 "set_config('hnsw.max_scan_tuples', %s, {local}), set_config('plan_cache_mode', %s, {local})")
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
    """k' for a query of several parts: each proposing part brings this many nearest vectors to the
    exact re-rank, whose combined order can differ from every part's own."""
    return max(settings.LOUPE_SEARCH_CANDIDATES, int(max_results))


def index_ranks_exactly(model: ModelId, dim: int) -> bool:
    """Whether the index orders by the final score itself: float32 cosine (not a halfvec or binary
    proxy). A single-part query on such an index needs only its first max_results rows."""
    return index_kind(dim, model.storage) == VECTOR


def single_part_depth(model: ModelId, dim: int, max_results: int) -> int:
    """k' for a query of one part (a stored or uploaded image alone, a text alone): it is ranked by
    the very distance the index orders by, so its top max_results are the index's first max_results
    rows, read under the ef_search its kind of query needs (`single_part_ef_depth`). A proxy index
    (halfvec, binary) keeps the full depth: its order is not the score's."""
    return int(max_results) if index_ranks_exactly(model, dim) else candidate_count(max_results)


# ef_search for a query of one part, by measurement (`python -m bench.ef_sweep`, docs/benchmarks.md
# "ef_search by album size"): on an album graph of up to 100,000 rows, image-like queries and the
# noisier text-like ones both keep recall@10 1.000 at ef_search 200 (10k and 100k albums), ~1.5 ms
# less of PostgreSQL per search at 10k than 400. Past that, recall falls with ef (1M rows: 0.955
# image, 0.976 text at 200, against 0.966 and 0.987 at 400), so larger albums keep the multi-part depth.
SHALLOW_EF_DEPTH = 100
SHALLOW_EF_MAX_ROWS = 100_000


def single_part_ef_depth(max_results: int, *, graph_rows: int) -> int:
    """The depth that sets ef_search (`ef_search(depth)`) for a query of one part, on an album whose
    own graph holds `graph_rows` (0: none; a small album is scanned exactly, where ef does nothing)."""
    if graph_rows <= SHALLOW_EF_MAX_ROWS:
        return max(int(max_results), SHALLOW_EF_DEPTH)
    return candidate_count(max_results)


def _nearest_sql(*, album_id: int, model: ModelId, dim: int, query: sql.Composable | None = None,
                 limit: int | None = None, only: LabelRestriction | None = None, album_graph: bool = False) -> sql.Composable:
    """The album's k nearest rows under the model. Album and model are literals, so the planner can
    prove a partial index's predicate: the album's own graph (vector_store.album_graph_ensure), else
    the model's graph, else the (album, model) btree and an exact sort. `query`: the query operand in
    the indexed form (a `%s` parameter by default); `limit`: k as a literal (a `%s` by default). A
    literal it must be where the statement is bound on the server: a bound LIMIT changed which rows
    pgvector's iterative scan returned (measured: up to 38 of 200 rows differed from a literal's).
    `album_graph`: order by the operator only the album's own graph is built for (inner product), so
    the planner cannot pick the model's shared graph instead (`album_graph_in_use`)."""
    return sql.SQL(
        "(SELECT id FROM search_embedding WHERE album_id = {album_id} AND model_id = {model_id}{only} "
        "ORDER BY {expr} {op} {query} LIMIT {limit})"
    ).format(only=restricted_to(only, "image_id"),
        limit=sql.SQL("%s") if limit is None else sql.Literal(int(limit)),
        album_id=sql.Literal(int(album_id)), model_id=sql.Literal(str(model)),
        expr=index_expression(dim, model.storage), op=distance_operator(dim, model.storage, album_graph=album_graph),
        query=query if query is not None else query_operand(dim, model.storage),
    )


def proposals_per_part(model: ModelId, k: int) -> int:
    """How many nearest rows each proposing part takes from the index: k, or more for an index whose
    distance is coarser than the final score (binary)."""
    return k * BINARY_OVERSAMPLE if model.storage == BINARY else k


@dataclass(frozen=True)
class StoredQuery:
    """The query vector is an image's stored vector under the searched model, read inside the
    candidate statement (it never travels to Python and back), and only if `viewer_id` is a member
    of the image's album."""

    image_id: int
    viewer_id: int


def _vector_from_text(text: str) -> np.ndarray:
    return np.asarray(Vector.from_text(text).to_numpy(), dtype=np.float32)


_ROW_FIELDS = ("original_name", "width", "height", "taken_at", "labels")


def _row(values) -> dict:
    """Display fields of a candidate row (`_ROW_FIELDS`, in that order): labels as a list, margins
    rounded as every other label answer rounds them."""
    row = dict(zip(_ROW_FIELDS, values, strict=True))
    row["labels"] = [{**label, "margin": round(label["margin"], 4)} for label in row["labels"] or ()]
    return row


def search_candidates(
    *,
    album_id: int,
    model: ModelId,
    queries: dict[str, np.ndarray | StoredQuery],
    k: int,
    exclude_image_ids: tuple[int, ...] = (),
    proposers: list[np.ndarray] | None = None,
    dim: int | None = None,
    ef_depth: int | None = None,
    only: LabelRestriction | None = None,
) -> Candidates | None:
    """Union of the proposing parts' k nearest vectors, each scored against every query part.

    The cosines are computed in PostgreSQL on the full-precision column (vectors are unit-norm, so
    the negated inner product is the cosine): shipping 200 vectors to Python to do the same cost
    ~4x the latency (docs/benchmarks.md). `ef_depth`: the k' that sets hnsw.ef_search (default k),
    so a shallower single-part k' reads the same graph neighbourhood as the deep one; excluded images
    widen the LIMIT, not ef, so a search and a more-like-this share the connection's settings.

    A `StoredQuery` (a single part: `{"image": StoredQuery(...)}`, `dim` given) makes it one
    statement: access check, query vector and candidates. None then means the query row was not
    there (the image is not the viewer's to see, or has no vector under this model); an empty
    Candidates means the vector was there and nothing else was. `only`: candidates are the images
    with that label (the restriction is part of each kNN, see _only_sql)."""
    parts = sorted(queries)
    stored = next((q for q in queries.values() if isinstance(q, StoredQuery)), None)
    if stored is not None:
        if len(queries) != 1 or dim is None:
            raise ValueError("a stored query vector is searched alone, with its dimension given")
        return _stored_candidates(album_id=album_id, model=model, part=parts[0], stored=stored, k=k, dim=dim,
                                  exclude_image_ids=exclude_image_ids, ef_depth=ef_depth or k, only=only)
    if proposers is None:
        proposers = [queries[part] for part in PROPOSING_PARTS if part in queries]
    dim = int(next(iter(queries.values())).shape[-1])
    k_fetch = proposals_per_part(model, k + len(exclude_image_ids))
    own_graph = album_graph_in_use(album_id=album_id, model=model)

    def statement() -> sql.Composable:
        return sql.SQL(
            "WITH candidates AS ({union}) "
            "SELECT e.image_id, {cosines}, i.original_name, i.width, i.height, i.taken_at, {labels} "
            "FROM candidates c JOIN search_embedding e ON e.id = c.id JOIN albums_image i ON i.id = e.image_id "
            "WHERE NOT (e.image_id = ANY(%s))"
        ).format(labels=labels_json(),
            union=sql.SQL(" UNION ").join(
                [_nearest_sql(album_id=album_id, model=model, dim=dim, limit=k_fetch, only=only, album_graph=own_graph)]
                * len(proposers)),
            cosines=sql.SQL(", ").join(sql.SQL("-(e.vector <#> %s::vector)") for _ in parts),
        )
    params = [*proposers, *(queries[part] for part in parts), list(map(int, exclude_image_ids))]
    ef_fetch = proposals_per_part(model, ef_depth or k)
    key = ("parts", album_id, str(model), model.storage, dim, len(proposers), len(parts), k_fetch, only, own_graph)
    with hnsw_settings(ef_search=ef_search(ef_fetch), max_scan_tuples=max(20_000, 4 * ef_fetch)) as cursor:
        text = _statement_text(key, statement, cursor)
        with _vector_cursor() as vector_cursor:
            vector_cursor.execute(text, params)
            rows = vector_cursor.fetchall()
    return _candidates(rows, parts)


def _stored_candidates(*, album_id: int, model: ModelId, part: str, stored: StoredQuery, k: int, dim: int,
                       exclude_image_ids: tuple[int, ...], ef_depth: int,
                       only: LabelRestriction | None = None) -> Candidates | None:
    """The stored-vector query in one statement. `q` is the query row, there only when the viewer is
    a member of its image's album; the kNN orders by it as an InitPlan (pgvector's index scan takes
    it as a parameter) and is gated on it; the LEFT JOIN answers one all-NULL row when the query row
    was found and nothing else, no row at all when it was not."""
    k_fetch = proposals_per_part(model, k + len(exclude_image_ids))
    own_graph = album_graph_in_use(album_id=album_id, model=model)

    def statement() -> sql.Composable:
        query = sql.SQL("(SELECT {expr} FROM q)").format(expr=index_expression(dim, model.storage))
        return sql.SQL(
            "WITH q AS (SELECT qe.vector FROM search_embedding qe JOIN albums_image qi ON qi.id = qe.image_id "
            "  WHERE qe.image_id = $1 AND qe.model_id = {model_id} AND qe.dim = {dim} AND qi.album_id IN "
            "  (SELECT m.album_id FROM albums_albummembership m WHERE m.user_id = $2)), "
            "candidates AS {nearest} "
            "SELECT e.image_id, -(e.vector <#> q.vector), i.original_name, i.width, i.height, i.taken_at, {labels} "
            "FROM q LEFT JOIN (candidates c JOIN search_embedding e ON e.id = c.id "
            "  JOIN albums_image i ON i.id = e.image_id AND NOT (e.image_id = ANY($3))) ON true"
        ).format(labels=labels_json(), model_id=sql.Literal(str(model)), dim=sql.Literal(int(dim)),
                 nearest=_nearest_sql(album_id=album_id, model=model, dim=dim, query=query, limit=k_fetch, only=only,
                                      album_graph=own_graph))

    ef_fetch = proposals_per_part(model, ef_depth)
    key = ("stored", album_id, str(model), model.storage, dim, k_fetch, only, own_graph)
    with hnsw_settings(ef_search=ef_search(ef_fetch), max_scan_tuples=max(20_000, 4 * ef_fetch)) as cursor:
        _execute_prepared(cursor, _statement_text(key, statement, cursor), "(bigint, bigint, bigint[])",
                          [int(stored.image_id), int(stored.viewer_id), list(map(int, exclude_image_ids))])
        rows = cursor.fetchall()
    if not rows:
        return None
    return _candidates([row for row in rows if row[0] is not None], [part])


# Composed statements by what shapes them (album, model, storage, dimension, parts): composing one
# with psycopg.sql cost more Python than running it.
_statements: dict[tuple, str] = {}


def _statement_text(key: tuple, build: Callable[[], sql.Composable], cursor) -> str:
    if (text := _statements.get(key)) is None:
        if len(_statements) > 1024:
            _statements.clear()
        text = _statements[key] = build().as_string(cursor.connection)
    return text


class _VectorBinaryDumper(psycopg.adapt.Dumper):
    """A float32 NumPy vector as pgvector's binary `vector` (dimension, 0, big-endian floats): what
    text formatting cost in Python (~1-2 ms for 1,280 values) and in the server's parser, gone."""

    format = psycopg.pq.Format.BINARY

    def dump(self, obj: np.ndarray) -> bytes:
        values = np.asarray(obj, dtype=">f4")
        return struct.pack(">HH", values.shape[-1], 0) + values.tobytes()


class _UnpreparedCursor(ServerBindingCursor):
    """psycopg would prepare a statement run five times, and a generic plan (`hnsw_settings`) must
    not guess the LIMIT a kNN takes."""

    def execute(self, query, params=None, **kwargs):
        return super().execute(query, params, **{**kwargs, "prepare": False})


@contextmanager
def _vector_cursor():
    """A cursor of Django's connection (same transaction, counted and logged like any other) whose
    parameters are bound on the server, NumPy arrays sent as binary vectors. Django binds on the
    client, as text; this one statement is the exception. Not prepared: its plan depends on k."""
    connection.ensure_connection()
    raw = connection.connection
    dumper = getattr(raw, "_loupe_vector_dumper", None)
    if dumper is None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'vector'::regtype::oid")
            dumper = type("VectorDumper", (_VectorBinaryDumper,), {"oid": cursor.fetchone()[0]})
        raw._loupe_vector_dumper = dumper
    bound = _UnpreparedCursor(raw)
    bound.adapters.register_dumper(np.ndarray, dumper)
    wrapped = connection.make_debug_cursor(bound) if connection.queries_logged else connection.make_cursor(bound)
    try:
        yield wrapped
    finally:
        bound.close()


def _execute_prepared(cursor, text: str, types: str, params: list) -> None:
    """Run `text` (parameters `$1…`) as a prepared statement of this session: parsed and planned
    once per connection (a generic plan, `hnsw_settings`), then only executed. Measured on the
    stored-image statement: ~1 ms of PostgreSQL's CPU less per search. Outside a transaction only:
    inside one (tests) it runs as a plain statement."""
    if connection.in_atomic_block:
        in_order = [params[int(n) - 1] for n in re.findall(r"\$(\d+)", text)]
        cursor.execute(re.sub(r"\$\d+", "%s", text), in_order)
        return
    raw = connection.connection
    prepared: set[str] | None = getattr(raw, "_loupe_prepared", None)
    if prepared is None:
        prepared = raw._loupe_prepared = set()
    name = "loupe_" + hashlib.sha256(text.encode()).hexdigest()[:24]
    execute = f"EXECUTE {name}({', '.join(['%s'] * len(params))})"
    if name in prepared:
        try:
            cursor.execute(execute, params)
            return
        except ProgrammingError as exc:  # the session lost it (DISCARD ALL): prepare it again
            if not isinstance(exc.__cause__, psycopg.errors.InvalidSqlStatementName):
                raise
            prepared.clear()
    if len(prepared) >= 256:  # one per album, model and depth searched on this connection
        cursor.execute("DEALLOCATE ALL")
        prepared.clear()
    cursor.execute(f"PREPARE {name} {types} AS {text}")
    prepared.add(name)
    cursor.execute(execute, params)


def _candidates(rows: list[tuple], parts: list[str]) -> Candidates:
    n_parts = len(parts)
    return Candidates(
        image_ids=np.array([r[0] for r in rows], dtype=np.int64),
        cosines={part: np.array([r[1 + j] for r in rows], dtype=np.float32) for j, part in enumerate(parts)},
        rows={r[0]: _row(r[1 + n_parts :]) for r in rows},
    )


# (album, model_id) -> (the width of its vectors there, the rows of the album's own graph, whether that
# graph orders by inner product, when read): the width is fixed by the weights the model_id names; the
# graph is looked at again every few minutes (albums grow, rebuilds replace graphs).
_dims: dict[tuple[int, str], tuple[int, int, bool, float]] = {}
_GRAPH_ROWS_TTL_S = 300.0


def _album_vectors(album_id: int, model: ModelId) -> tuple[int, int, bool] | None:
    key = (int(album_id), str(model))
    known = _dims.get(key)
    if known is None or time.monotonic() - known[3] > _GRAPH_ROWS_TTL_S:
        with connection.cursor() as cursor:
            # reltuples: the planner's row count of the graph (set when it is built), no scan; an
            # invalid graph (a build that was interrupted) is no graph.
            cursor.execute(
                "SELECT e.dim, g.rows, g.inner_product FROM search_embedding e LEFT JOIN LATERAL ("
                "  SELECT greatest(c.reltuples, 0)::bigint AS rows, o.opcname IN ('vector_ip_ops', 'halfvec_ip_ops') "
                "  AS inner_product FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
                "  JOIN pg_opclass o ON o.oid = i.indclass[0] WHERE c.relname = %s || e.dim AND i.indisvalid) g ON true "
                "WHERE e.album_id = %s AND e.model_id = %s LIMIT 1",
                [album_index_prefix(album_id, key[1]), int(album_id), key[1]])
            row = cursor.fetchone()
        if row is None:
            return None
        if len(_dims) > 4096:
            _dims.clear()
        known = _dims[key] = (int(row[0]), int(row[1] or 0), bool(row[2]), time.monotonic())
    return known[0], known[1], known[2]


def album_graph_in_use(*, album_id: int, model: ModelId) -> bool:
    """Whether the album has its own inner-product graph under the model, which its kNN then orders
    by (an album graph of cosine, built before, still serves through the model's operator)."""
    found = _album_vectors(album_id, model)
    return found is not None and found[2]


def model_dim(*, album_id: int, model: ModelId) -> int | None:
    """The width of the album's vectors under the model (for the index expression), remembered per
    process; None when the album holds none under it."""
    found = _album_vectors(album_id, model)
    return None if found is None else found[0]


def album_graph_rows(*, album_id: int, model: ModelId) -> int:
    """About how many rows the album's own graph holds (0 without one: a small album, scanned exactly),
    remembered per process for a few minutes."""
    found = _album_vectors(album_id, model)
    return 0 if found is None else found[1]


def stored_query_vector(*, user: AbstractBaseUser, image_id: int, model: ModelId) -> tuple[bool, np.ndarray | None]:
    """Whether the user may use the image as a query (a member of its album) and, if so, its stored
    vector under the model (None when it has none yet): one statement."""
    if not user.is_authenticated:
        return False, None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT e.vector FROM search_embedding e WHERE e.image_id = i.id AND e.model_id = %s) "
            "FROM albums_image i WHERE i.id = %s AND i.album_id IN "
            "(SELECT m.album_id FROM albums_albummembership m WHERE m.user_id = %s)",
            [str(model), int(image_id), int(user.pk)],
        )
        row = cursor.fetchone()
    if row is None:
        return False, None
    return True, None if row[0] is None else _vector_from_text(row[0])


def album_images_mean_vector(*, album_id: int, model: ModelId, image_ids: tuple[int, ...]) -> np.ndarray | None:
    """The mean of the stored vectors of those of the album's images that have one under the model,
    averaged in PostgreSQL (pgvector's avg): a selection of thousands never crosses the wire. None
    when none of them has a vector."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT avg(vector)::text FROM search_embedding WHERE album_id = %s AND model_id = %s "
                       "AND image_id = ANY(%s)", [album_id, str(model), list(image_ids)])
        (mean,) = cursor.fetchone()
    return None if mean is None else _vector_from_text(mean)


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


def region_matches(*, album_id: int, model: ModelId, query: np.ndarray, limit: int,
                   exclude_image_ids: tuple[int, ...] = (), only: LabelRestriction | None = None) -> RegionMatches:
    """Images ranked by their best region (max-sim of the query against each of their region tokens).

    As for whole-image search: the region tokens nearest the query propose candidate images through
    the model's HNSW index on search_regionembedding (iterative scan; PostgreSQL sorts exactly for a
    small album instead), then every region of each candidate is scored exactly and the best kept.
    An image has 12 regions, so twice k' region rows are proposed (× the binary oversampling)."""
    dim = int(np.asarray(query).shape[-1])
    storage = model.storage
    k = candidate_count(limit)
    n_rows = 2 * proposals_per_part(model, k)
    statement = sql.SQL(
        "WITH near AS (SELECT image_id FROM search_regionembedding WHERE album_id = %s AND model_id = {model_id}{only} "
        "  ORDER BY {expr} {op} {query} LIMIT %s), "
        "best AS (SELECT DISTINCT ON (r.image_id) r.image_id, r.cell, -(r.vector <#> %s::vector) AS score "
        "  FROM search_regionembedding r WHERE r.model_id = {model_id} "
        "  AND r.image_id IN (SELECT image_id FROM near) AND NOT (r.image_id = ANY(%s)) "
        "  ORDER BY r.image_id, r.vector <#> %s::vector, r.cell) "
        "SELECT b.image_id, b.score, b.cell, i.original_name, i.width, i.height, i.taken_at, {labels} "
        "FROM best b JOIN albums_image i ON i.id = b.image_id ORDER BY b.score DESC, b.image_id LIMIT %s"
    ).format(labels=labels_json(), model_id=sql.Literal(str(model)), expr=index_expression(dim, storage), op=distance_operator(dim, storage),
             query=query_operand(dim, storage), only=restricted_to(only, "image_id"))
    q = _to_db(np.asarray(query, dtype=np.float32))
    with hnsw_settings(ef_search=ef_search(n_rows), max_scan_tuples=max(20_000, 4 * n_rows)) as cursor:
        cursor.execute(statement.as_string(cursor.connection),
                       [album_id, q, n_rows, q, list(exclude_image_ids), q, int(limit)])
        rows = cursor.fetchall()
    return RegionMatches(
        image_ids=np.array([r[0] for r in rows], dtype=np.int64),
        cosines=np.array([r[1] for r in rows], dtype=np.float32),
        cells=np.array([r[2] for r in rows], dtype=np.int64),
        rows={r[0]: _row(r[3:]) for r in rows},
    )


def _text_vector(values: np.ndarray) -> str:
    return "[" + ",".join(repr(float(v)) for v in values) + "]"


def concept_candidates(
    *,
    album_id: int,
    model: ModelId,
    concepts: dict[str, np.ndarray],
    image: np.ndarray | None,
    weights,
    limit: int,
    exclude_image_ids: tuple[int, ...] = (),
    only: LabelRestriction | None = None,
) -> Candidates:
    """Word queries on a classifier-head encoder (encoders/concepts.py): the album's images ranked by
    the score-space combination (search/scoring.py: combine) of their probability mass on each word
    part's classes (`concepts`: part → (1000,) 0/1 indicator, so the inner product is the mass) and,
    when given, the cosine with the query image. An exact scan of the album's rows under the model,
    in PostgreSQL: 1,000 halfvec products per image, no index (the masses are not a metric space).
    The best `limit` come back with each part's value, for combine to score again in Python."""
    parts = sorted([*concepts, *(["image"] if image is not None else [])])
    values = {part: sql.SQL("-(c.probabilities <#> %s::halfvec)") for part in concepts}
    if image is not None:
        values["image"] = sql.SQL("-(e.vector <#> %s::vector)")
    positive = [p for p in ("image", "text") if p in values and getattr(weights, p) > 0]
    total = sum(getattr(weights, p) for p in positive) or 1.0
    score = sql.SQL(" + ").join(sql.SQL("{} * {}").format(sql.Literal(getattr(weights, p) / total), sql.Identifier(p))
                                for p in positive)
    if "negative" in values and weights.negative > 0:
        score = sql.SQL("{} - {} * negative").format(score, sql.Literal(float(weights.negative)))
    statement = sql.SQL(
        "SELECT image_id, {parts}, original_name, width, height, taken_at, {labels} FROM ("
        "SELECT c.image_id, {values}, i.original_name, i.width, i.height, i.taken_at, i.album_id "
        "FROM workers_imageconcepts c JOIN albums_image i ON i.id = c.image_id {join} "
        "WHERE c.album_id = %s AND c.model_id = %s AND NOT (c.image_id = ANY(%s)){only}) AS scored "
        "ORDER BY {score} DESC, image_id LIMIT %s"
    ).format(
        parts=sql.SQL(", ").join(sql.Identifier(p) for p in parts),
        values=sql.SQL(", ").join(sql.SQL("{} AS {}").format(values[p], sql.Identifier(p)) for p in parts),
        join=sql.SQL("JOIN search_embedding e ON e.image_id = c.image_id AND e.model_id = c.model_id")
        if image is not None else sql.SQL(""),
        score=score, only=restricted_to(only, "c.image_id"),
        labels=labels_json(image_id="scored.image_id", album_id="scored.album_id"),
    )
    params = [_text_vector(concepts[p]) if p in concepts else _text_vector(image) for p in parts]
    params += [album_id, str(model), list(map(int, exclude_image_ids)), int(limit)]
    with connection.cursor() as cursor:
        cursor.execute(statement.as_string(cursor.connection), params)
        return _candidates(cursor.fetchall(), parts)


def album_has_concepts(*, album_id: int, model: ModelId) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM workers_imageconcepts WHERE album_id = %s AND model_id = %s)",
                       [album_id, str(model)])
        return bool(cursor.fetchone()[0])
