"""The same images give byte-identical vectors whatever the chunk size, micro-batch size, decode pool
kind and worker count. Runs the indexing services in this process (no broker) so each album can be
indexed under different settings."""

import io

import numpy as np
import pytest
from django.db import connection

from albums import services
from tests.images import image_bytes, jpeg_with_exif, noise_png
from tests.tiny_models import OPEN_CLIP_TINY
from workers import indexing
from workers.models import IndexJob

FILES = {
    "noise.png": noise_png(size=(70, 50), seed=1),
    "noise2.png": noise_png(size=(33, 90), seed=2),
    "photo.jpg": image_bytes("JPEG", size=(640, 480), color=(30, 140, 90)),
    "rotated.jpg": jpeg_with_exif(orientation=6, size=(300, 200)),
    "grey.png": image_bytes("PNG", size=(50, 50), mode="L", color=128),
    "alpha.png": image_bytes("PNG", size=(40, 40), mode="RGBA", color=(10, 200, 30, 100)),
    "tiny.gif": image_bytes("GIF", size=(8, 8), mode="P", color=3),
}


def _index_in_process(album, monkeypatch):
    monkeypatch.setattr(indexing, "dispatch_batches",
                        lambda job_id, batches: [indexing.index_batch_run(job_id=job_id, seq=s, image_ids=ids)
                                                 for s, ids in enumerate(batches)])
    monkeypatch.setattr(indexing, "_pool", None)
    job = IndexJob.objects.create(album=album, kind="index", generation=album.generation)
    try:
        indexing.index_job_run(job_id=job.pk)
    finally:
        if indexing._pool is not None:
            indexing._pool.shutdown(cancel_futures=True)
    job.refresh_from_db()
    assert job.status == "succeeded", job.message
    with connection.cursor() as cursor:
        # Bytes as stored: the binary send format of the vector column.
        cursor.execute(
            "SELECT i.sha256, vector_send(e.vector) FROM search_embedding e JOIN albums_image i ON i.id = e.image_id "
            "WHERE e.album_id = %s", [album.pk])
        return {sha: bytes(raw) for sha, raw in cursor.fetchall()}


@pytest.mark.parametrize(
    "second",
    [
        {"LOUPE_INDEX_CHUNK": 5, "LOUPE_ENCODE_BATCH_SIZE": 4, "LOUPE_DECODE_POOL": "process", "LOUPE_DECODE_WORKERS": 2},
        {"LOUPE_INDEX_CHUNK": 3, "LOUPE_ENCODE_BATCH_SIZE": 7, "LOUPE_DECODE_POOL": "thread", "LOUPE_DECODE_WORKERS": 3},
    ],
    ids=["process-pool", "thread-pool"],
)
def test_vectors_are_byte_identical_across_batching_and_workers(transactional_db, alice, settings, tiny_models_dir,
                                                                monkeypatch, second):
    settings.LOUPE_MODELS_DIR = tiny_models_dir
    settings.LOUPE_DEVICE = "cpu"
    # No background work: a session worker (other media root) must not touch these images.
    monkeypatch.setattr("workers.services.image_metadata_enqueue", lambda **kw: None)
    monkeypatch.setattr(indexing, "index_job_start", lambda **kw: (None, False))
    results = []
    for label, overrides in (("first", {"LOUPE_INDEX_CHUNK": 1, "LOUPE_ENCODE_BATCH_SIZE": 1,
                                        "LOUPE_DECODE_POOL": "thread", "LOUPE_DECODE_WORKERS": 1}), ("second", second)):
        for name, value in overrides.items():
            setattr(settings, name, value)
        album = services.album_create(owner=alice, name=label, encoder_spec=OPEN_CLIP_TINY)
        services.image_upload_many(album=album, user=alice, files=[(n, io.BytesIO(d)) for n, d in FILES.items()])
        results.append(_index_in_process(album, monkeypatch))
    first, other = results
    assert len(first) == len(FILES)
    assert first == other
    vector = np.frombuffer(next(iter(first.values()))[4:], dtype=">f4")  # after dim + unused int16s
    assert np.isclose(np.linalg.norm(vector), 1.0, atol=1e-5)
