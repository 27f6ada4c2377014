"""Bulk actions on a selection of an album's images: delete, download as a zip, copy to another album."""

import io
import json
import zipfile

import pytest
from django.core.files.storage import default_storage
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from albums import services
from albums.models import Album, Image
from albums.roles import Role
from tests.images import image_bytes, noise_png

pytestmark = pytest.mark.django_db


def add_images(album, user, *names, start=0) -> list[int]:
    """One distinct image per name (the same name may repeat), in order."""
    files = [(name, io.BytesIO(image_bytes(color=(start + i * 13 % 256, i % 256, 77)))) for i, name in enumerate(names)]
    results = services.image_upload_many(album=album, user=user, files=files)
    assert all(r.status == "created" for r in results), results
    return [r.image_id for r in results]


def post(client, path, body):
    return client.post(path, json.dumps(body), content_type="application/json")


@pytest.fixture
def bobs_album(bob):
    return services.album_create(owner=bob, name="Bob's")


# --- delete --------------------------------------------------------------------------------------------


def test_an_editor_deletes_a_selection_and_other_albums_images_are_only_reported(
        alice, bob, album, bobs_album, member_of, client_for, django_capture_on_commit_callbacks):
    a, b, c = add_images(album, alice, "a.jpg", "b.jpg", "c.jpg")
    [foreign] = add_images(bobs_album, bob, "theirs.jpg", start=100)
    names = {pk: (Image.objects.get(pk=pk).file.name) for pk in (a, b, c, foreign)}
    Image.objects.filter(pk=a).update(thumbnail=names[a] + ".thumb.webp")
    default_storage.save(names[a] + ".thumb.webp", io.BytesIO(b"thumb"))
    member_of(bob, Role.EDITOR)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client_for(bob).post(f"/api/v1/albums/{album.pk}/images/bulk-delete/",
                                        {"image_ids": [a, foreign, b, 10**9, a]}, format="json")
        assert response.status_code == 200, response.json()
        assert response.json() == {"deleted": 2, "missing": [foreign, 10**9]}
        assert default_storage.exists(names[a])  # files go only once the rows are gone for good
    for callback in callbacks:
        callback()
    assert set(Image.objects.values_list("pk", flat=True)) == {c, foreign}
    assert not default_storage.exists(names[a]) and not default_storage.exists(names[b])
    assert not default_storage.exists(names[a] + ".thumb.webp")
    assert default_storage.exists(names[c]) and default_storage.exists(names[foreign])


def test_bulk_delete_takes_its_vectors_and_masks_with_it(alice, album, client_for):
    import numpy as np

    from search import masks
    from workers.models import Embedding
    from workers.vector_store import embeddings_insert

    a, b = add_images(album, alice, "a.jpg", "b.jpg")
    embeddings_insert(model_id="m", image_ids=[a, b], vectors=np.eye(2, 4, dtype=np.float32))
    mask = masks.image_mask_set(image=Image.objects.get(pk=a), data=image_bytes(fmt="PNG", mode="L", color=200))
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/bulk-delete/", {"image_ids": [a]}, format="json")
    assert response.json() == {"deleted": 1, "missing": []}
    assert list(Embedding.objects.values_list("image_id", flat=True)) == [b]
    assert not type(mask).objects.filter(pk=mask.pk).exists()


def test_bulk_delete_costs_the_same_queries_for_2_or_20_images(alice, album, client_for):
    ids = add_images(album, alice, *[f"{i}.jpg" for i in range(22)])
    client = client_for(alice)
    counts = []
    for chunk in (ids[:2], ids[2:]):
        with CaptureQueriesContext(connection) as queries:
            assert client.post(f"/api/v1/albums/{album.pk}/images/bulk-delete/", {"image_ids": chunk},
                               format="json").json()["deleted"] == len(chunk)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_a_viewer_cannot_bulk_delete(alice, bob, album, member_of, client_for):
    ids = add_images(album, alice, "a.jpg")
    member_of(bob, Role.VIEWER)
    response = client_for(bob).post(f"/api/v1/albums/{album.pk}/images/bulk-delete/", {"image_ids": ids}, format="json")
    assert response.status_code == 403 and response.json()["code"] == "role_required"
    assert Image.objects.filter(pk__in=ids).count() == 1


