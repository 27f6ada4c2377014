import io
import os

import pytest
from django.core.management import CommandError, call_command

from albums.folder_import import ImportPathError, folder_import
from albums.models import Image
from config.errors import PermissionDeniedError
from tests.conftest import wait_for
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def tree(tmp_path, settings, import_root):
    root = import_root / tmp_path.name
    outside = tmp_path / "secret"
    (root / "trip" / "day2").mkdir(parents=True)
    outside.mkdir()
    (root / "trip" / "a.jpg").write_bytes(image_bytes(color=(1, 2, 3)))
    (root / "trip" / "day2" / "b.png").write_bytes(image_bytes("PNG", color=(4, 5, 6)))
    (root / "trip" / "day2" / "copy-of-a.jpg").write_bytes(image_bytes(color=(1, 2, 3)))
    (root / "trip" / "notes.txt").write_text("not an image")
    (root / "trip" / "fake.jpg").write_text("<html>also not an image</html>")
    (outside / "private.jpg").write_bytes(image_bytes(color=(9, 9, 9)))
    os.symlink(outside / "private.jpg", root / "trip" / "link.jpg")
    os.symlink(outside, root / "trip" / "linked-dir")
    settings.LOUPE_IMPORT_ROOTS = [str(import_root)]
    return root, outside


def test_imports_recursively_and_says_why_files_were_skipped(tree, album, alice):
    root, _ = tree
    report = folder_import(album=album, user=alice, path=str(root / "trip"))
    assert (report.created, report.duplicates) == (2, 1)
    reasons = {row.path: row.reason for row in report.rejected}
    assert set(reasons) == {"notes.txt", "fake.jpg", "link.jpg"}
    assert "outside the allowed import roots" in reasons["link.jpg"]
    assert "Not an image" in reasons["fake.jpg"] or "not_an_image" in str(report.rejected)
    assert sorted(Image.objects.filter(album=album).values_list("original_name", flat=True)) == ["a.jpg", "b.png"]


@pytest.mark.parametrize("path", ["{outside}", "{root}/../../{outside_name}", "{root}/trip/linked-dir", "/etc"])
def test_paths_that_escape_the_roots_are_refused(tree, album, alice, path):
    root, outside = tree
    with pytest.raises(ImportPathError) as caught:
        folder_import(album=album, user=alice, path=path.format(root=root, outside=outside, outside_name=outside.parent.name + "/secret"))
    assert "outside the allowed import roots" in caught.value.message
    assert not Image.objects.exists()


def test_import_is_off_without_roots(album, alice, settings, tmp_path):
    settings.LOUPE_IMPORT_ROOTS = []
    with pytest.raises(PermissionDeniedError) as caught:
        folder_import(album=album, user=alice, path=str(tmp_path))
    assert caught.value.code == "import_disabled"


def test_management_command(tree, album):
    root, _ = tree
    out = io.StringIO()
    call_command("import_folder", album.pk, str(root), stdout=out)
    assert "2 imported, 1 already in the album, 3 skipped" in out.getvalue()
    with pytest.raises(CommandError, match="outside the allowed import roots"):
        call_command("import_folder", album.pk, "/etc", stdout=out)


def test_api_is_for_staff_members_only(tree, album, alice, bob, make_user, member_of, client_for):
    root, _ = tree
    body = {"path": str(root)}
    assert client_for(bob).post(f"/api/v1/albums/{album.pk}/import/", body, format="json").status_code == 404
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/import/", body, format="json")
    assert response.status_code == 403 and response.json()["code"] == "staff_required"
    staff_viewer = make_user("staffer", is_staff=True)
    member_of(staff_viewer, "viewer")
    assert client_for(staff_viewer).post(f"/api/v1/albums/{album.pk}/import/", body, format="json").status_code == 403


@pytest.mark.slow
def test_api_import_runs_on_the_worker(tree, worker, alice, client_for):
    from albums import services

    alice.is_staff = True
    alice.save()
    album = services.album_create(owner=alice, name="imported")
    root, _ = tree
    response = client_for(alice).post(f"/api/v1/albums/{album.pk}/import/", {"path": str(root)}, format="json")
    assert response.status_code == 202, response.json()
    job_id = response.json()["id"]
    assert response.json()["kind"] == "import" and response.json()["total"] == 6
    from workers.models import IndexJob

    job = wait_for(lambda: IndexJob.objects.filter(pk=job_id, status="succeeded").first(), what="the import")
    assert job.message.startswith("2 imported, 1 already there, 3 skipped.")
    assert (job.done, job.failed) == (6, 3)
    refused = client_for(alice).post(f"/api/v1/albums/{album.pk}/import/", {"path": "/etc"}, format="json")
    assert refused.status_code == 400 and refused.json()["code"] == "import_path_refused"


def test_album_page_offers_import_to_staff_editors_only(album, alice, make_user, member_of, settings, tmp_path):
    from django.test import Client

    settings.LOUPE_IMPORT_ROOTS = []
    alice.is_staff = True
    alice.save()

    def page_for(user):
        client = Client()
        client.force_login(user)
        return client.get(f"/albums/{album.pk}/").content.decode()

    assert 'id="folder-import"' not in page_for(alice)  # no import roots: folder import is off
    settings.LOUPE_IMPORT_ROOTS = [str(tmp_path)]
    assert 'id="folder-import"' in page_for(alice)
    alice.is_staff = False
    alice.save()
    assert 'id="folder-import"' not in page_for(alice)  # owner, not staff
    staff_viewer = make_user("staffer", is_staff=True)
    member_of(staff_viewer, "viewer")
    assert 'id="folder-import"' not in page_for(staff_viewer)
