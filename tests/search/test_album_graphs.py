"""Albums past a size get an HNSW graph of their own (workers/vector_store.py: album_graph_ensure),
built by the indexing job before the switch, used by search, and dropped when it serves nothing."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from albums import services as album_services
from albums.models import Album, Image
from bench.search_data import ClusteredSpace
from encoders.model_ids import parse_model_id
from search.selectors import _nearest_sql, search_candidates
from workers.vector_store import album_graph_ensure, album_graphs_prune, album_index_name, embeddings_insert
from workers.indexing import index_job_finish
from workers.models import IndexJob
from workers.recovery import resume_pending_work

MODEL = "dense:tests-graph@sha256:0000000000000096"
OTHER = "dense:tests-graph-2@sha256:0000000000000096"
DIM, N = 96, 600


@pytest.fixture
def big_album(alice, transactional_db, settings):
    settings.LOUPE_ALBUM_GRAPH_MIN_ROWS = 500

    def make(name: str, n: int = N, model_id: str = MODEL):
        album = album_services.album_create(owner=alice, name=name)
        images = Image.objects.bulk_create(
            Image(album=album, file=f"{i}.png", original_name=f"{i}.png", sha256=f"{album.pk:08d}{i:056d}", bytes=1,
                  mime="image/png", status="indexed")
            for i in range(n)
        )
        ids = np.array([image.pk for image in images])
        vectors, _ = ClusteredSpace.make(DIM, n_clusters=40, seed=2).sample(n, np.random.default_rng(album.pk))
        embeddings_insert(model_id=model_id, image_ids=ids.tolist(), vectors=vectors)
        Album.objects.filter(pk=album.pk).update(active_model_id=model_id)
        return Album.objects.get(pk=album.pk), ids, vectors

    # Indexes are DDL: the flush between tests leaves them. Start and end with none left over.
    album_graphs_prune()
    yield make
    Album.objects.all().delete()
    album_graphs_prune()


def _index_names() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'search_embedding'")
        return {row[0] for row in cursor.fetchall()}


def _plan(album: Album, query: np.ndarray, k: int = 50, album_graph: bool = True) -> str:
    statement = _nearest_sql(album_id=album.pk, model=parse_model_id(album.active_model_id), dim=DIM, album_graph=album_graph)
    with connection.cursor() as cursor:
        cursor.execute("SET enable_sort = off")  # a small table: make the planner show it can use the graph
        cursor.execute("EXPLAIN " + statement.as_string(cursor.connection)[1:-1],
                       ["[" + ",".join(map(str, query.tolist())) + "]", k])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("RESET enable_sort")
    return plan


def test_small_albums_keep_an_exact_scan_and_large_ones_get_their_own_graph(big_album):
    small, _, _ = big_album("small", n=100)
    large, ids, vectors = big_album("large")
    assert album_graph_ensure(album_id=small.pk, model_id=MODEL, dim=DIM) is None
    name = album_graph_ensure(album_id=large.pk, model_id=MODEL, dim=DIM)
    assert name == album_index_name(large.pk, MODEL, DIM) and name in _index_names()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_indexdef(%s::regclass)", [name])
        definition = cursor.fetchone()[0]
    assert f"album_id = {large.pk}" in definition and MODEL in definition and "hnsw" in definition
    assert "vector_ip_ops" in definition and "m='16'" in definition  # inner product; below the large size

    assert name in _plan(large, vectors[0])
    assert name not in _plan(small, vectors[0])
    # Through the graph, the album's own nearest rows, and none of another album's.
    candidates = search_candidates(album_id=large.pk, model=parse_model_id(MODEL), queries={"image": vectors[7]}, k=50)
    exact = ids[np.argsort(-(vectors @ vectors[7]), kind="stable")[:10]]
    found = candidates.image_ids[np.argsort(-candidates.cosines["image"], kind="stable")[:10]]
    assert set(found) == set(exact)
    assert set(candidates.image_ids) <= set(ids)


def test_the_indexing_job_builds_the_graph_before_the_switch_and_drops_the_old_models(big_album):
    album, ids, vectors = big_album("rebuilt")
    album_graph_ensure(album_id=album.pk, model_id=MODEL, dim=DIM)
    embeddings_insert(model_id=OTHER, image_ids=ids.tolist(), vectors=vectors[::-1].copy())
    job = IndexJob.objects.create(album=album, kind=IndexJob.Kind.REBUILD, status=IndexJob.Status.RUNNING,
                                  generation=album.generation, model_id=OTHER, total=len(ids), done=len(ids))

    index_job_finish(job_id=job.pk)

    job.refresh_from_db()
    album.refresh_from_db()
    assert job.status == IndexJob.Status.SUCCEEDED and album.active_model_id == OTHER
    names = _index_names()
    assert album_index_name(album.pk, OTHER, DIM) in names
    assert album_index_name(album.pk, MODEL, DIM) not in names  # dropped after the switch


def test_the_recovery_sweep_drops_graphs_of_deleted_albums(big_album):
    kept, _, _ = big_album("kept")
    gone, _, _ = big_album("gone")
    for album in (kept, gone):
        album_graph_ensure(album_id=album.pk, model_id=MODEL, dim=DIM)
    gone_name = album_index_name(gone.pk, MODEL, DIM)
    gone.delete()
    assert gone_name in _index_names()

    assert resume_pending_work()["album_graphs_dropped"] == [gone_name]
    names = _index_names()
    assert gone_name not in names and album_index_name(kept.pk, MODEL, DIM) in names
    assert album_graphs_prune() == []


def test_a_stored_image_query_reads_the_graph_and_ranks_as_the_exact_scan(big_album, alice):
    """A stored image alone is one statement whose kNN orders by the stored vector (an InitPlan) on
    the album's graph, and takes only max_results rows: the same hits, in the same order and with the
    same scores, as the exact ranking and as k' = 200."""
    from django.test.utils import CaptureQueriesContext

    from search import selectors, services
    from search.scoring import Weights

    large, ids, vectors = big_album("large")
    name = album_graph_ensure(album_id=large.pk, model_id=MODEL, dim=DIM)
    query = services.SearchQuery(image_id=int(ids[7]), weights=Weights(image=1, text=0, negative=0), min_score=-1,
                                 max_results=20, page_size=20)
    with CaptureQueriesContext(connection) as captured:
        result = services.album_search(user=alice, album=large, query=query)
    execute = captured.captured_queries[-1]["sql"]  # as served: a statement prepared once per connection
    assert execute.startswith("EXECUTE loupe_")
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements WHERE name = %s", [execute[8:execute.index("(")]])
        statement = cursor.fetchone()[0].split(" AS ", 1)[1]
        cursor.execute("SET enable_sort = off")  # a small table: make the planner show it can use the graph
        cursor.execute("PREPARE again (bigint, bigint, bigint[]) AS " + statement)
        cursor.execute("EXPLAIN EXECUTE again" + execute[execute.index("(") :])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("DEALLOCATE again")
        cursor.execute("RESET enable_sort")
    assert "LIMIT 20" in statement and "albums_albummembership" in statement
    assert name in plan and "InitPlan" in plan

    cosines = vectors @ vectors[7]
    exact = np.lexsort((ids, -cosines))[:20]
    assert [hit.image_id for hit in result.hits] == ids[exact].tolist()
    assert [hit.score for hit in result.hits] == [round(float(c), 4) for c in cosines[exact]]
    deep = search_candidates(album_id=large.pk, model=parse_model_id(MODEL), queries={"image": vectors[7]}, k=200)
    top = np.lexsort((deep.image_ids, -deep.cosines["image"]))[:20]
    assert deep.image_ids[top].tolist() == ids[exact].tolist()
    assert selectors.single_part_depth(parse_model_id(MODEL), DIM, 20) == 20
    assert selectors.single_part_depth(parse_model_id(MODEL + "+storage=binary"), DIM, 20) == 200  # a proxy index


def test_ef_search_follows_the_size_of_the_album_graph(big_album, alice, monkeypatch):
    """A query of one part on an album graph of up to SHALLOW_EF_MAX_ROWS reads it at ef_search 200
    (bench.ef_sweep: recall@10 1.000 there for image- and text-like queries); on a larger graph, at
    the multi-part depth's 400. The graph's size is the planner's row count of the index."""
    from django.test.utils import CaptureQueriesContext

    from search import selectors, services
    from search.scoring import Weights

    large, ids, vectors = big_album("sized")
    album_graph_ensure(album_id=large.pk, model_id=MODEL, dim=DIM)
    monkeypatch.setattr(selectors, "_dims", {})
    model = parse_model_id(MODEL)
    assert selectors.album_graph_rows(album_id=large.pk, model=model) == N
    assert selectors.model_dim(album_id=large.pk, model=model) == DIM

    def ef_of(query: services.SearchQuery) -> str:
        connection.ensure_connection()
        connection.connection._loupe_hnsw_settings = None  # set again, so that it shows
        with CaptureQueriesContext(connection) as captured:
            services.album_search(user=alice, album=large, query=query)
        settings_sql = next(q["sql"] for q in captured.captured_queries if "hnsw.ef_search" in q["sql"])
        return settings_sql.split("'hnsw.ef_search', '", 1)[1].split("'", 1)[0]

    stored = services.SearchQuery(image_id=int(ids[7]), weights=Weights(image=1, text=0, negative=0), min_score=-1,
                                  max_results=20, page_size=20)
    assert ef_of(stored) == "200"
    assert selectors.single_part_ef_depth(20, graph_rows=N) == selectors.SHALLOW_EF_DEPTH
    assert selectors.single_part_ef_depth(300, graph_rows=0) == 300
    assert selectors.single_part_ef_depth(20, graph_rows=10**6) == selectors.candidate_count(20)
    monkeypatch.setattr(selectors, "SHALLOW_EF_MAX_ROWS", N - 1)
    assert ef_of(stored) == "400"


def test_a_large_albums_own_graph_serves_it_even_beside_the_models_graph(big_album, settings, monkeypatch):
    """Both graphs hold the album's rows; for an album that is most of the table the planner chose the
    model's (recall@10 0.987 at 1M against 0.996 on the album's own). The album graph orders by inner
    product, and the search names that operator once the album has one: no other index can serve it.
    From LOUPE_ALBUM_GRAPH_LARGE_ROWS rows it is built with more links (m 32, ef_construction 200)."""
    from search import selectors
    from workers.vector_store import hnsw_index_ensure, index_name

    settings.LOUPE_ALBUM_GRAPH_LARGE_ROWS = N
    large, ids, vectors = big_album("most of the table")
    model_graph = hnsw_index_ensure(model_id=MODEL, dim=DIM)
    try:
        monkeypatch.setattr(selectors, "_dims", {})
        model = parse_model_id(MODEL)
        assert not selectors.album_graph_in_use(album_id=large.pk, model=model)  # no graph of its own yet
        name = album_graph_ensure(album_id=large.pk, model_id=MODEL, dim=DIM)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_get_indexdef(%s::regclass)", [name])
            definition = cursor.fetchone()[0]
        assert "vector_ip_ops" in definition and "m='32'" in definition and "ef_construction='200'" in definition
        monkeypatch.setattr(selectors, "_dims", {})
        assert selectors.album_graph_in_use(album_id=large.pk, model=model)
        plan = _plan(large, vectors[3])
        assert name in plan and model_graph not in plan
        # Through the product's own statement: the album's nearest rows, found on its graph.
        candidates = search_candidates(album_id=large.pk, model=model, queries={"image": vectors[3]}, k=20)
        exact = ids[np.argsort(-(vectors @ vectors[3]), kind="stable")[:10]]
        found = candidates.image_ids[np.argsort(-candidates.cosines["image"], kind="stable")[:10]]
        assert set(found) == set(exact)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP INDEX IF EXISTS "{index_name(MODEL, DIM)}"')