def test_another_users_album_is_the_same_404_as_a_missing_one(alice, bob, album, client_for):
    ids = add_images(album, alice, "a.jpg")
    client = client_for(bob)
    for action, body in (("bulk-delete", {"image_ids": ids}), ("download", {"image_ids": ids}),
                         ("copy", {"image_ids": ids, "target_album_id": album.pk})):
        foreign = client.post(f"/api/v1/albums/{album.pk}/images/{action}/", body, format="json")
        missing = client.post(f"/api/v1/albums/{album.pk + 999}/images/{action}/", body, format="json")
        assert foreign.status_code == 404 and foreign.json() == missing.json(), action
        assert foreign.json()["code"] == "album_not_found"
    assert Image.objects.filter(pk__in=ids).count() == 1


BAD_LISTS = [
    ({}, "invalid"), ({"image_ids": []}, "invalid"), ({"image_ids": None}, "invalid"), ({"image_ids": 5}, "invalid"),
    ({"image_ids": "1,2"}, "invalid"), ({"image_ids": ["a"]}, "invalid"), ({"image_ids": [1.5]}, "invalid"),
    ({"image_ids": [True]}, "invalid"), ({"image_ids": [0]}, "invalid"), ({"image_ids": [-3]}, "invalid"),
    ({"image_ids": [2**63]}, "invalid"), ({"image_ids": [[1]]}, "invalid"), ({"image_ids": [1, 2, 3, 4]}, "too_many_ids"),
    ([1, 2], "invalid"),
]


@pytest.mark.parametrize("action", ["bulk-delete", "download", "copy"])
@pytest.mark.parametrize("body,code", BAD_LISTS, ids=[json.dumps(b) for b, _ in BAD_LISTS])
def test_bad_id_lists_are_a_clear_400_and_lose_nothing(alice, album, client_for, settings, action, body, code):
    settings.LOUPE_MAX_BULK_IMAGES = 3
    ids = add_images(album, alice, "a.jpg")
    if isinstance(body, dict) and action == "copy":
        body = {**body, "target_album_id": album.pk}
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/{action}/", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()
    assert error["code"] == code and "image_ids" in error["message"], error
    if code == "too_many_ids":
        assert "at most 3" in error["message"] and error["extra"]["max_items"] == 3
    assert Image.objects.filter(pk__in=ids).count() == 1 and Image.objects.count() == 1


def test_a_body_larger_than_any_id_list_is_a_413_before_it_is_read(alice, album, client_for, settings):
    settings.LOUPE_MAX_BULK_IMAGES = 2
    ids = add_images(album, alice, "a.jpg")
    body = json.dumps({"image_ids": ids, "padding": "x" * 40_000})
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/bulk-delete/", body,
                                      content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"
    assert Image.objects.filter(pk__in=ids).exists()


def test_the_default_cap_is_1000_and_a_full_list_is_taken(alice, album, client_for, settings):
    assert settings.LOUPE_MAX_BULK_IMAGES == 1000
    ids = add_images(album, alice, "a.jpg")
    many = ids + list(range(10**6, 10**6 + 999))
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/bulk-delete/", {"image_ids": many}, format="json")
    assert response.status_code == 200 and response.json()["deleted"] == 1 and len(response.json()["missing"]) == 999
    over = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/bulk-delete/", {"image_ids": many + [5]}, format="json")
    assert over.status_code == 400 and over.json()["code"] == "too_many_ids"


# --- download ------------------------------------------------------------------------------------------


def unzip(response) -> zipfile.ZipFile:
    assert response.status_code == 200 and response.streaming
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))


