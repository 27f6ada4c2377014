"""The labeling API: start a job, list and filter labels, review, add to the set, export."""

import csv
import io
import json
import zipfile

import pytest

from albums.models import Image
from search.rag import labeling
from search.rag.models import Label, SupportImage
from tests.rag.conftest import upload
from workers.models import IndexJob


@pytest.fixture
def labeled(album_to_label, alice, client_for):
    api = client_for(alice)
    started = api.post(f"/api/v1/support-sets/{album_to_label['id']}/label-jobs/", {}, format="json")
    assert started.status_code == 202, started.content
    job = started.json()
    assert job["kind"] == "label" and job["total"] == 6 and job["params"]["scope"] == "album"
    joined = api.post(f"/api/v1/support-sets/{album_to_label['id']}/label-jobs/", {}, format="json")
    assert joined.status_code == 200 and joined.json()["id"] == job["id"]
    labeling.label_job_run(job_id=job["id"])  # what the worker runs (tests/rag/test_label_worker.py: on the worker)
    assert api.get(f"/api/v1/jobs/{job['id']}/").json()["status"] == "succeeded"
    return {**album_to_label, "job": job["id"]}


def labels(api, set_id, **params):
    response = api.get(f"/api/v1/support-sets/{set_id}/labels/", params)
    assert response.status_code == 200, response.content
    return response.json()


def test_labels_list_lowest_margin_first_and_filter(labeled, viewer_of, client_for):
    api = client_for(viewer_of)  # viewers read labels
    page = labels(api, labeled["id"])
    assert page["count"] == 6
    margins = [item["margin"] for item in page["results"]]
    assert margins == sorted(margins)
    first = page["results"][0]
    assert set(first["scores"]) == {"cat", "cup"} and first["state"] == "predicted" and first["thumbnail_url"]
    assert first["evidence"] and first["evidence"][0]["crop_url"].startswith("/api/v1/support-images/")
    cats = labels(api, labeled["id"], **{"class": "cat"})
    assert cats["count"] >= 2 and all(item["class_label"] == "cat" for item in cats["results"])
    below = labels(api, labeled["id"], margin_below=margins[2])
    assert below["count"] == len([m for m in margins if m < margins[2]])
    assert labels(api, labeled["id"], state="accepted")["count"] == 0
    assert api.get(f"/api/v1/support-sets/{labeled['id']}/labels/", {"state": "maybe"}).status_code == 400
    assert api.get(f"/api/v1/support-sets/{labeled['id']}/labels/", {"margin_below": "x"}).status_code == 400


def test_review_transitions(labeled, alice, viewer_of, client_for):
    api = client_for(alice)
    label = Label.objects.get(image_id=labeled["images"]["cat-2.jpg"])
    url = f"/api/v1/labels/{label.pk}/"
    assert client_for(viewer_of).patch(url, {"state": "accepted"}, format="json").status_code == 403
    accepted = api.patch(url, {"state": "accepted"}, format="json")
    assert accepted.status_code == 200 and accepted.json()["state"] == "accepted"
    corrected = api.patch(url, {"class_label": "cup"}, format="json").json()
    assert corrected["state"] == "corrected" and corrected["class_label"] == "cup" and corrected["predicted_label"] == "cat"
    assert api.patch(url, {"class_label": "cat"}, format="json").json()["state"] == "accepted"
    assert api.patch(url, {"state": "rejected"}, format="json").json()["state"] == "rejected"
    assert api.patch(url, {"class_label": "dog"}, format="json").json()["code"] == "unknown_class"
    assert api.patch(url, {"state": "corrected"}, format="json").status_code == 400
    assert api.patch(url, {"state": "accepted", "class_label": "cat"}, format="json").status_code == 400
    assert labels(api, labeled["id"], state="rejected")["count"] == 1


def test_an_accepted_or_corrected_image_becomes_an_example_of_its_class(labeled, alice, client_for):
    api = client_for(alice)
    label = Label.objects.get(image_id=labeled["images"]["cup-2.jpg"])
    url = f"/api/v1/labels/{label.pk}/add-to-set/"
    refused = api.post(url)
    assert refused.status_code == 409 and refused.json()["code"] == "label_not_reviewed"
    api.patch(f"/api/v1/labels/{label.pk}/", {"class_label": "cup"}, format="json")
    added = api.post(url)
    assert added.status_code == 201, added.content
    example = SupportImage.objects.get(support_set_id=labeled["id"], image_id=label.image_id)
    assert example.support_class.label == "cup"
    assert api.post(url).status_code == 200  # already an example: nothing added


