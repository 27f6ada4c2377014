"""The RAG Vision Engine's endpoints, driven the way its client drives them (multipart uploads with
className/classes/index, then a JSON invocation with every field it sends), plus a Loupe token."""

import base64
import io
import json

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from albums.tokens import api_token_create
from search.rag.api.compat import COMPAT_SET_NAME
from search.rag.models import SupportClass, SupportImage, SupportSet
from tests.rag.conftest import augmented, b64, jpeg, photo

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("reuse_forward_passes")]

CLASSES = json.dumps(["cat", "cup"])


def _basic(client: APIClient, username: str, password: str) -> APIClient:
    client.credentials(HTTP_AUTHORIZATION="Basic " + base64.b64encode(f"{username}:{password}".encode()).decode())
    return client


def _without_timing(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("elapsedTimeMs", "imageId")}


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
    response = uploaded.post("/api/ragvision/invocations", invocation(flagKey=None), format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["success"] is True and body["error"] is None
    # No flagKey (the engine's client as published): the flag is the class, as the engine's code gives it.
    assert body["flag"] == "cat" and body["decision"] == "cat" and body["flagKey"] is None
    assert body["decisionSource"] == "retrieval"
    assert set(body["classScores"]) == {"cat", "cup"}
    assert sum(body["classScores"].values()) == pytest.approx(1.0, abs=1e-5)
    assert isinstance(body["elapsedTimeMs"], int) and body["imageId"]
    assert "no vision-language model" in body["explanation"].lower()
    support_set = SupportSet.objects.get(name=COMPAT_SET_NAME)
    assert support_set.album.owner == alice
    assert (support_set.support_resolution, support_set.patch_size) == (224, 32)
    assert SupportImage.objects.filter(support_set=support_set).count() == 3
    # Made as the engine patches: each patch embedded as an image of its own.
    assert support_set.patch_source == "crops"


def test_a_flag_key_without_a_model_gives_a_null_flag_and_says_why(uploaded):
    response = uploaded.post("/api/ragvision/invocations", invocation(), format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    # The published contract: flag is a boolean or null; the class Loupe decided is in `decision`.
    assert body["flag"] is None and body["flagKey"] == "VisibleDirtyFlag"
    assert body["decision"] == "cat" and body["decisionSource"] == "retrieval"
    assert "flag_true_label" in body["explanation"]


@pytest.mark.parametrize(("true_label", "flag"), [("cat", True), ("cup", False), ("dog", None)])
def test_without_a_model_the_sets_true_class_decides_the_flag(uploaded, alice, client_for, true_label, flag):
    support_set = SupportSet.objects.get(name=COMPAT_SET_NAME)
    changed = client_for(alice).patch(f"/api/v1/support-sets/{support_set.pk}/", {"flag_true_label": true_label}, format="json")
    assert changed.status_code == 200 and changed.json()["flag_true_label"] == true_label
    body = uploaded.post("/api/ragvision/invocations", invocation(), format="json").json()
    assert body["decision"] == "cat" and body["flag"] is flag and body["decisionSource"] == "retrieval"
    # The setting is a label, so the engine client's start-over (index 0 recreates the classes) keeps it.
    assert upload(uploaded, "cat", 0, jpeg(photo("chelsea"))).status_code == 200
    assert SupportSet.objects.get(pk=support_set.pk).flag_true_label == true_label


def test_the_healthcheck_answers_as_the_engine_does_to_anyone(rag_settings):
    for client in (APIClient(), _basic(APIClient(), "nobody", "wrong")):
        response = client.get("/api/ragvision/healthcheck")
        assert response.status_code == 201 and response.json() == {"status": "ok"}


def test_error_bodies_carry_the_request_id_flag_key_and_time(uploaded, bob, rag_settings):
    bad = uploaded.post("/api/ragvision/invocations", invocation(imageId="car-17", kRetrieval="many"), format="json")
    assert bad.status_code == 400
    body = bad.json()
    assert body["success"] is False and body["error"] and body["code"] == "invalid"
    assert body["imageId"] == "car-17" and body["flagKey"] == "VisibleDirtyFlag"
    assert isinstance(body["elapsedTimeMs"], int) and body["elapsedTimeMs"] >= 0
    # Before any upload of Bob's: 404, and an id made up for the request, as the engine does.
    missing = reference_client(bob).post("/api/ragvision/invocations", invocation(), format="json")
    assert missing.status_code == 404
    assert missing.json()["imageId"] and missing.json()["flagKey"] == "VisibleDirtyFlag"
    anonymous = APIClient().post("/api/ragvision/invocations", invocation(), format="json")
    assert anonymous.status_code == 401
    assert {"imageId", "flagKey", "elapsedTimeMs"} <= set(anonymous.json())
    refused = upload(reference_client(bob), "dog", 0, jpeg(photo("chelsea")))  # dog is not in CLASSES
    assert refused.status_code == 400
    assert {"imageId", "flagKey", "elapsedTimeMs"} <= set(refused.json())


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
    assert _without_timing(response.json()) == _without_timing(missing.json())
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


# --- Credentials in the base URL: HTTP Basic with an API token as the password -----------------------


def test_http_basic_with_a_token_as_password_works_on_the_compatible_endpoints_only(alice, rag_settings):
    _, key = api_token_create(user=alice, name="engine client")
    client = _basic(APIClient(), "alice", key)
    assert upload(client, "cat", 0, jpeg(photo("chelsea"))).status_code == 200
    assert upload(client, "cup", 1, jpeg(photo("coffee"))).status_code == 200
    response = client.post("/api/ragvision/invocations", invocation(), format="json")
    assert response.status_code == 200 and response.json()["decision"] == "cat"
    # Nowhere else: the rest of the API takes a token in its own header.
    for path in ("/api/v1/albums/", f"/api/v1/support-sets/{response.json()['supportSetId']}/"):
        refused = client.get(path)
        assert refused.status_code == 401 and refused.json()["code"] == "not_authenticated"


def test_a_token_from_the_token_endpoint_works_as_the_password_too(alice, rag_settings):
    token = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json").json()["token"]
    assert upload(_basic(APIClient(), "alice", token), "cat", 0, jpeg(photo("chelsea"))).status_code == 200


@pytest.mark.parametrize(("username", "password"), [
    ("alice", "pw-alice"),  # the account password: never
    ("bob", "TOKEN"),  # Alice's token under Bob's name
    ("alice", "lp_not-a-token"),
    ("alice", "0123456789abcdef0123456789abcdef01234567"),
])
def test_http_basic_refuses_anything_but_the_owners_token(alice, bob, rag_settings, username, password):
    _, key = api_token_create(user=alice, name="engine client")
    client = _basic(APIClient(), username, key if password == "TOKEN" else password)
    response = upload(client, "cat", 0, jpeg(photo("chelsea")))
    assert response.status_code == 401, response.content
    body = response.json()
    assert body["success"] is False and body["code"] == "authentication_failed"
    assert "never the account password" in body["error"]
    assert client.post("/api/ragvision/invocations", invocation(), format="json").status_code == 401
    assert SupportSet.objects.count() == 0


@pytest.fixture
def auth_rate(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "3/minute"}}
    cache.delete("throttle_auth_127.0.0.1")
    yield
    cache.delete("throttle_auth_127.0.0.1")


def test_http_basic_is_throttled_like_the_token_endpoint(alice, rag_settings, auth_rate):
    _, key = api_token_create(user=alice, name="engine client")
    right = _basic(APIClient(), "alice", key)
    # A client's own requests do not use the allowance up...
    for index in range(4):
        assert upload(right, "cat", index, jpeg(photo("chelsea"), quality=80 + index)).status_code == 200
    # ...guesses do, and once it is spent the address waits, the right token included, as at the token endpoint.
    for _ in range(3):
        assert upload(_basic(APIClient(), "alice", "pw-alice"), "cat", 1, jpeg(photo("coffee"))).status_code == 401
    throttled = upload(right, "cat", 1, jpeg(photo("coffee")))
    assert throttled.status_code == 429 and throttled.json()["code"] == "throttled"
    assert int(throttled["Retry-After"]) >= 1
    exchange = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json")
    assert exchange.status_code == 429  # one allowance per address for every credential check
    assert SupportImage.objects.count() == 4
