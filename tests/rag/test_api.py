"""Support sets and classification through the API, on real photos with real ImageNet weights."""

import io

import numpy as np
import pytest

from albums import services as album_services
from search.rag.models import PatchEmbedding, SupportImage, SupportSet
from tests.images import image_bytes
from tests.rag.conftest import augmented, b64, jpeg, photo

pytestmark = pytest.mark.django_db


def classify(api, set_id, **body):
    return api.post(f"/api/v1/support-sets/{set_id}/classify/", body, format="json")


def test_a_viewer_classifies_and_gets_normalized_scores_and_labeled_evidence(two_class_set, viewer_of, client_for):
    response = classify(client_for(viewer_of), two_class_set["id"], image_base64=b64(augmented("chelsea")), k=5)
    assert response.status_code == 200, response.content
    body = response.json()
    scores = body["class_scores"]
    assert set(scores) == {"cat", "cup"}
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert scores["cat"] > scores["cup"]
    decision = body["decision"]
    assert decision["flag"] == "cat" and decision["source"] == "retrieval"
    assert "no vision-language model" in decision["explanation"].lower()
    assert body["patch_source"] == "tokens"
    # k evidence patches per class, each with its class, box and similarity, the best first.
    by_class = {label: [e for e in body["evidence"] if e["label"] == label] for label in ("cat", "cup")}
    assert all(len(items) == 5 for items in by_class.values())
    cat_image = SupportImage.objects.get(support_class_id=two_class_set["classes"]["cat"]).image
    for item in by_class["cat"]:
        x0, y0, x1, y1 = item["box"]
        assert 0 <= x0 < x1 <= cat_image.width and 0 <= y0 < y1 <= cat_image.height
        assert item["image_id"] == cat_image.pk
    sims = [item["similarity"] for item in by_class["cat"]]
    assert sims == sorted(sims, reverse=True)
    assert not any(item["sent_to_vlm"] for item in body["evidence"])  # no model is configured to read them
    # The raw score is the mean over query patches of each one's best cosine in the class, as documented:
    # recomputed here from the stored patch vectors and the query's own patches.
    raw = {c["label"]: c["raw_score"] for c in body["classes"]}
    assert raw == pytest.approx(_raw_scores_in_numpy(two_class_set, augmented("chelsea")), abs=1e-5)
    assert raw["cat"] <= sims[0]
    crop = client_for(viewer_of).get(by_class["cat"][0]["crop_url"])
    assert crop.status_code == 200 and crop["Content-Type"] == "image/webp"


def _raw_scores_in_numpy(two_class_set, query_bytes) -> dict[str, float]:
    from encoders.images import open_rgb
    from encoders.registry import get_encoder
    from search.rag.patches import image_patches

    encoder = get_encoder("dense:efficientnet-lite0")
    query = image_patches(encoder, open_rgb(io.BytesIO(query_bytes)), resolution=224, patch_size=32, source="tokens").vectors
    raw = {}
    for label, class_id in two_class_set["classes"].items():
        support = np.stack([np.asarray(v, dtype=np.float32) for v in PatchEmbedding.objects.filter(support_class_id=class_id).values_list("vector", flat=True)])
        raw[label] = float((query @ support.T).max(axis=1).mean())
    return raw


def test_the_other_class_wins_for_the_other_photo(two_class_set, alice, client_for):
    body = classify(client_for(alice), two_class_set["id"], image_base64=b64(augmented("coffee"))).json()
    assert body["decision"]["flag"] == "cup"
    assert body["class_scores"]["cup"] > 0.5