def test_a_viewer_downloads_originals_as_a_zip_with_names_made_unique(alice, bob, album, bobs_album, member_of,
                                                                      client_for):
    a1, a2, b, a3 = add_images(album, alice, "a.jpg", "a.jpg", "b.jpg", "A.JPG")
    [foreign] = add_images(bobs_album, bob, "theirs.jpg", start=100)
    member_of(bob, Role.VIEWER)
    response = client_for(bob).post(f"/api/v1/albums/{album.pk}/images/download/",
                                    {"image_ids": [b, a1, foreign, a2, a3]}, format="json")
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"] == 'attachment; filename="alices-trip.zip"'
    assert (response["X-Loupe-Images"], response["X-Loupe-Missing"]) == ("4", "1")
    archive = unzip(response)
    assert archive.testzip() is None
    assert archive.namelist() == ["b.jpg", "a.jpg", "a (2).jpg", "A (3).JPG"]
    for name, pk in zip(archive.namelist(), (b, a1, a2, a3)):
        info = archive.getinfo(name)
        assert info.compress_type == zipfile.ZIP_STORED
        with Image.objects.get(pk=pk).file.open("rb") as original:
            assert archive.read(name) == original.read()


def test_the_zip_is_streamed_in_bounded_chunks(alice, album, client_for):
    big = noise_png(size=(900, 900))  # ~2.4 MB that do not compress
    [image_id] = [r.image_id for r in services.image_upload_many(album=album, user=alice,
                                                                 files=[("big.png", io.BytesIO(big))])]
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/download/", {"image_ids": [image_id]},
                                      format="json")
    chunks = list(response.streaming_content)
    assert len(chunks) >= 3 and max(len(c) for c in chunks) <= (1 << 20) + 4096
    assert zipfile.ZipFile(io.BytesIO(b"".join(chunks))).read("big.png") == big


def test_a_plain_html_form_downloads_with_the_session_and_its_csrf_token(alice, album):
    ids = add_images(album, alice, "a.jpg", "b.jpg")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get(f"/albums/{album.pk}/")  # any page with a form sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    path = f"/api/v1/albums/{album.pk}/images/download/"
    form = "application/x-www-form-urlencoded"
    body = "&".join(f"image_ids={pk}" for pk in ids)
    refused = client.post(path, body, content_type=form)
    assert refused.status_code == 403 and "CSRF" in refused.json()["message"]
    response = client.post(path, f"{body}&csrfmiddlewaretoken={token}", content_type=form)
    assert sorted(unzip(response).namelist()) == ["a.jpg", "b.jpg"]
    # FormData from a script is multipart, with the token in a header
    response = client.post(path, {"image_ids": ids}, HTTP_X_CSRFTOKEN=token)
    assert sorted(unzip(response).namelist()) == ["a.jpg", "b.jpg"]


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_a_form_may_post_as_many_ids_as_the_cap(alice, album, encoding):
    from urllib.parse import urlencode

    ids = add_images(album, alice, "a.jpg")
    client = Client()
    client.force_login(alice)
    fields = {"image_ids": ids + [2**62 + n for n in range(999)], "x": "1"}
    path = f"/api/v1/albums/{album.pk}/images/download/"
    if encoding == "urlencoded":
        response = client.post(path, urlencode(fields, doseq=True), content_type="application/x-www-form-urlencoded")
    else:
        response = client.post(path, fields)
    assert unzip(response).namelist() == ["a.jpg"]


def test_download_of_nothing_in_the_album_is_a_404(alice, bob, album, bobs_album, client_for):
    [foreign] = add_images(bobs_album, bob, "theirs.jpg")
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/download/", {"image_ids": [foreign, 10**9]},
                                      format="json")
    assert response.status_code == 404 and response.json()["code"] == "image_not_found"


def test_a_file_missing_from_storage_is_a_clear_404_before_any_byte(alice, album, client_for):
    a, b = add_images(album, alice, "a.jpg", "b.jpg")
    default_storage.delete(Image.objects.get(pk=b).file.name)
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/download/", {"image_ids": [a, b]},
                                      format="json")
    assert response.status_code == 404 and not response.streaming
    assert response.json()["code"] == "image_file_missing" and response.json()["extra"]["image_id"] == b


def test_an_album_name_without_ascii_gives_a_plain_file_name(alice, client_for):
    album = services.album_create(owner=alice, name="照片")
    ids = add_images(album, alice, "a.jpg")
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/download/", {"image_ids": ids}, format="json")
    assert response["Content-Disposition"] == f'attachment; filename="album-{album.pk}.zip"'


