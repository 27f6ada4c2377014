import io

import pytest
from django.test import override_settings

from albums.models import Image
from albums.roles import Role
from tests.images import image_bytes, noise_png, jpeg_with_exif, png_bomb, truncated

pytestmark = pytest.mark.django_db


def upload(client, album_id, *files):
    payload = {"files": [io.BytesIO(data) if isinstance(data, bytes) else data for data in files]}
    return client.post(f"/api/v1/albums/{album_id}/images/", payload, format="multipart")


def named(data: bytes, name: str) -> io.BytesIO:
    f = io.BytesIO(data)
    f.name = name
    return f


def test_upload_many_reports_each_file(alice, album, client_for):
    red = image_bytes(color=(200, 0, 0))
    response = upload(
        client_for(alice),
        album.pk,
        named(red, "red.jpg"),
        named(image_bytes("PNG", color=(0, 200, 0)), "green.png"),
        named(red, "red-again.jpg"),
        named(b"", "empty.jpg"),
        named(b"<html><body>hello</body></html>", "page.jpg"),
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["created"], body["duplicates"], body["rejected"]) == (2, 1, 2)
    by_name = {r["name"]: r for r in body["results"]}
    assert by_name["red.jpg"]["status"] == "created"
    assert by_name["red-again.jpg"] == {**by_name["red-again.jpg"], "status": "duplicate", "image_id": by_name["red.jpg"]["image_id"]}
    assert by_name["empty.jpg"]["code"] == "empty_file"
    assert by_name["page.jpg"]["code"] == "not_an_image"
    image = Image.objects.get(pk=by_name["green.png"]["image_id"])
    assert (image.mime, image.width, image.height, image.status) == ("image/png", 64, 48, "pending")
    assert image.original_name == "green.png"
    assert len(image.sha256) == 64 and image.bytes > 0
    assert image.file.name.startswith(f"albums/{album.pk}/")


