"""Labeling an album with a support set: the job's batches, resume, bad images, and review."""

import pytest

from albums.models import Image
from search.rag import labeling
from search.rag.models import Label, SupportSet
from workers.models import IndexJob


def run(job: IndexJob) -> IndexJob:
    labeling.label_job_run(job_id=job.pk)
    job.refresh_from_db()
    return job


def test_the_job_labels_the_whole_album_in_batches_with_scores_and_margins(album_to_label, alice, settings):
    settings.LOUPE_RAG_LABEL_BATCH = 3
    support_set = SupportSet.objects.get(pk=album_to_label["id"])
    job, created = labeling.label_job_start(support_set=support_set, user=alice)
    assert created and job.kind == "label" and job.total == 6  # 2 examples + 4 uploads
    again, joined = labeling.label_job_start(support_set=support_set, user=alice)
    assert again.pk == job.pk and not joined
    job = run(job)
    assert job.status == "succeeded" and job.done == 6 and job.failed == 0, job.message
    labels = {label.image_id: label for label in Label.objects.filter(support_set=support_set)}
    assert len(labels) == 6
    ids = album_to_label["images"]
    assert labels[ids["cat-2.jpg"]].label == "cat" and labels[ids["cup-2.jpg"]].label == "cup"
    for label in labels.values():
        assert set(label.scores) == {"cat", "cup"} and sum(label.scores.values()) == pytest.approx(1, abs=1e-4)
        ordered = sorted(label.scores.values(), reverse=True)
        assert label.margin == pytest.approx(ordered[0] - ordered[1], abs=1e-4)
        assert label.state == "predicted" and label.source == "retrieval" and label.predicted_label == label.label
        assert {e["label"] for e in label.evidence} == {"cat", "cup"} and all(len(e["box"]) == 4 for e in label.evidence)


def test_batched_scores_equal_the_single_image_classification(album_to_label, alice, client_for):
    support_set = SupportSet.objects.get(pk=album_to_label["id"])
    run(labeling.label_job_start(support_set=support_set, user=alice)[0])
    api = client_for(alice)
    image_id = album_to_label["images"]["cat-3.jpg"]
    single = api.post(f"/api/v1/support-sets/{support_set.pk}/classify/", {"image_id": image_id}, format="json").json()
    label = Label.objects.get(support_set=support_set, image_id=image_id)
    assert label.scores == pytest.approx(single["class_scores"], abs=1e-4)


def test_resume_skips_labeled_images_unless_relabel_and_keeps_reviews(album_to_label, alice):
    support_set = SupportSet.objects.get(pk=album_to_label["id"])
    ids = album_to_label["images"]
    first = run(labeling.label_job_start(support_set=support_set, user=alice, image_ids=[ids["cat-2.jpg"]])[0])
    assert first.done == 1 and first.params["scope"] == "images"
    reviewed = Label.objects.get(image_id=ids["cat-2.jpg"])
    labeling.label_review(label=reviewed, user=alice, class_label="cup")
    second = run(labeling.label_job_start(support_set=support_set, user=alice)[0])
    assert second.total == 5 and second.done == 5
    third = run(labeling.label_job_start(support_set=support_set, user=alice, relabel=True)[0])
    assert third.total == 5 and Label.objects.filter(job=third).count() == 5
    reviewed.refresh_from_db()
    assert reviewed.state == "corrected" and reviewed.label == "cup" and reviewed.predicted_label == "cat"


def test_a_bad_image_is_recorded_and_skipped(album_to_label, alice):
    support_set = SupportSet.objects.get(pk=album_to_label["id"])
    broken = Image.objects.get(pk=album_to_label["images"]["astronaut.jpg"])
    broken.file.storage.delete(broken.file.name)
    job = run(labeling.label_job_start(support_set=support_set, user=alice)[0])
    assert job.status == "succeeded" and job.done == 6 and job.failed == 1
    assert [f["image_id"] for f in job.result["failures"]] == [broken.pk] and job.result["failures"][0]["reason"]
    assert Label.objects.filter(support_set=support_set).count() == 5


def test_a_cancelled_job_stops_at_its_next_batch(album_to_label, alice, settings):
    settings.LOUPE_RAG_LABEL_BATCH = 2
    support_set = SupportSet.objects.get(pk=album_to_label["id"])
    job, _ = labeling.label_job_start(support_set=support_set, user=alice)
    IndexJob.objects.filter(pk=job.pk).update(status="running")
    from workers.indexing import index_job_cancel

    index_job_cancel(job=job)
    assert labeling.label_job_run(job_id=job.pk, after_id=1)["skipped"] == "cancelled"
    assert not Label.objects.filter(support_set=support_set).exists()


def test_the_job_hands_over_to_a_next_task_after_its_time(album_to_label, alice, settings, monkeypatch):
    settings.LOUPE_RAG_LABEL_BATCH = 2
    settings.LOUPE_RAG_LABEL_TASK_SECONDS = 0
    sent = []
    from search.rag import tasks

    monkeypatch.setattr(tasks.encode_label_images, "delay", lambda *args: sent.append(args))
    support_set = SupportSet.objects.get(pk=album_to_label["id"])
    job, _ = labeling.label_job_start(support_set=support_set, user=alice)
    outcome = labeling.label_job_run(job_id=job.pk)
    assert outcome["labeled"] == 2 and sent == [(job.pk, outcome["continued_after"])]
    while sent:
        job_id, after_id = sent.pop()
        labeling.label_job_run(job_id=job_id, after_id=after_id)
    job.refresh_from_db()
    assert job.status == "succeeded" and Label.objects.filter(job=job).count() == 6