# --- copy ----------------------------------------------------------------------------------------------


@pytest.fixture
def announced(monkeypatch):
    """What albums announces to the layers above (albums.hooks.announce), instead of queueing tasks."""
    from albums import hooks

    calls = []
    monkeypatch.setattr(hooks, "announce", lambda signal, **kwargs: calls.append((signal, kwargs)))
    return calls


def test_a_viewer_copies_into_an_album_they_edit(alice, bob, album, bobs_album, member_of, client_for, announced,
                                                 django_capture_on_commit_callbacks):
    from albums import hooks

    a, b, c = add_images(album, alice, "a.jpg", "b.jpg", "c.jpg")
    member_of(bob, Role.VIEWER)
    Image.objects.filter(pk=a).update(exif={"Make": "Canon"}, camera="Canon", width=64, height=48)
    # Bob's album holds c's bytes already: skipped, as an upload of them would be.
    with Image.objects.get(pk=c).file.open("rb") as fp:
        services.image_upload_many(album=bobs_album, user=bob, files=[("mine.jpg", io.BytesIO(fp.read()))])
    [elsewhere] = add_images(services.album_create(owner=alice, name="other"), alice, "x.jpg", start=200)
    announced.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(bob).post(f"/api/v1/albums/{album.pk}/images/copy/",
                                        {"image_ids": [a, b, c, elsewhere, 10**9], "target_album_id": bobs_album.pk},
                                        format="json")
    assert response.status_code == 201, response.json()
    assert response.json() == {"copied": 2, "skipped_duplicates": 1, "missing": [elsewhere, 10**9]}
    copies = {image.original_name: image for image in Image.objects.filter(album=bobs_album)}
    assert set(copies) == {"a.jpg", "b.jpg", "mine.jpg"}
    for name, pk in (("a.jpg", a), ("b.jpg", b)):
        source, copy = Image.objects.get(pk=pk), copies[name]
        assert copy.sha256 == source.sha256 and copy.file.name != source.file.name
        assert copy.file.name.startswith(f"albums/{bobs_album.pk}/")
        assert (copy.status, copy.uploaded_by, copy.thumbnail.name) == ("pending", bob, "")
        with copy.file.open("rb") as new, source.file.open("rb") as old:
            assert new.read() == old.read()
    assert (copies["a.jpg"].camera, copies["a.jpg"].exif) == ("Canon", {"Make": "Canon"})
    # Indexed the way an upload is: the upload hook, for the new images of the target.
    [(signal, kwargs)] = announced
    assert signal is hooks.images_uploaded and kwargs["album"] == bobs_album and kwargs["user"] == bob
    assert sorted(kwargs["image_ids"]) == sorted([copies["a.jpg"].pk, copies["b.jpg"].pk])
    assert Image.objects.filter(album=album).count() == 3  # the source keeps its images


def test_copies_are_indexed_by_the_targets_workers_as_uploads_are(alice, album, client_for, monkeypatch,
                                                   django_capture_on_commit_callbacks):
    target = services.album_create(owner=alice, name="target")
    ids = add_images(album, alice, "a.jpg")
    queued = []
    monkeypatch.setattr("workers.services.image_metadata_enqueue", lambda image_ids: queued.append(("meta", image_ids)))
    monkeypatch.setattr("workers.indexing.index_job_start", lambda album, user: queued.append(("index", album.pk)))
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/copy/",
                                          {"image_ids": ids, "target_album_id": target.pk}, format="json")
    copy = Image.objects.get(album=target)
    assert response.json()["copied"] == 1
    assert queued == [("meta", [copy.pk]), ("index", target.pk)]


