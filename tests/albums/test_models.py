import numpy as np
import pytest
from django.db import IntegrityError, transaction

from albums.models import AlbumMembership, Image
from workers.models import Embedding
from workers.models import IndexJob

pytestmark = pytest.mark.django_db


def _image(album, sha="a" * 64, **extra):
    return Image.objects.create(album=album, file="x.jpg", original_name="x.jpg", sha256=sha, bytes=1, mime="image/jpeg", **extra)


def test_one_membership_per_album_and_user(album, alice):
    with pytest.raises(IntegrityError), transaction.atomic():
        AlbumMembership.objects.create(album=album, user=alice, role="viewer")


def test_role_must_be_known(album, bob):
    with pytest.raises(IntegrityError), transaction.atomic():
        AlbumMembership.objects.create(album=album, user=bob, role="superuser")


def test_sha256_unique_per_album_not_globally(album, alice):
    from albums.services import album_create

    _image(album)
    with pytest.raises(IntegrityError), transaction.atomic():
        _image(album)
    _image(album_create(owner=alice, name="other"))  # another album may hold the same bytes
    assert Image.objects.count() == 2


def test_failed_image_needs_a_reason(album):
    with pytest.raises(IntegrityError), transaction.atomic():
        _image(album, status="failed", failure_reason="")
    assert _image(album, sha="b" * 64, status="failed", failure_reason="corrupt").pk


def test_embeddings_of_any_dimension_one_per_image_and_model(album):
    image = _image(album)
    Embedding.objects.create(image=image, album=album, model_id="m512", dim=512, vector=np.ones(512, dtype=np.float32))
    Embedding.objects.create(image=image, album=album, model_id="m768", dim=768, vector=np.ones(768, dtype=np.float32))
    stored = Embedding.objects.get(model_id="m768")
    assert len(stored.vector) == 768
    with pytest.raises(IntegrityError), transaction.atomic():
        Embedding.objects.create(image=image, album=album, model_id="m512", dim=512, vector=np.zeros(512, dtype=np.float32))
    image.delete()
    assert not Embedding.objects.exists()


def test_job_counters_stay_consistent(album):
    with pytest.raises(IntegrityError), transaction.atomic():
        IndexJob.objects.create(album=album, kind="index", total=1, done=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        IndexJob.objects.create(album=album, kind="index", total=3, done=1, failed=2)
    job = IndexJob.objects.create(album=album, kind="index", total=4, done=1)
    assert job.progress == 0.25
