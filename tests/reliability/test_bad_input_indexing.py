"""The corpus's accepted files through a real Celery worker and a tiny real encoder: every one is
indexed once; files damaged on disk after upload are marked failed with a reason, and the rest of
the album still indexes."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage
from django.db import transaction

from albums import services
from albums.models import Image
from workers.models import Embedding
from tests.conftest import wait_for
from tests.reliability.corpus import UPLOAD_LIMIT, corpus
from tests.tiny_models import OPEN_CLIP_TINY
from workers.models import IndexJob

pytestmark = pytest.mark.slow


def _settled(album) -> bool:
    statuses = set(Image.objects.filter(album=album).values_list("status", flat=True))
    active = IndexJob.objects.filter(album=album, status__in=IndexJob.ACTIVE_STATUSES).exists()
    return not active and "pending" not in statuses


def test_accepted_corpus_indexes_and_files_damaged_after_upload_fail_with_a_reason(worker, alice, settings):
    settings.LOUPE_MAX_UPLOAD_BYTES = UPLOAD_LIMIT
    album = services.album_create(owner=alice, name="corpus", encoder_spec=OPEN_CLIP_TINY)
    accepted = [c for c in corpus() if c.status == "created"]
    with transaction.atomic():
        results = services.image_upload_many(
            album=album, user=alice, files=[(c.name, io.BytesIO(c.data)) for c in accepted]
        )
        assert [r.status for r in results] == ["created"] * len(accepted)
        # Damage two stored files before the worker sees them (after commit): one cut short, one gone.
        truncated, missing = (Image.objects.get(pk=r.image_id) for r in results[:2])
        with default_storage.open(truncated.file.name, "rb") as fp:
            head = fp.read(40)
        with open(default_storage.path(truncated.file.name), "wb") as fp:
            fp.write(head)
        default_storage.delete(missing.file.name)

    wait_for(lambda: _settled(album), timeout=120, what="metadata and indexing to settle")
    damaged = {truncated.pk, missing.pk}
    for image in Image.objects.filter(album=album):
        if image.pk in damaged:
            assert image.status == "failed" and image.failure_reason, image.pk
            assert not Embedding.objects.filter(image=image).exists()
        else:
            assert (image.status, image.failure_reason) == ("indexed", ""), (image.original_name, image.failure_reason)
    rows = list(Embedding.objects.filter(album=album).values_list("image_id", flat=True))
    assert sorted(rows) == sorted(r.image_id for r in results if r.image_id not in damaged)  # one each
    assert "missing" in Image.objects.get(pk=missing.pk).failure_reason
    job = IndexJob.objects.filter(album=album).order_by("-pk").first()
    assert job.status == IndexJob.Status.SUCCEEDED, job.message
