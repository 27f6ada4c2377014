"""The RAG Vision Engine's endpoints, driven the way its client drives them (multipart uploads with
className/classes/index, then a JSON invocation with every field it sends), plus a Loupe token."""

import io
import json

import pytest
from rest_framework.test import APIClient

from albums.tokens import api_token_create
from search.rag.api.compat import COMPAT_SET_NAME
from search.rag.models import SupportClass, SupportImage, SupportSet
from tests.rag.conftest import augmented, b64, jpeg, photo

pytestmark = pytest.mark.django_db

CLASSES = json.dumps(["cat", "cup"])


def reference_client(user) -> APIClient:
    _, key = api_token_create(user=user, name="rag client")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def upload(client, class_name, index, data: bytes, classes=CLASSES):
    return client.post(
        "/api/support/upload/image",
        {"className": class_name, "classes": classes, "index": str(index), "file": io.BytesIO(data)},
        format="multipart",
    )


def invocation(**overrides) -> dict:
    payload = {
        "imageId": None,
        "encodedImage": "data:image/jpeg;base64," + b64(augmented("chelsea")),
        "flagKey": "VisibleDirtyFlag",
        "systemPrompt": "You are an inspector.",
        "userPrompt": "Which class is it?",
        "kRetrieval": 4,
        "maxPatchesPerClass": 3,
        "maxNewTokens": 200,
        "inputResolution": 224,
        "supportRes": 224,
        "supportPatchSize": 32,
        "temperature": 0.2,
        "topP": 0.9,
    }
    payload.update(overrides)
    return payload


@pytest.fixture
def uploaded(alice, rag_settings):
    client = reference_client(alice)
    for index, (label, sample) in enumerate((("cat", "chelsea"), ("cup", "coffee"), ("cup", "coffee"))):
        response = upload(client, label, index, jpeg(photo(sample), quality=90 - index))
        assert response.status_code == 200, response.content
        assert response.json()["success"] is True
    return client


def test_the_reference_client_flow_works(uploaded, alice):
    response = uploaded.post("/api/ragvision/invocations", invocation(), format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True and body["error"] is None
    assert body["flag"] == "cat" and body["flagKey"] == "VisibleDirtyFlag"
    assert set(body["classScores"]) == {"cat", "cup"}
    assert sum(body["classScores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert isinstance(body["elapsedTimeMs"], int) and body["imageId"]
    assert "no vision-language model" in body["explanation"].lower()
    support_set = SupportSet.objects.get(name=COMPAT_SET_NAME)
    assert support_set.album.owner == alice
    assert (support_set.support_resolution, support_set.patch_size) == (224, 32)
    assert SupportImage.objects.filter(support_set=support_set).count() == 3


def test_index_zero_starts_over_in_the_callers_set_only(uploaded, bob, rag_settings):
    bobs = reference_client(bob)
    assert upload(bobs, "cat", 0, jpeg(photo("astronaut"))).status_code == 200
    sets = {s.album.owner.username: s for s in SupportSet.objects.filter(name=COMPAT_SET_NAME)}
    assert set(sets) == {"alice", "bob"}
    assert SupportImage.objects.filter(support_set=sets["alice"]).count() == 3
    assert SupportImage.objects.filter(support_set=sets["bob"]).count() == 1
    # Alice starts over: her classes are replaced; Bob's set is untouched.
    assert upload(uploaded, "dog", 0, jpeg(photo("rocket")), classes=json.dumps(["dog", "plane"])).status_code == 200
    assert list(SupportClass.objects.filter(support_set=sets["alice"]).values_list("label", flat=True)) == ["dog", "plane"]
    assert SupportImage.objects.filter(support_set=sets["alice"]).count() == 1
    assert SupportImage.objects.filter(support_set=sets["bob"]).count() == 1


def test_without_authentication_both_endpoints_are_401(rag_settings):
    anonymous = APIClient()
    up = upload(anonymous, "cat", 0, jpeg(photo("chelsea")))
    inv = anonymous.post("/api/ragvision/invocations", invocation(), format="json")
    for response in (up, inv):
        assert response.status_code == 401
        assert response.json()["success"] is False and response.json()["error"]
    assert SupportSet.objects.count() == 0


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"className": "dog"}, "unknown class"),
        ({"classes": "cat, cup"}, "JSON list"),
        ({"index": "first"}, "Invalid index"),
    ],
)
def test_bad_uploads_are_400_with_the_reference_shape(alice, rag_settings, fields, message):
    client = reference_client(alice)
    body = {"className": "cat", "classes": CLASSES, "index": "0", "file": io.BytesIO(jpeg(photo("chelsea"))), **fields}
    response = client.post("/api/support/upload/image", body, format="multipart")
    assert response.status_code == 400
    assert response.json()["success"] is False and message in response.json()["error"]


def test_a_corrupt_support_image_is_rejected_with_its_reason(alice, rag_settings):
    response = upload(reference_client(alice), "cat", 0, b"\x89PNG\r\n\x1a\nbroken")
    assert response.status_code == 400 and response.json()["code"] == "corrupt_image"