def test_exports_csv_json_and_an_imagefolder_zip(labeled, alice, client_for):
    api = client_for(alice)
    set_id = labeled["id"]
    ids = labeled["images"]
    for name, change in (("cat-2.jpg", {"state": "accepted"}), ("cup-2.jpg", {"class_label": "cup"}),
                         ("astronaut.jpg", {"class_label": "cat"}), ("cat-3.jpg", {"state": "rejected"})):
        api.patch(f"/api/v1/labels/{Label.objects.get(image_id=ids[name]).pk}/", change, format="json")
    as_csv = api.get(f"/api/v1/support-sets/{set_id}/labels/export", {"format": "csv"})
    assert as_csv.status_code == 200 and as_csv["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.content.decode())))
    assert len(rows) == 6
    by_id = {int(row["image_id"]): row for row in rows}
    astronaut = Image.objects.get(pk=ids["astronaut.jpg"])
    row = by_id[astronaut.pk]
    assert row["file_name"] == "astronaut.jpg" and row["sha256"] == astronaut.sha256 and row["class"] == "cat"
    assert row["state"] in ("accepted", "corrected") and set(json.loads(row["scores"])) == {"cat", "cup"}
    assert by_id[ids["cat-3.jpg"]]["state"] == "rejected"
    as_json = api.get(f"/api/v1/support-sets/{set_id}/labels/export", {"format": "json"}).json()
    assert as_json["classes"] == ["cat", "cup"] and len(as_json["labels"]) == 6
    assert {r["image_id"]: r["class"] for r in as_json["labels"]}[ids["cup-2.jpg"]] == "cup"
    as_zip = api.get(f"/api/v1/support-sets/{set_id}/labels/export", {"format": "zip"})
    assert as_zip.status_code == 200 and as_zip["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(b"".join(as_zip.streaming_content)))
    assert sorted(archive.namelist()) == ["cat/astronaut.jpg", "cat/cat-2.jpg", "cup/cup-2.jpg"]
    assert archive.read("cat/astronaut.jpg") == astronaut.file.open("rb").read()
    bad = api.get(f"/api/v1/support-sets/{set_id}/labels/export", {"format": "xml"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_format"


def test_a_selection_scope_and_bad_job_requests(album_to_label, alice, bob, viewer_of, client_for):
    api = client_for(alice)
    url = f"/api/v1/support-sets/{album_to_label['id']}/label-jobs/"
    ids = album_to_label["images"]
    chosen = [ids["cat-2.jpg"], ids["cup-2.jpg"]]
    started = api.post(url, {"scope": "images", "image_ids": chosen, "margin_threshold": 0.2}, format="json")
    assert started.status_code == 202 and started.json()["total"] == 2
    job = IndexJob.objects.get(pk=started.json()["id"])
    assert job.params["image_ids"] == sorted(chosen) and job.params["margin_threshold"] == 0.2
    job.status = "cancelled"
    job.save()
    assert api.post(url, {"scope": "images"}, format="json").status_code == 400
    assert api.post(url, {"margin_threshold": 2}, format="json").status_code == 400
    bobs = upload(client_for(bob), _bobs_album(bob).pk, {"b.jpg": _tiny()})
    foreign = api.post(url, {"scope": "images", "image_ids": [bobs["b.jpg"]]}, format="json")
    assert foreign.status_code == 400 and foreign.json()["code"] == "image_not_found"
    assert client_for(viewer_of).post(url, {}, format="json").status_code == 403


def _bobs_album(bob):
    from albums import services

    return services.album_create(owner=bob, name="bob's", encoder_spec="dense:efficientnet-lite0")


def _tiny() -> bytes:
    from tests.rag.conftest import jpeg, photo

    return jpeg(photo("camera"))


def test_strangers_get_404_everywhere(labeled, bob, client_for):
    api = client_for(bob)
    set_id = labeled["id"]
    label = Label.objects.filter(support_set_id=set_id).first()
    for method, url, body in (
        ("post", f"/api/v1/support-sets/{set_id}/label-jobs/", {}),
        ("get", f"/api/v1/support-sets/{set_id}/labels/", None),
        ("get", f"/api/v1/support-sets/{set_id}/labels/export?format=zip", None),
        ("get", f"/api/v1/support-sets/{set_id}/labels/export?format=csv", None),
        ("get", f"/api/v1/labels/{label.pk}/", None),
        ("patch", f"/api/v1/labels/{label.pk}/", {"state": "accepted"}),
        ("post", f"/api/v1/labels/{label.pk}/add-to-set/", None),
    ):
        response = getattr(api, method)(url, body, format="json") if body is not None else getattr(api, method)(url)
        assert response.status_code == 404, (method, url, response.content)
    label.refresh_from_db()
    assert label.state == "predicted"
