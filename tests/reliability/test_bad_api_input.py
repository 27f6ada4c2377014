"""Bad API input: unknown fields, wrong types, NaN and negative numbers, enormous limits, empty
queries, unknown encoder specs, malformed base64 and JSON. Each is a 4xx in the one error shape
(`config/errors.py`) that names the problem, and nothing is written."""

from __future__ import annotations

import base64

import pytest

from albums.models import Album, Image
from workers.models import Embedding

pytestmark = pytest.mark.django_db

MODEL = "open-clip:tiny-vit/random@sha256:0123456789ab"


def _assert_error(response, status: int, code: str, field: str | None = None):
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"message", "code", "extra"} and body["message"], body
    assert body["code"] == code, body
    if field:
        assert field in body["extra"]["fields"], body


ALBUM_CREATE = [
    ("unknown-field", {"name": "x", "colour": "red"}, "invalid", "colour"),
    ("missing-name", {"description": "no name"}, "invalid", "name"),
    ("empty-name", {"name": ""}, "invalid", "name"),
    ("name-too-long", {"name": "n" * 201}, "invalid", "name"),
    ("name-wrong-type", {"name": {"nested": True}}, "invalid", "name"),
    ("max-results-negative", {"name": "x", "max_search_results": -5}, "invalid", "max_search_results"),
    ("max-results-enormous", {"name": "x", "max_search_results": 10**15}, "invalid", "max_search_results"),
    ("max-results-text", {"name": "x", "max_search_results": "lots"}, "invalid", "max_search_results"),
    ("min-score-nan", {"name": "x", "min_search_score": "NaN"}, "invalid", "min_search_score"),
    ("min-score-infinity", {"name": "x", "min_search_score": "Infinity"}, "invalid", "min_search_score"),
    ("bool-wrong-type", {"name": "x", "use_query_optimization": "perhaps"}, "invalid", "use_query_optimization"),
    ("unknown-encoder-backend", {"name": "x", "encoder_spec": "nope:thing"}, "encoder_spec_invalid", None),
    ("encoder-spec-without-model", {"name": "x", "encoder_spec": "open-clip:"}, "encoder_spec_invalid", None),
    ("encoder-spec-garbage", {"name": "x", "encoder_spec": "../../etc/passwd"}, "encoder_spec_invalid", None),
]


@pytest.mark.parametrize("body,code,field", [c[1:] for c in ALBUM_CREATE], ids=[c[0] for c in ALBUM_CREATE])
def test_album_create_rejects(alice, client_for, body, code, field):
    response = client_for(alice).post("/api/v1/albums/", body, format="json")
    _assert_error(response, 400, code, field)
    assert not Album.objects.exists()


RAW_BODIES = [
    ("malformed-json", b'{"name": "x",', "parse_error"),
    ("nan-literal", b'{"name": "x", "min_search_score": NaN}', "parse_error"),
    ("json-array", b'[1, 2, 3]', "invalid"),
    ("json-string", b'"just a string"', "invalid"),
    ("invalid-utf8", b'{"name": "\xff\xfe"}', "parse_error"),
]


@pytest.mark.parametrize("raw,code", [c[1:] for c in RAW_BODIES], ids=[c[0] for c in RAW_BODIES])
def test_album_create_rejects_raw_bodies(alice, client_for, raw, code):
    response = client_for(alice).generic("POST", "/api/v1/albums/", raw, content_type="application/json")
    _assert_error(response, 400, code)
    assert not Album.objects.exists()


def test_wrong_content_type_is_415(alice, client_for):
    response = client_for(alice).generic("POST", "/api/v1/albums/", b"name=x", content_type="text/csv")
    _assert_error(response, 415, "unsupported_media_type")


@pytest.fixture
def searchable(alice):
    """An album whose search model is set and has one vector: requests that fail validation never
    reach the encoder, so none is needed."""
    from albums import services

    album = services.album_create(owner=alice, name="vectors")
    Album.objects.filter(pk=album.pk).update(active_model_id=MODEL, encoder_spec="open-clip:tiny-vit/random")
    image = Image.objects.create(album=album, file="a.png", original_name="a.png", sha256="0" * 64, bytes=1,
                                 mime="image/png", width=1, height=1, status="indexed")
    Embedding.objects.create(image=image, album=album, model_id=MODEL, dim=4, vector=[1, 0, 0, 0])
    return album