def test_invocations_before_any_upload_and_on_foreign_sets_are_404(uploaded, bob, rag_settings):
    bobs = reference_client(bob)
    assert bobs.post("/api/ragvision/invocations", invocation(), format="json").status_code == 404
    alices_set = SupportSet.objects.get(name=COMPAT_SET_NAME)
    foreign = bobs.post("/api/ragvision/invocations", invocation(supportSetId=alices_set.pk), format="json")
    assert foreign.status_code == 404 and foreign.json()["success"] is False


def test_bad_invocations(uploaded):
    corrupt = uploaded.post("/api/ragvision/invocations", invocation(encodedImage=b64(b"\xff\xd8\xffjunk")), format="json")
    assert corrupt.status_code == 400 and corrupt.json()["success"] is False
    not_b64 = uploaded.post("/api/ragvision/invocations", invocation(encodedImage="@@@"), format="json")
    assert not_b64.status_code == 400 and "base64" in not_b64.json()["error"]
    wrong_type = uploaded.post("/api/ragvision/invocations", invocation(kRetrieval="many"), format="json")
    assert wrong_type.status_code == 400


def test_a_viewer_cannot_repatch_a_set_by_asking_for_other_settings(uploaded, make_user):
    from albums import services as album_services

    assert uploaded.post("/api/ragvision/invocations", invocation(), format="json").status_code == 200  # the owner sets 224/32
    support_set = SupportSet.objects.get(name=COMPAT_SET_NAME)
    viewer = make_user("vera")
    album_services.album_member_add(album=support_set.album, username="vera", role="viewer")
    client = reference_client(viewer)
    same = client.post("/api/ragvision/invocations", invocation(supportSetId=support_set.pk), format="json")
    assert same.status_code == 200
    other = client.post("/api/ragvision/invocations", invocation(supportSetId=support_set.pk, supportPatchSize=112), format="json")
    assert other.status_code == 409 and other.json()["code"] == "support_settings_mismatch"
    assert SupportSet.objects.get(pk=support_set.pk).patch_size == 32


def _shared_compat_set(owner_client, make_user, *, role: str | None):
    """Alice's compatible-API set (cat, cup; three images), and a client for a user with `role` on its album
    (None: no membership at all)."""
    from albums import services as album_services

    support_set = SupportSet.objects.get(name=COMPAT_SET_NAME)
    user = make_user("vera")
    if role is not None:
        album_services.album_member_add(album=support_set.album, username="vera", role=role)
    return support_set, reference_client(user)


def _start_over(client, support_set):
    return client.post(
        "/api/support/upload/image",
        {"className": "dog", "classes": json.dumps(["dog"]), "index": "0", "file": io.BytesIO(jpeg(photo("rocket"))),
         "supportSetId": str(support_set.pk)},
        format="multipart",
    )


def _labels(support_set):
    return sorted(SupportClass.objects.filter(support_set=support_set).values_list("label", flat=True))


def test_a_viewer_of_a_shared_set_cannot_start_it_over(uploaded, make_user):
    support_set, viewer = _shared_compat_set(uploaded, make_user, role="viewer")
    response = _start_over(viewer, support_set)
    # As every write endpoint refuses a viewer: 403 role_required, in the reference's body.
    assert response.status_code == 403, response.content
    assert response.json()["success"] is False and response.json()["code"] == "role_required"
    assert _labels(support_set) == ["cat", "cup"]
    assert SupportImage.objects.filter(support_set=support_set).count() == 3


def test_a_stranger_cannot_start_a_set_over_nor_learn_that_it_exists(uploaded, make_user):
    support_set, stranger = _shared_compat_set(uploaded, make_user, role=None)
    response = _start_over(stranger, support_set)
    missing = _start_over(stranger, SupportSet(pk=support_set.pk + 1000))
    assert response.status_code == missing.status_code == 404
    assert response.json() == missing.json()
    assert _labels(support_set) == ["cat", "cup"]
    assert SupportImage.objects.filter(support_set=support_set).count() == 3


def test_an_editor_of_a_shared_set_may_start_it_over(uploaded, make_user):
    support_set, editor = _shared_compat_set(uploaded, make_user, role="editor")
    response = _start_over(editor, support_set)
    assert response.status_code == 200, response.content
    assert response.json()["supportSetId"] == support_set.pk
    assert _labels(support_set) == ["dog"]
    assert SupportImage.objects.filter(support_set=support_set).count() == 1


def test_a_rejected_image_at_index_zero_leaves_the_set_as_it_was(uploaded):
    support_set = SupportSet.objects.get(name=COMPAT_SET_NAME)
    response = upload(uploaded, "dog", 0, b"\x89PNG\r\n\x1a\nbroken", classes=json.dumps(["dog"]))
    assert response.status_code == 400 and response.json()["code"] == "corrupt_image"
    assert _labels(support_set) == ["cat", "cup"]
    assert SupportImage.objects.filter(support_set=support_set).count() == 3