def test_classification_embeds_what_the_worker_has_not_yet_and_keeps_it(two_class_set, alice, client_for):
    assert PatchEmbedding.objects.count() == 0  # no worker in this test: the queued tasks never ran
    first = classify(client_for(alice), two_class_set["id"], image_base64=b64(augmented("chelsea"))).json()
    assert first["embedded_now"] == 2
    assert PatchEmbedding.objects.count() == 2 * 49  # 224 / 32 = 7 a side, EfficientNet's own 7×7 grid
    assert set(SupportImage.objects.values_list("status", flat=True)) == {"ready"}
    second = classify(client_for(alice), two_class_set["id"], image_base64=b64(augmented("chelsea"))).json()
    assert second["embedded_now"] == 0
    assert second["class_scores"] == first["class_scores"]


def test_changing_patch_settings_repatches_and_old_rows_go(two_class_set, alice, client_for):
    api = client_for(alice)
    classify(api, two_class_set["id"], image_base64=b64(augmented("chelsea")))
    old_keys = set(PatchEmbedding.objects.values_list("model_key", flat=True))
    response = api.patch(f"/api/v1/support-sets/{two_class_set['id']}/", {"patch_size": 112}, format="json")
    assert response.status_code == 200
    assert response.json()["generation"] == 2
    assert set(SupportImage.objects.values_list("status", flat=True)) == {"pending"}
    body = classify(api, two_class_set["id"], image_base64=b64(augmented("chelsea"))).json()
    assert body["embedded_now"] == 2 and body["decision"]["flag"] == "cat"
    new_keys = set(PatchEmbedding.objects.values_list("model_key", flat=True))
    assert len(new_keys) == 1 and not (new_keys & old_keys)
    assert PatchEmbedding.objects.count() == 2 * 4


def test_the_class_meaning_flag_true_is_a_setting_of_the_set_that_repatches_nothing(two_class_set, alice, client_for,
                                                                                   viewer_of):
    api = client_for(alice)
    assert api.get(f"/api/v1/support-sets/{two_class_set['id']}/").json()["flag_true_label"] == ""
    response = api.patch(f"/api/v1/support-sets/{two_class_set['id']}/", {"flag_true_label": " cup "}, format="json")
    assert response.status_code == 200
    assert (response.json()["flag_true_label"], response.json()["generation"]) == ("cup", 1)
    refused = client_for(viewer_of).patch(f"/api/v1/support-sets/{two_class_set['id']}/", {"flag_true_label": "cat"},
                                          format="json")
    assert refused.status_code == 403 and SupportSet.objects.get(pk=two_class_set["id"]).flag_true_label == "cup"


def test_crops_patch_source_works_too(two_class_set, alice, client_for):
    api = client_for(alice)
    api.patch(f"/api/v1/support-sets/{two_class_set['id']}/", {"patch_source": "crops", "patch_size": 112}, format="json")
    body = classify(api, two_class_set["id"], image_base64=b64(augmented("chelsea"))).json()
    assert body["patch_source"] == "crops" and body["decision"]["flag"] == "cat"


def test_classify_by_image_id_and_by_multipart(two_class_set, alice, client_for):
    api = client_for(alice)
    [stored] = album_services.image_upload_many(
        album=two_class_set["album"], user=alice, files=[("q.jpg", io.BytesIO(augmented("coffee")))]
    )
    by_id = classify(api, two_class_set["id"], image_id=stored.image_id)
    assert by_id.status_code == 200 and by_id.json()["decision"]["flag"] == "cup"
    multipart = api.post(
        f"/api/v1/support-sets/{two_class_set['id']}/classify/",
        {"image": io.BytesIO(augmented("coffee")), "k": 3},
        format="multipart",
    )
    assert multipart.status_code == 200 and multipart.json()["decision"]["flag"] == "cup"


# --- building sets ----------------------------------------------------------------------------


