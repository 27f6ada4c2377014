"""Vector rows are stored inline and uncompressed whenever they fit a page (search/migrations/0005).

Dense features are sparse (EfficientNet-Lite0's pooled 1,280 values are about half zeros), which
PostgreSQL's toaster compresses once a row passes its default ~2 KB target; every scan then
decompresses every row. These tests insert such vectors through the product's insert path and read
back how PostgreSQL stored them."""

from __future__ import annotations

import numpy as np
import pytest
from django.db import connection

from albums import services
from albums.models import Image
from workers.models import Embedding
from workers.vector_store import embeddings_insert, regions_insert

MODEL = "dense:tests-sparse@sha256:0000000000001280"


def _sparse_unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """Non-negative with half the components exactly zero, like pooled ReLU features."""
    rng = np.random.default_rng(seed)
    v = np.abs(rng.standard_normal((n, dim))).astype(np.float32)
    v[rng.random((n, dim)) < 0.5] = 0
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
def images(alice, db):
    album = services.album_create(owner=alice, name="layout")
    return Image.objects.bulk_create(
        Image(album=album, file=f"{i}.png", original_name=f"{i}.png", sha256=f"{i:064d}", bytes=1, mime="image/png")
        for i in range(6)
    )


def _layout(table: str, model_id: str) -> list[tuple[int, int, str | None]]:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT vector_dims(vector), pg_column_size(vector), pg_column_compression(vector) FROM {table} "
            "WHERE model_id = %s ORDER BY id",
            [model_id],
        )
        return cursor.fetchall()


@pytest.mark.parametrize("dim", [512, 1280, 1536])
def test_sparse_vectors_that_fit_a_page_are_inline_and_uncompressed(images, dim):
    vectors = _sparse_unit_vectors(len(images), dim)
    # The same rows in a table with PostgreSQL's default target are compressed: the case is real.
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMP TABLE default_target (id serial, model_id text, vector vector)")
        cursor.execute("ALTER TABLE default_target ALTER COLUMN vector SET STORAGE MAIN")
        cursor.executemany("INSERT INTO default_target (model_id, vector) VALUES (%s, %s::vector)",
                           [(MODEL, "[" + ",".join(map(repr, v.tolist())) + "]") for v in vectors])
    assert all(compression is not None for _, _, compression in _layout("default_target", MODEL))

    embeddings_insert(model_id=MODEL, image_ids=[i.pk for i in images], vectors=vectors)
    layout = _layout("search_embedding", MODEL)
    assert len(layout) == len(images)
    # pgvector's varlena: 4-byte header, 2-byte dim, 2 unused, then 4 bytes per component.
    assert layout == [(dim, 8 + 4 * dim, None)] * len(images)


def test_rows_too_wide_for_a_page_are_still_stored_and_read_back_exactly(images):
    dim = 2560  # over 8 KB as float32: PLAIN storage would refuse the row
    vectors = _sparse_unit_vectors(len(images), dim, seed=1)
    inserted = embeddings_insert(model_id=MODEL, image_ids=[i.pk for i in images], vectors=vectors)
    assert inserted == {i.pk for i in images}
    rows = Embedding.objects.filter(model_id=MODEL).order_by("image_id").values_list("vector", flat=True)
    stored = np.stack([np.asarray(vector, dtype=np.float32) for vector in rows])
    np.testing.assert_array_equal(stored, vectors)


def test_region_tokens_are_inline_and_uncompressed_too(images):
    regions = _sparse_unit_vectors(len(images) * 4, 1280, seed=2).reshape(len(images), 4, 1280)
    regions_insert(model_id=MODEL, image_ids=[i.pk for i in images], regions=regions)
    assert _layout("search_regionembedding", MODEL) == [(1280, 8 + 4 * 1280, None)] * (len(images) * 4)


def test_every_vector_table_has_the_page_sized_target(db):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, reloptions FROM pg_class WHERE relname = ANY(%s) ORDER BY relname",
            [["search_embedding", "search_regionembedding", "rag_patchembedding"]],
        )
        rows = cursor.fetchall()
    assert [name for name, _ in rows] == ["rag_patchembedding", "search_embedding", "search_regionembedding"]
    assert all(options == ["toast_tuple_target=8160"] for _, options in rows)
