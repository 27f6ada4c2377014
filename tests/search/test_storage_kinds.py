"""Storage kinds (workers/vector_store.py): what each index holds, and recall through Loupe's candidate
path on synthetic clustered vectors, with the planner pushed onto the HNSW index."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from albums import services
from albums.models import Image
from bench.search_data import ClusteredSpace
from encoders.model_ids import compose_model_id, parse_model_id
from search import selectors
from workers.models import Embedding
from search.selectors import search_candidates
from workers.vector_store import embeddings_insert, hnsw_index_ensure, index_name

BASE = "dense:tests-synthetic@sha256:000000000128"
DIM, N = 128, 1500


@pytest.fixture
def stored(alice, transactional_db):
    album = services.album_create(owner=alice, name="synthetic")
    rng = np.random.default_rng(0)
    space = ClusteredSpace.make(DIM, n_clusters=60, seed=1)
    vectors, _ = space.sample(N, rng)
    images = Image.objects.bulk_create(
        Image(album=album, file=f"{i}.png", original_name=f"{i}.png", sha256=f"{i:064d}", bytes=1, mime="image/png",
              status="indexed")
        for i in range(N)
    )
    ids = np.array([image.pk for image in images], dtype=np.int64)
    model_ids = {kind: compose_model_id(BASE, storage=kind) for kind in ("vector", "halfvec", "binary")}
    for model_id in model_ids.values():
        embeddings_insert(model_id=model_id, image_ids=ids.tolist(), vectors=vectors)
        hnsw_index_ensure(model_id=model_id, dim=DIM)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE search_embedding")
    return album, ids, vectors, model_ids, space


def test_each_kind_indexes_its_own_form_and_round_trips(stored):
    _, _, _, model_ids, _ = stored
    with connection.cursor() as cursor:
        definitions = {}
        for kind, model_id in model_ids.items():
            cursor.execute("SELECT pg_get_indexdef(%s::regclass)", [index_name(model_id, DIM)])
            definitions[kind] = cursor.fetchone()[0]
    assert "vector_cosine_ops" in definitions["vector"] and "halfvec" not in definitions["vector"]
    assert "halfvec(128)" in definitions["halfvec"] and "halfvec_cosine_ops" in definitions["halfvec"]
    assert "binary_quantize" in definitions["binary"] and "bit_hamming_ops" in definitions["binary"]

    # What those forms hold, round-tripped: a sign bit per dimension; float16 of each component.
    _, ids, vectors, model_ids, _ = stored
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT image_id, binary_quantize(vector::vector(128))::bit(128)::text, (vector::halfvec(128))::vector::text "
            "FROM search_embedding WHERE model_id = %s ORDER BY image_id LIMIT 50",
            [model_ids["binary"]],
        )
        rows = cursor.fetchall()
    by_id = dict(zip(ids.tolist(), vectors))
    for image_id, bits, half in rows:
        assert bits == "".join("1" if x > 0 else "0" for x in by_id[image_id])  # one sign bit per dimension
        restored = np.array([float(x) for x in half.strip("[]").split(",")], dtype=np.float32)
        np.testing.assert_allclose(restored, by_id[image_id].astype(np.float16).astype(np.float32), atol=0)
    # The stored column itself stays float32 for every kind: re-scores are exact.
    stored_vector = np.asarray(Embedding.objects.get(image_id=ids[0], model_id=model_ids["binary"]).vector, dtype=np.float32)
    np.testing.assert_array_equal(stored_vector, vectors[0])


def _recall_and_exactness(album, ids, vectors, model_id, queries, k):
    recalls = []
    for query in queries:
        candidates = search_candidates(album_id=album.pk, model=parse_model_id(model_id), queries={"image": query}, k=k)
        by_id = dict(zip(ids.tolist(), vectors))
        expected_cos = np.array([by_id[i] @ query for i in candidates.image_ids.tolist()], dtype=np.float32)
        np.testing.assert_allclose(candidates.cosines["image"], expected_cos, atol=1e-5)  # re-scored in float32
        got = candidates.image_ids[np.lexsort((candidates.image_ids, -candidates.cosines["image"]))][:10]
        truth = ids[np.lexsort((ids, -(vectors @ query)))][:10]
        recalls.append(len(set(got.tolist()) & set(truth.tolist())) / 10)
    return float(np.mean(recalls))


def test_recall_through_each_index_and_binary_oversampling(stored, monkeypatch):
    album, ids, vectors, model_ids, space = stored
    queries = space.queries(40, seed=3)["image"]
    with connection.cursor() as cursor:
        # A 1,500-row album would otherwise be scanned exactly; push the planner onto the HNSW index.
        cursor.execute("SET enable_sort = off")
        cursor.execute(
            "EXPLAIN SELECT id FROM search_embedding WHERE album_id = %s AND model_id = %s "
            "ORDER BY binary_quantize(vector::vector(128))::bit(128) <~> binary_quantize(%s::vector(128))::bit(128) LIMIT 10",
            [album.pk, model_ids["binary"], str(queries[0].tolist())],
        )
        assert index_name(model_ids["binary"], DIM) in "\n".join(r[0] for r in cursor.fetchall())
    try:
        k = 20  # few candidates on a small album, so the index's approximation shows
        recall = {kind: _recall_and_exactness(album, ids, vectors, model_id, queries, k) for kind, model_id in model_ids.items()}
        monkeypatch.setattr(selectors, "BINARY_OVERSAMPLE", 1)
        binary_plain = _recall_and_exactness(album, ids, vectors, model_ids["binary"], queries, k)
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_sort")
    assert recall["vector"] >= 0.95 and recall["halfvec"] >= recall["vector"] - 0.02
    # Hamming distance over sign bits ranks coarsely; oversampling buys the recall back.
    assert binary_plain < recall["binary"]
    assert recall["binary"] >= recall["vector"] - 0.05, recall


def test_region_matches_through_the_region_index_are_exact_max_sim_on_the_candidates(alice, transactional_db):
    from search.selectors import region_matches
    from workers.vector_store import region_index_name, regions_insert

    album = services.album_create(owner=alice, name="regions")
    n, cells, dim = 600, 12, 64
    space = ClusteredSpace.make(dim, n_clusters=40, seed=2)
    regions = space.sample(n * cells, np.random.default_rng(5))[0].reshape(n, cells, dim)
    images = Image.objects.bulk_create(
        Image(album=album, file=f"{i}.png", original_name=f"{i}.png", sha256=f"{i:064d}", bytes=1, mime="image/png")
        for i in range(n)
    )
    ids = np.array([image.pk for image in images], dtype=np.int64)
    model_id = compose_model_id("dense:tests-synthetic@sha256:000000000064", pooling="regions")
    regions_insert(model_id=model_id, image_ids=ids.tolist(), regions=regions)
    hnsw_index_ensure(model_id=model_id, dim=dim)
    queries = space.queries(20, seed=4)["image"]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE search_regionembedding")
        cursor.execute("SET enable_sort = off")  # a small album would otherwise be sorted exactly
    try:
        recalls = []
        for query in queries:
            got = region_matches(album_id=album.pk, model=parse_model_id(model_id), query=query, limit=10)
            sims = regions @ query  # (n, cells)
            best = sims.max(axis=1)
            np.testing.assert_allclose(got.cosines, best[np.searchsorted(ids, got.image_ids)], atol=1e-5)
            np.testing.assert_array_equal(got.cells, sims.argmax(axis=1)[np.searchsorted(ids, got.image_ids)])
            truth = ids[np.lexsort((ids, -best))][:10]
            recalls.append(len(set(got.image_ids.tolist()) & set(truth.tolist())) / 10)
        with connection.cursor() as cursor:
            cursor.execute(
                "EXPLAIN SELECT image_id FROM search_regionembedding WHERE album_id = %s AND model_id = %s "
                "ORDER BY (vector::vector(64)) <=> %s::vector(64) LIMIT 10",
                [album.pk, model_id, str(queries[0].tolist())],
            )
            plan = "\n".join(r[0] for r in cursor.fetchall())
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET enable_sort")
    assert region_index_name(model_id, dim) in plan
    assert np.mean(recalls) >= 0.95