def test_set_detail_lists_classes_images_and_status(two_class_set, alice, client_for):
    body = client_for(alice).get(f"/api/v1/support-sets/{two_class_set['id']}/").json()
    assert [c["label"] for c in body["classes"]] == ["cat", "cup"]
    assert all(len(c["images"]) == 1 for c in body["classes"])
    assert body["status"] == {"pending": 2, "ready": 0, "failed": 0}
    assert body["vlm"] is None and body["encoder_spec"] == "dense:efficientnet-lite0"
    listed = client_for(alice).get(f"/api/v1/support-sets/?album={two_class_set['album'].pk}").json()
    assert [s["id"] for s in listed["results"]] == [two_class_set["id"]]
    assert listed["results"][0]["class_count"] == 2 and listed["results"][0]["image_count"] == 2


def test_pick_album_images_and_refuse_foreign_and_double_use(two_class_set, alice, bob, client_for):
    api = client_for(alice)
    [mine] = album_services.image_upload_many(
        album=two_class_set["album"], user=alice, files=[("x.jpg", io.BytesIO(jpeg(photo("astronaut"))))]
    )
    bobs_album = album_services.album_create(owner=bob, name="bob's")
    [foreign] = album_services.image_upload_many(album=bobs_album, user=bob, files=[("y.png", io.BytesIO(image_bytes()))])
    cat = two_class_set["classes"]["cat"]
    response = api.post(
        f"/api/v1/support-classes/{cat}/images/", {"image_ids": [mine.image_id, foreign.image_id]}, format="json"
    )
    assert response.status_code == 201
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["added", "rejected"]
    assert results[1]["code"] == "image_not_found"  # the same answer as for a missing id
    # An image is an example of one class per set.
    again = api.post(
        f"/api/v1/support-classes/{two_class_set['classes']['cup']}/images/", {"image_ids": [mine.image_id]}, format="json"
    ).json()["results"][0]
    assert again["status"] == "rejected" and again["code"] == "already_in_set" and "cat" in again["reason"]


def test_bad_uploads_are_rejected_per_file_and_the_good_one_added(two_class_set, alice, client_for):
    cat = two_class_set["classes"]["cat"]
    response = client_for(alice).post(
        f"/api/v1/support-classes/{cat}/images/",
        {"files": [io.BytesIO(b"not an image"), io.BytesIO(image_bytes(color=(1, 2, 3)))]},
        format="multipart",
    )
    assert response.status_code == 201
    assert [r["status"] for r in response.json()["results"]] == ["rejected", "added"]
    assert response.json()["results"][0]["code"] == "not_an_image"


def test_duplicate_names_and_bad_settings_are_clear_errors(two_class_set, rag_album, alice, client_for):
    api = client_for(alice)
    dup = api.post("/api/v1/support-sets/", {"album": rag_album.pk, "name": "cat or cup"}, format="json")
    assert dup.status_code == 409 and dup.json()["code"] == "support_set_conflict"
    label = api.post(f"/api/v1/support-sets/{two_class_set['id']}/classes/", {"label": "cat"}, format="json")
    assert label.status_code == 409
    too_big = api.patch(f"/api/v1/support-sets/{two_class_set['id']}/", {"patch_size": 512}, format="json")
    assert too_big.status_code == 400 and "patch size" in too_big.json()["message"]
    unknown = api.post("/api/v1/support-sets/", {"album": rag_album.pk, "name": "x", "colour": "red"}, format="json")
    assert unknown.status_code == 400 and "colour" in unknown.json()["extra"]["fields"]
    spec = api.post("/api/v1/support-sets/", {"album": rag_album.pk, "name": "y", "encoder_spec": "nope:thing"}, format="json")
    assert spec.status_code == 400 and spec.json()["code"] == "encoder_spec_invalid"
    assert SupportSet.objects.count() == 1


def test_removing_a_class_or_an_image_keeps_the_album_image(two_class_set, alice, client_for):
    api = client_for(alice)
    support_image = SupportImage.objects.get(support_class_id=two_class_set["classes"]["cup"])
    assert api.delete(f"/api/v1/support-images/{support_image.pk}/").status_code == 204
    assert api.get(f"/api/v1/images/{support_image.image_id}/").status_code == 200
    assert api.delete(f"/api/v1/support-classes/{two_class_set['classes']['cat']}/").status_code == 204
    assert SupportImage.objects.count() == 0