def test_a_target_you_cannot_see_is_album_not_found_and_a_viewed_one_needs_editor(
        alice, bob, album, bobs_album, member_of, client_for, announced):
    ids = add_images(album, alice, "a.jpg")
    client = client_for(alice)
    hidden = client.post(f"/api/v1/albums/{album.pk}/images/copy/", {"image_ids": ids, "target_album_id": bobs_album.pk},
                         format="json")
    missing = client.post(f"/api/v1/albums/{album.pk}/images/copy/",
                          {"image_ids": ids, "target_album_id": bobs_album.pk + 999}, format="json")
    assert hidden.status_code == 404 and hidden.json() == missing.json() and hidden.json()["code"] == "album_not_found"
    services.album_member_add(album=bobs_album, username="alice", role=Role.VIEWER)
    viewer = client.post(f"/api/v1/albums/{album.pk}/images/copy/", {"image_ids": ids, "target_album_id": bobs_album.pk},
                         format="json")
    assert viewer.status_code == 403 and viewer.json()["code"] == "role_required"
    assert not Image.objects.filter(album=bobs_album).exists() and not announced


@pytest.mark.parametrize("target", [None, "", "x", 0, -1, 1.5, True, [1]])
def test_a_bad_target_album_id_is_a_400(alice, album, client_for, target):
    ids = add_images(album, alice, "a.jpg")
    body = {"image_ids": ids} if target is None else {"image_ids": ids, "target_album_id": target}
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/copy/", body, format="json")
    assert response.status_code == 400 and "target_album_id" in response.json()["message"]


def test_copying_into_the_same_album_skips_everything(alice, album, client_for, announced):
    ids = add_images(album, alice, "a.jpg", "b.jpg")
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/copy/",
                                      {"image_ids": ids, "target_album_id": album.pk}, format="json")
    assert response.json() == {"copied": 0, "skipped_duplicates": 2, "missing": []}
    assert Image.objects.count() == 2 and not announced


def test_a_source_file_missing_from_storage_is_reported_and_the_rest_copied(alice, album, client_for, announced):
    target = services.album_create(owner=alice, name="target")
    a, b = add_images(album, alice, "a.jpg", "b.jpg")
    default_storage.delete(Image.objects.get(pk=a).file.name)
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/copy/",
                                      {"image_ids": [a, b], "target_album_id": target.pk}, format="json")
    assert response.json() == {"copied": 1, "skipped_duplicates": 0, "missing": [a]}
    assert list(Image.objects.filter(album=target).values_list("original_name", flat=True)) == ["b.jpg"]


def test_bytes_the_target_gains_during_the_copy_are_skipped_and_leave_no_file(alice, album, client_for, monkeypatch,
                                                                              announced):
    target = services.album_create(owner=alice, name="target")
    a, b = add_images(album, alice, "a.jpg", "b.jpg")
    real_copy_row = services._copy_row

    def racing_copy_row(source, **kwargs):
        if source.pk == a:  # another request uploads a's bytes to the target right now
            with source.file.open("rb") as fp:
                services.image_upload_many(album=target, user=alice, files=[("raced.jpg", io.BytesIO(fp.read()))])
        return real_copy_row(source, **kwargs)

    monkeypatch.setattr(services, "_copy_row", racing_copy_row)
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/copy/",
                                      {"image_ids": [a, b], "target_album_id": target.pk}, format="json")
    assert response.json() == {"copied": 1, "skipped_duplicates": 1, "missing": []}
    assert sorted(Image.objects.filter(album=target).values_list("original_name", flat=True)) == ["b.jpg", "raced.jpg"]
    stored = {image.file.name for image in Image.objects.all()}
    on_disk = {f"albums/{target.pk}/{d}/{f}" for d in default_storage.listdir(f"albums/{target.pk}")[0]
               for f in default_storage.listdir(f"albums/{target.pk}/{d}")[1]}
    assert on_disk <= stored  # the copy that lost the race left no file behind


def test_a_failed_copy_removes_the_files_it_stored(alice, album, client_for, monkeypatch):
    target = services.album_create(owner=alice, name="target")
    ids = add_images(album, alice, "a.jpg", "b.jpg")

    def broken(rows, target):
        raise RuntimeError("database went away")

    monkeypatch.setattr(services, "_insert_copies", broken)
    with pytest.raises(RuntimeError):
        services.image_copy_many(source=album, target=target, user=alice, image_ids=ids)
    assert not Image.objects.filter(album=target).exists()
    assert not default_storage.exists(f"albums/{target.pk}") or not any(
        default_storage.listdir(f"albums/{target.pk}/{d}")[1] for d in default_storage.listdir(f"albums/{target.pk}")[0])