@pytest.mark.parametrize(
    "data,code",
    [
        (truncated(image_bytes(size=(400, 300))), "corrupt_image"),
        (truncated(image_bytes("PNG", size=(400, 300)), 0.6), "corrupt_image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "corrupt_image"),
        (b"%PDF-1.4\n1 0 obj<<>>endobj\n", "not_an_image"),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not_an_image"),
        (png_bomb(), "too_many_pixels"),
    ],
    ids=["truncated-jpeg", "truncated-png", "corrupt-jpeg-header", "pdf", "svg", "decompression-bomb"],
)
def test_bad_files_are_rejected_with_a_reason_and_do_not_affect_others(alice, album, client_for, data, code):
    response = upload(client_for(alice), album.pk, named(data, "bad.jpg"), named(image_bytes(color=(9, 9, 9)), "good.jpg"))
    results = {r["name"]: r for r in response.json()["results"]}
    assert results["bad.jpg"]["status"] == "rejected"
    assert results["bad.jpg"]["code"] == code
    assert results["bad.jpg"]["reason"]
    assert results["good.jpg"]["status"] == "created"
    assert Image.objects.filter(album=album).count() == 1


def test_oversized_file_is_rejected_without_being_stored(alice, album, client_for, settings):
    settings.LOUPE_MAX_UPLOAD_BYTES = 20_000
    big = noise_png()
    assert len(big) > 20_000
    response = upload(client_for(alice), album.pk, named(big, "big.png"), named(image_bytes(), "small.jpg"))
    results = {r["name"]: r for r in response.json()["results"]}
    assert results["big.png"]["code"] == "file_too_large"
    assert results["small.jpg"]["status"] == "created"
    assert Image.objects.count() == 1


@override_settings(DATA_UPLOAD_MAX_NUMBER_FILES=3, LOUPE_MAX_FILES_PER_REQUEST=3)
def test_too_many_files_in_one_request_is_413(alice, album, client_for):
    files = [named(image_bytes(color=(i, i, i)), f"{i}.jpg") for i in range(5)]
    response = upload(client_for(alice), album.pk, *files)
    assert response.status_code == 413
    assert response.json()["code"] == "too_many_files"
    assert not Image.objects.exists()


def test_no_files_is_a_clear_400(alice, album, client_for):
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/images/", {}, format="multipart")
    assert response.status_code == 400
    assert response.json()["code"] == "no_files"


def test_hostile_file_names_are_cleaned(alice, album, client_for):
    response = upload(
        client_for(alice), album.pk,
        named(image_bytes(color=(1, 1, 1)), "../../etc/passwd.jpg"),
        named(image_bytes(color=(2, 2, 2)), "ünïcødé 照片.jpg"),
        named(image_bytes(color=(3, 3, 3)), "x" * 400 + ".jpg"),
    )
    names = [r["name"] for r in response.json()["results"]]
    assert names[0] == "passwd.jpg"
    assert names[1] == "ünïcødé 照片.jpg"
    assert len(names[2]) == 255 and names[2].endswith(".jpg")
    for image in Image.objects.all():
        assert ".." not in image.file.name and image.file.name.startswith("albums/")


def test_list_filters_by_status_and_paginates(alice, album, client_for):
    client = client_for(alice)
    upload(client, album.pk, *[named(image_bytes(color=(i * 20, 0, 0)), f"{i}.jpg") for i in range(5)])
    Image.objects.filter(pk=Image.objects.order_by("pk").first().pk).update(status="failed", failure_reason="bad")
    page = client.get(f"/api/v1/albums/{album.pk}/images/?page_size=2").json()
    assert page["count"] == 5 and len(page["results"]) == 2 and page["next"]
    failed = client.get(f"/api/v1/albums/{album.pk}/images/?status=failed").json()
    assert [r["failure_reason"] for r in failed["results"]] == ["bad"]
    response = client.get(f"/api/v1/albums/{album.pk}/images/?status=weird")
    assert response.status_code == 400 and response.json()["code"] == "invalid_filter"


def test_detail_file_and_thumbnail_are_served_to_members(alice, bob, album, member_of, client_for):
    data = jpeg_with_exif(orientation=6, size=(80, 40))
    image_id = upload(client_for(alice), album.pk, named(data, "cam.jpg")).json()["results"][0]["image_id"]
    member_of(bob, Role.VIEWER)
    client = client_for(bob)
    detail = client.get(f"/api/v1/images/{image_id}/").json()
    assert detail["file_url"] == f"/api/v1/images/{image_id}/file"
    response = client.get(detail["file_url"])
    assert response.status_code == 200
    assert response["Content-Type"] == "image/jpeg"
    assert b"".join(response.streaming_content) == data
    assert "private" in response["Cache-Control"]
    # No thumbnail stored yet (no worker in this test): one is rendered on the fly, upright.
    response = client.get(detail["thumbnail_url"])
    assert response.status_code == 200 and response["Content-Type"] == "image/webp"
    from PIL import Image as PILImage

    thumb = PILImage.open(io.BytesIO(b"".join(response.streaming_content)))
    assert thumb.size == (40, 80)


def test_editor_deletes_an_image_and_its_file(alice, album, client_for, django_capture_on_commit_callbacks):
    from django.core.files.storage import default_storage

    client = client_for(alice)
    image_id = upload(client, album.pk, named(image_bytes(), "a.jpg")).json()["results"][0]["image_id"]
    name = Image.objects.get(pk=image_id).file.name
    assert default_storage.exists(name)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/images/{image_id}/").status_code == 204
    assert not Image.objects.filter(pk=image_id).exists()
    assert not default_storage.exists(name)
    # The same bytes may be uploaded again afterwards.
    assert upload(client, album.pk, named(image_bytes(), "a.jpg")).json()["created"] == 1


def test_media_is_not_served_from_a_public_url(alice, album, client_for):
    from django.test import Client

    image = Image.objects.get(pk=upload(client_for(alice), album.pk, named(image_bytes(), "a.jpg")).json()["results"][0]["image_id"])
    assert Client().get("/media/" + image.file.name).status_code == 404
    assert Client().get("/" + image.file.name).status_code == 404


def _three_images(alice, album, client):
    """Three images uploaded in order a, b, c; b taken in 2019, c in 2021, a without a capture time."""
    from datetime import datetime, timezone

    body = upload(client, album.pk, *[named(image_bytes(color=(i * 40, 9, 9)), f"{n}.jpg") for i, n in enumerate("abc")])
    ids = {r["name"][0]: r["image_id"] for r in body.json()["results"]}
    Image.objects.filter(pk=ids["b"]).update(taken_at=datetime(2019, 5, 1, tzinfo=timezone.utc))
    Image.objects.filter(pk=ids["c"]).update(taken_at=datetime(2021, 5, 1, tzinfo=timezone.utc))
    return ids


@pytest.mark.parametrize("sort,expected", [
    (None, "cba"), ("-added", "cba"), ("added", "abc"), ("-taken", "cba"), ("taken", "bca"),
])
def test_list_sorts_by_date_added_or_taken_with_undated_images_last(alice, album, client_for, sort, expected):
    client = client_for(alice)
    ids = _three_images(alice, album, client)
    names = {v: k for k, v in ids.items()}
    query = f"?sort={sort}" if sort else ""
    results = client.get(f"/api/v1/albums/{album.pk}/images/{query}").json()["results"]
    assert "".join(names[r["id"]] for r in results) == expected


def test_the_default_order_is_newest_upload_first_with_ties_by_id(alice, album, client_for):
    client = client_for(alice)
    ids = _three_images(alice, album, client)
    same_moment = Image.objects.get(pk=ids["a"]).created_at
    Image.objects.filter(album=album).update(created_at=same_moment)
    results = client.get(f"/api/v1/albums/{album.pk}/images/").json()["results"]
    assert [r["id"] for r in results] == sorted(ids.values(), reverse=True)
    both = client.get(f"/api/v1/albums/{album.pk}/images/?sort=taken&status=pending").json()["results"]
    assert [r["id"] for r in both] == [ids["b"], ids["c"], ids["a"]]


@pytest.mark.parametrize("sort", ["newest", "taken_at", "-", "added;drop", "x" * 500])
def test_an_unknown_sort_is_a_400_naming_the_choices(alice, album, client_for, sort):
    response = client_for(alice).get(f"/api/v1/albums/{album.pk}/images/", {"sort": sort})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_sort" and "-taken" in body["message"]
    assert body["extra"]["allowed"] == ["-added", "added", "-taken", "taken"]
    assert len(body["message"]) < 200


def test_sorting_a_foreign_album_is_the_same_404(alice, bob, album, client_for):
    response = client_for(bob).get(f"/api/v1/albums/{album.pk}/images/?sort=taken")
    missing = client_for(bob).get(f"/api/v1/albums/{album.pk + 1000}/images/?sort=taken")
    assert response.status_code == 404 and response.json() == missing.json()


def test_image_detail_has_readable_info_once_metadata_is_read(alice, bob, album, member_of, client_for):
    from albums import services
    from albums.imaging import make_thumbnail, read_metadata

    data = jpeg_with_exif(orientation=1, size=(80, 40), make="Canon", model="Canon EOS R5")
    image_id = upload(client_for(alice), album.pk, named(data, "cam.jpg")).json()["results"][0]["image_id"]
    member_of(bob, Role.VIEWER)
    before = client_for(bob).get(f"/api/v1/images/{image_id}/").json()["info"]
    assert before == {"camera": None, "lens": None, "exposure": None, "taken": None, "place": None, "size": "80 × 40"}
    # What the metadata task stores (workers.services.image_process_metadata), then read back readable.
    image = Image.objects.get(pk=image_id)
    services.image_save_metadata(image=image, metadata=read_metadata(io.BytesIO(data)),
                                 thumbnail=make_thumbnail(io.BytesIO(data), size=32))
    info = client_for(bob).get(f"/api/v1/images/{image_id}/").json()["info"]
    assert info == {"camera": "Canon EOS R5", "lens": None, "exposure": None, "taken": "2021-07-04T12:30:00Z",
                    "place": None, "size": "80 × 40"}
    listed = client_for(bob).get(f"/api/v1/albums/{album.pk}/images/").json()["results"][0]["info"]
    assert listed == info