# --- bad classification input -----------------------------------------------------------------


def test_no_classes_and_classes_without_images_are_400s_that_say_which(rag_album, alice, client_for):
    api = client_for(alice)
    set_id = api.post("/api/v1/support-sets/", {"album": rag_album.pk, "name": "empty"}, format="json").json()["id"]
    query = b64(jpeg(photo("chelsea")))
    empty = classify(api, set_id, image_base64=query)
    assert empty.status_code == 400 and empty.json()["code"] == "support_set_incomplete"
    assert "no classes" in empty.json()["message"]
    a = api.post(f"/api/v1/support-sets/{set_id}/classes/", {"label": "a"}, format="json").json()["id"]
    api.post(f"/api/v1/support-sets/{set_id}/classes/", {"label": "b"}, format="json")
    api.post(f"/api/v1/support-classes/{a}/images/", {"files": [io.BytesIO(jpeg(photo("coffee")))]}, format="multipart")
    missing_b = classify(api, set_id, image_base64=query)
    assert missing_b.status_code == 400
    assert missing_b.json()["extra"]["empty_classes"] == ["b"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"image_base64": b64(b"\xff\xd8\xff\xe0garbage")}, 400, "corrupt_image"),
        ({"image_base64": "%%% not base64 %%%"}, 400, "invalid_base64"),
        ({}, 400, "invalid"),
        ({"image_base64": b64(b"x"), "image_id": 1}, 400, "invalid"),
        ({"image_base64": "eA==", "frobnicate": 1}, 400, "invalid"),
        ({"image_base64": "eA==", "k": 0}, 400, "invalid"),
        ({"image_base64": "eA==", "score_temperature": 0}, 400, "invalid"),
        ({"image_base64": "eA==", "top_p": 5}, 400, "invalid"),
    ],
)
def test_bad_classify_requests(two_class_set, alice, client_for, body, status, code):
    response = classify(client_for(alice), two_class_set["id"], **body)
    assert response.status_code == status, response.content
    assert response.json()["code"] == code


def test_an_oversized_query_image_is_413(two_class_set, alice, client_for, settings):
    settings.LOUPE_MAX_QUERY_BYTES = 1000
    picture = jpeg(photo("chelsea"))
    response = classify(client_for(alice), two_class_set["id"], image_base64=b64(picture))
    assert response.status_code == 413 and response.json()["code"] == "query_image_too_large"
    assert response.json()["extra"]["max_bytes"] == 1000
    # A body declared past the limit for any query image is refused before it is parsed.
    response = classify(client_for(alice), two_class_set["id"], image_base64=b64(picture * 8))
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"


# --- who may do what --------------------------------------------------------------------------


def test_viewers_read_and_classify_but_do_not_change(two_class_set, viewer_of, client_for):
    api = client_for(viewer_of)
    set_id, cat = two_class_set["id"], two_class_set["classes"]["cat"]
    assert api.get(f"/api/v1/support-sets/{set_id}/").status_code == 200
    assert api.post(f"/api/v1/support-sets/{set_id}/classes/", {"label": "dog"}, format="json").status_code == 403
    assert api.patch(f"/api/v1/support-sets/{set_id}/", {"name": "mine"}, format="json").status_code == 403
    assert api.delete(f"/api/v1/support-classes/{cat}/").status_code == 403
    assert api.post(
        "/api/v1/support-sets/", {"album": two_class_set["album"].pk, "name": "v"}, format="json"
    ).status_code == 403
    assert SupportSet.objects.get(pk=set_id).name == "cat or cup"