SEARCH = [
    ("empty-body", {}, "empty_query", None),
    ("blank-text", {"text": ""}, "empty_query", None),
    ("negative-only", {"negative_text": "screens"}, "negative_only_query", None),
    ("unknown-field", {"text": "x", "colour": "red"}, "invalid", "colour"),
    ("weight-negative", {"text": "x", "text_weight": -1}, "invalid", "text_weight"),
    ("weight-nan", {"text": "x", "text_weight": "NaN"}, "invalid", "text_weight"),
    ("weight-infinity", {"text": "x", "image_weight": "Infinity"}, "invalid", "image_weight"),
    ("weight-text", {"text": "x", "negative_weight": "heavy"}, "invalid", "negative_weight"),
    ("min-score-nan", {"text": "x", "min_score": "nan"}, "invalid", "min_score"),
    ("max-results-enormous", {"text": "x", "max_results": 10**12}, "invalid", "max_results"),
    ("max-results-zero", {"text": "x", "max_results": 0}, "invalid", "max_results"),
    ("page-zero", {"text": "x", "page": 0}, "invalid", "page"),
    ("page-size-enormous", {"text": "x", "page_size": 10**6}, "invalid", "page_size"),
    ("text-too-long", {"text": "x" * 1001}, "invalid", "text"),
    ("text-wrong-type", {"text": ["a", "list"]}, "invalid", "text"),
    ("image-id-text", {"image_id": "abc"}, "invalid", "image_id"),
    ("image-id-negative", {"image_id": -4}, "invalid", "image_id"),
    ("malformed-base64", {"image_base64": "***not base64***"}, "invalid_base64", None),
    ("base64-of-text", {"image_base64": base64.b64encode(b"hello").decode()}, "not_an_image", None),
    ("two-query-images", {"image_id": 1, "image_base64": "aGk="}, "invalid", "image"),
]


@pytest.mark.parametrize("body,code,field", [c[1:] for c in SEARCH], ids=[c[0] for c in SEARCH])
def test_search_rejects(searchable, alice, client_for, body, code, field):
    response = client_for(alice).post(f"/api/v1/albums/{searchable.pk}/search/", body, format="json")
    _assert_error(response, 400, code, field)


def test_search_with_a_missing_query_image_id_is_404(searchable, alice, client_for):
    response = client_for(alice).post(f"/api/v1/albums/{searchable.pk}/search/", {"image_id": 10**9}, format="json")
    _assert_error(response, 404, "image_not_found")


@pytest.mark.parametrize(
    "query,field",
    [("min_score=nan", "min_score"), ("max_results=-1", "max_results"), ("page=abc", "page"), ("max_results=99999999999", "max_results")],
)
def test_similar_rejects_bad_query_parameters(searchable, alice, client_for, query, field):
    image = Image.objects.get(album=searchable)
    response = client_for(alice).get(f"/api/v1/images/{image.pk}/similar/?{query}")
    _assert_error(response, 400, "invalid", field)


@pytest.mark.parametrize("query", ["threshold=2", "threshold=nan", "threshold=-1", "threshold=x"])
def test_duplicates_rejects_bad_thresholds(searchable, alice, client_for, query):
    response = client_for(alice).get(f"/api/v1/albums/{searchable.pk}/duplicates/?{query}")
    _assert_error(response, 400, "invalid", "threshold")


def test_album_patch_rejects_unknown_encoder_and_changes_nothing(searchable, alice, client_for):
    before = Album.objects.values("encoder_spec", "generation").get(pk=searchable.pk)
    response = client_for(alice).patch(f"/api/v1/albums/{searchable.pk}/", {"encoder_spec": "nope:x"}, format="json")
    _assert_error(response, 400, "encoder_spec_invalid")
    assert Album.objects.values("encoder_spec", "generation").get(pk=searchable.pk) == before


def test_member_add_rejects_unknown_role_and_unknown_user(searchable, alice, bob, client_for):
    client = client_for(alice)
    _assert_error(client.post(f"/api/v1/albums/{searchable.pk}/members/", {"username": "bob", "role": "god"},
                              format="json"), 400, "invalid", "role")
    response = client.post(f"/api/v1/albums/{searchable.pk}/members/", {"username": "nobody", "role": "viewer"}, format="json")
    _assert_error(response, 400, "user_not_found")  # docs/reliability.md: 400, membership unchanged
    assert searchable.memberships.count() == 1


def test_image_list_rejects_an_unknown_status_filter(searchable, alice, client_for):
    _assert_error(client_for(alice).get(f"/api/v1/albums/{searchable.pk}/images/?status=lost"), 400, "invalid_filter")


@pytest.mark.parametrize("query,status", [
    # DRF's PageNumberPagination, as documented: a page that is not a page of the list is a 404
    # "Invalid page."; page_size falls back to PAGE_SIZE when not a positive integer, and is capped
    # at max_page_size (500) when larger.
    ("page=0", 404), ("page=-1", 404), ("page=abc", 404), ("page=99999", 404),
    ("page_size=0", 200), ("page_size=10000000", 200),
])
def test_pagination_never_500s(searchable, alice, client_for, query, status):
    response = client_for(alice).get(f"/api/v1/albums/{searchable.pk}/images/?{query}")
    assert response.status_code == status, response.content
    if status == 404:
        assert response.json() == {"message": "Invalid page.", "code": "not_found", "extra": {}}
    else:
        body = response.json()
        assert body["count"] == searchable.images.count() == len(body["results"]) > 0


