"""The bad-input corpus through the real upload API: every file gets its own clear outcome, and the
good files sent beside the bad ones are stored — nothing else is lost. Fast: no worker."""

from __future__ import annotations

import io

import pytest
from django.core.files.storage import default_storage

from albums.models import Image
from tests.reliability.corpus import UPLOAD_LIMIT, Case, corpus
from workers.services import image_process_metadata

pytestmark = pytest.mark.django_db

CASES = corpus()
REJECTED = [c for c in CASES if c.status == "rejected"]
CREATED = [c for c in CASES if c.status == "created"]


def _file(case: Case) -> io.BytesIO:
    f = io.BytesIO(case.data)
    f.name = case.name
    return f


def _upload(client, album_id: int, cases: list[Case]):
    return client.post(f"/api/v1/albums/{album_id}/images/", {"files": [_file(c) for c in cases]}, format="multipart")


@pytest.fixture
def corpus_limits(settings):
    settings.LOUPE_MAX_UPLOAD_BYTES = UPLOAD_LIMIT


def test_corpus_has_at_least_30_kinds():
    assert len(CASES) >= 30
    assert {c.status for c in CASES} == {"created", "duplicate", "rejected"}


@pytest.mark.parametrize("case", REJECTED, ids=[c.kind for c in REJECTED])
def test_each_bad_file_is_rejected_with_its_code_beside_a_good_one(case, alice, album, client_for, corpus_limits):
    good = Case("neighbour", "neighbour.jpg", next(c for c in CASES if c.kind == "good").data, "created")
    response = _upload(client_for(alice), album.pk, [case, good])
    assert response.status_code == 201, response.content
    results = response.json()["results"]
    assert len(results) == 2, "every file sent gets a result"
    bad = next(r for r in results if r["name"] != "neighbour.jpg")
    assert (bad["status"], bad["code"]) == ("rejected", case.code), bad
    assert bad["reason"] and bad["image_id"] is None
    stored = Image.objects.get(album=album)
    assert stored.original_name == "neighbour.jpg"
    assert default_storage.exists(stored.file.name)


def test_the_whole_corpus_in_one_request(alice, album, client_for, corpus_limits):
    """All kinds at once, in one multipart request: one result per file in order, each as expected."""
    response = _upload(client_for(alice), album.pk, list(CASES))
    assert response.status_code == 201, response.content
    body = response.json()
    # The oversized file is dropped while streaming and reported first; the rest keep their order.
    oversized = [c for c in CASES if c.code == "file_too_large"]
    expected = oversized + [c for c in CASES if c.code != "file_too_large"]
    assert len(body["results"]) == len(expected)
    mismatches = [
        (case.kind, result["status"], result["code"])
        for case, result in zip(expected, body["results"])
        if (result["status"], result["code"] if case.status == "rejected" else "") != (case.status, case.code)
    ]
    assert not mismatches, mismatches
    counts = (body["created"], body["duplicates"], body["rejected"])
    assert counts == (len(CREATED), sum(c.status == "duplicate" for c in CASES), len(REJECTED))
    assert Image.objects.filter(album=album).count() == len(CREATED)
    for case, result in zip(expected, body["results"]):
        if case.status == "created":
            image = Image.objects.get(pk=result["image_id"])
            assert image.original_name == (case.stored_name or case.name[:255])
            assert image.file.name.startswith(f"albums/{album.pk}/") and ".." not in image.file.name
            assert image.bytes == len(case.data)


def test_created_files_get_metadata_and_upright_thumbnails(alice, album, client_for, corpus_limits):
    """The metadata step (the worker's service, run here in-process) reads every accepted file: EXIF
    orientations 1–8 give upright sizes, broken EXIF is ignored, first frames of animations are used."""
    response = _upload(client_for(alice), album.pk, CREATED)
    ids = {r["name"]: r["image_id"] for r in response.json()["results"]}
    assert len(ids) == len(CREATED)
    outcome = image_process_metadata(image_ids=list(ids.values()))
    assert outcome == {"done": len(CREATED), "failed": 0}
    for case in CREATED:
        image = Image.objects.get(pk=ids[case.stored_name or case.name[:255]])
        assert image.status == "pending" and image.failure_reason == ""
        assert image.thumbnail and default_storage.exists(image.thumbnail.name)
        if case.upright_size:
            assert (image.width, image.height) == case.upright_size, case.kind


def test_too_many_files_in_one_request_is_413_and_stores_nothing(alice, album, client_for, settings):
    settings.LOUPE_MAX_FILES_PER_REQUEST = settings.DATA_UPLOAD_MAX_NUMBER_FILES = 4
    response = _upload(client_for(alice), album.pk, CREATED[:5])
    assert response.status_code == 413
    assert response.json() == {
        "message": "Too many files in one request; send at most 4.", "code": "too_many_files", "extra": {"max_files": 4}
    }
    assert not Image.objects.filter(album=album).exists()