def test_strangers_learn_nothing(two_class_set, bob, client_for):
    api = client_for(bob)
    set_id, cat = two_class_set["id"], two_class_set["classes"]["cat"]
    support_image = SupportImage.objects.first()
    missing = api.get("/api/v1/support-sets/999999/")
    for response in (
        api.get(f"/api/v1/support-sets/{set_id}/"),
        classify(api, set_id, image_base64=b64(jpeg(photo("chelsea")))),
        api.get(f"/api/v1/support-classes/{cat}/images/"),
        api.get(f"/api/v1/support-images/{support_image.pk}/crop?box=0,0,10,10"),
        api.get(f"/api/v1/support-sets/?album={two_class_set['album'].pk}"),
    ):
        assert response.status_code == 404
    assert api.get(f"/api/v1/support-sets/{set_id}/").json()["message"] == missing.json()["message"]
    assert api.get("/api/v1/support-sets/").json()["results"] == []
    assert client_for(None).get(f"/api/v1/support-sets/{set_id}/").status_code == 401


def test_an_example_that_cannot_be_read_is_recorded_and_the_others_still_count(two_class_set, alice, client_for):
    api = client_for(alice)
    cup = two_class_set["classes"]["cup"]
    api.post(f"/api/v1/support-classes/{cup}/images/", {"files": [io.BytesIO(jpeg(photo("astronaut")))]}, format="multipart")
    lost = SupportImage.objects.filter(support_class_id=cup).order_by("id").first()  # the coffee photo
    lost.image.file.storage.delete(lost.image.file.name)  # storage lost the file after upload
    # The query is the cup's one readable example (the astronaut) byte for byte: each of its patches
    # finds itself among the cup's (cosine 1), so the cup wins whatever the weights, if it counts.
    body = classify(api, two_class_set["id"], image_base64=b64(jpeg(photo("astronaut")))).json()
    lost.refresh_from_db()
    assert lost.status == "failed" and "missing" in lost.failure_reason
    raw = {c["label"]: c["raw_score"] for c in body["classes"]}
    assert raw["cup"] == pytest.approx(1.0, abs=1e-4) and raw["cat"] < raw["cup"]
    assert body["decision"]["flag"] == "cup" and body["class_scores"]["cup"] > 0.5
    assert SupportImage.objects.filter(support_set_id=two_class_set["id"], status="ready").count() == 2


def test_classification_counts_against_the_search_rate(two_class_set, alice, client_for, settings):
    from django.core.cache import cache

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"auth": "9/minute", "search": "1/minute", "upload": "9/minute"}}
    cache.delete(f"throttle_search_{alice.pk}")
    api = client_for(alice)
    assert classify(api, two_class_set["id"], image_base64="eA==").status_code == 400  # counted all the same
    limited = classify(api, two_class_set["id"], image_base64="eA==")
    assert limited.status_code == 429 and limited.json()["code"] == "throttled"
    cache.delete(f"throttle_search_{alice.pk}")


def test_a_set_still_being_embedded_answers_409_with_progress(two_class_set, alice, client_for, settings):
    settings.LOUPE_RAG_INLINE_PATCH_MAX = 1  # two examples pending, only one may be embedded in-request
    response = classify(client_for(alice), two_class_set["id"], image_base64=b64(augmented("chelsea")))
    assert response.status_code == 409 and response.json()["code"] == "support_set_patching"
    assert response.json()["extra"] == {"ready": 0, "total": 2}


def test_a_set_whose_encoder_weights_are_missing_answers_503_naming_the_file(two_class_set, alice, client_for, settings, tmp_path):
    settings.LOUPE_MODELS_DIR = tmp_path / "no-models"
    SupportSet.objects.filter(pk=two_class_set["id"]).update(encoder_spec="open-clip:ViT-B-32/laion2b_s34b_b79k")
    response = classify(client_for(alice), two_class_set["id"], image_base64=b64(augmented("chelsea")))
    assert response.status_code == 503 and response.json()["code"] == "encoder_weights_missing"
    assert "no-models" in response.json()["message"]