def test_a_database_outage_is_a_503_in_the_error_shape():
    """What every API view answers while PostgreSQL is down (bench/faults.py and
    test_faults_stack.py see it end to end)."""
    from django.db import OperationalError

    from config.errors import api_exception_handler

    response = api_exception_handler(OperationalError("connection refused"), {})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.data == {"message": "The database is unavailable; try again shortly.",
                             "code": "database_unavailable", "extra": {}}


# --- Integers that int() and str.isdigit() disagree on ------------------------------------------------
# "²".isdigit() is True and int("²") raises; int(" 7"), int("1_0") and int("٣") succeed. Ids and integer
# parameters accept ASCII digits only (config/params.py), and anything else is a 400 in the one shape.

NOT_AN_ID = ["²", "1²", "٣", "1_0", " 1", "-1", "0", "1.5", "abc", "", "9" * 30, "9" * 5000]


@pytest.mark.parametrize("value", NOT_AN_ID, ids=[ascii(v)[:12] for v in NOT_AN_ID])
def test_support_set_filter_rejects_what_is_not_an_album_id(searchable, alice, client_for, value):
    response = client_for(alice).get("/api/v1/support-sets/", {"album": value})
    _assert_error(response, 400, "invalid_filter")


@pytest.fixture
def support_class(searchable, alice):
    from search.rag import services as rag_services

    support_set = rag_services.support_set_create(album=searchable, user=alice, name="kinds")
    return rag_services.support_class_create(support_set=support_set, label="cat")


IMAGE_IDS = [
    ("superscript-two", {"image_ids": "²"}, "json"),
    ("superscript-in-a-list", {"image_ids": ["1", "²"]}, "json"),
    ("null", {"image_ids": None}, "json"),
    ("object", {"image_ids": {"a": 1}}, "json"),
    ("boolean", {"image_ids": [True]}, "json"),
    ("enormous", {"image_ids": [10**30]}, "json"),
    ("negative", {"image_ids": [-3]}, "json"),
    ("form-superscript", {"image_ids": "²"}, "multipart"),
    ("form-enormous", {"image_ids": "9" * 40}, "multipart"),
]


@pytest.mark.parametrize("body,fmt", [c[1:] for c in IMAGE_IDS], ids=[c[0] for c in IMAGE_IDS])
def test_support_image_add_rejects_what_is_not_a_list_of_image_ids(support_class, alice, client_for, body, fmt):
    response = client_for(alice).post(f"/api/v1/support-classes/{support_class.pk}/images/", body, format=fmt)
    _assert_error(response, 400, "invalid")
    assert not support_class.images.exists()


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"1"', b"null", b"7"], ids=repr)
def test_support_image_add_rejects_a_body_that_is_not_an_object(support_class, alice, client_for, raw):
    response = client_for(alice).generic(
        "POST", f"/api/v1/support-classes/{support_class.pk}/images/", raw, content_type="application/json"
    )
    _assert_error(response, 400, "invalid")


def test_support_image_add_still_takes_ids_as_a_list_or_a_string(support_class, searchable, alice, client_for):
    image = Image.objects.get(album=searchable)
    client = client_for(alice)
    for body, fmt in (({"image_ids": [image.pk]}, "json"), ({"image_ids": f"{image.pk}, {image.pk}"}, "multipart")):
        response = client.post(f"/api/v1/support-classes/{support_class.pk}/images/", body, format=fmt)
        assert response.status_code in (200, 201), response.content
    assert support_class.images.count() == 1


def test_a_file_missing_from_storage_is_a_404_not_a_500(alice, client_for):
    """The row outlived its file (a restore without the media volume, a hand-deleted file)."""
    import io

    from django.core.files.storage import default_storage

    from albums import services
    from search import masks
    from tests.images import image_bytes

    album = services.album_create(owner=alice, name="lost")
    services.image_upload_many(album=album, user=alice, files=[("a.jpg", io.BytesIO(image_bytes()))])
    image = Image.objects.get(album=album)
    mask = masks.image_mask_set(image=image, data=image_bytes())
    for name in (image.file.name, mask.file.name):
        default_storage.delete(name)
    if image.thumbnail:
        default_storage.delete(image.thumbnail.name)
    client = client_for(alice)
    for path in (f"/api/v1/images/{image.pk}/file", f"/api/v1/images/{image.pk}/thumbnail"):
        response = client.get(path)
        _assert_error(response, 404, "image_file_missing")
        assert "missing from storage" in response.json()["message"], response.json()
    response = client.get(f"/api/v1/images/{image.pk}/mask/")
    _assert_error(response, 404, "mask_not_found")
    assert "missing from storage" in response.json()["message"], response.json()
