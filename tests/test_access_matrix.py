"""Every endpoint: anonymous → 401, a non-member → the same 404 as a missing id, a member below the
required role → 403 and nothing changes."""

import io

import pytest

from albums import services
from albums.models import Album, AlbumMembership, Image
from albums.roles import Role, role_at_least
from search.rag import services as rag_services
from search.rag.models import Label, SupportClass, SupportImage, SupportSet
from tests.images import image_bytes
from workers.models import IndexJob

pytestmark = pytest.mark.django_db

# (method, path template, minimum role, body maker)
ENDPOINTS = [
    ("get", "/api/v1/albums/{album}/", Role.VIEWER, None),
    ("patch", "/api/v1/albums/{album}/", Role.OWNER, lambda: {"name": "renamed"}),
    ("delete", "/api/v1/albums/{album}/", Role.OWNER, None),
    ("get", "/api/v1/albums/{album}/members/", Role.VIEWER, None),
    ("post", "/api/v1/albums/{album}/members/", Role.OWNER, lambda: {"username": "mallory", "role": "owner"}),
    ("delete", "/api/v1/albums/{album}/members/{owner}/", Role.OWNER, None),
    ("get", "/api/v1/albums/{album}/images/", Role.VIEWER, None),
    ("post", "/api/v1/albums/{album}/images/", Role.EDITOR, lambda: {"files": [io.BytesIO(image_bytes(color=(1, 2, 3)))]}),
    ("post", "/api/v1/albums/{album}/images/bulk-delete/", Role.EDITOR, lambda: {"image_ids": [1]}),
    ("post", "/api/v1/albums/{album}/images/download/", Role.VIEWER, lambda: {"image_ids": [1]}),
    ("post", "/api/v1/albums/{album}/images/copy/", Role.VIEWER, lambda: {"image_ids": [1], "target_album_id": 1}),
    ("get", "/api/v1/albums/{album}/jobs/", Role.VIEWER, None),
    ("get", "/api/v1/images/{image}/", Role.VIEWER, None),
    ("delete", "/api/v1/images/{image}/", Role.EDITOR, None),
    ("get", "/api/v1/images/{image}/file", Role.VIEWER, None),
    ("get", "/api/v1/images/{image}/thumbnail", Role.VIEWER, None),
    ("get", "/api/v1/jobs/{job}/", Role.VIEWER, None),
    ("post", "/api/v1/jobs/{job}/cancel/", Role.EDITOR, None),
    ("post", "/api/v1/albums/{album}/index/", Role.EDITOR, None),
    ("post", "/api/v1/albums/{album}/rebuild-failure/dismiss/", Role.EDITOR, None),
    ("post", "/api/v1/albums/{album}/import/", Role.EDITOR, lambda: {"path": "/tmp"}),
    ("post", "/api/v1/albums/{album}/search/", Role.VIEWER, lambda: {"text": "dog"}),
    ("get", "/api/v1/albums/{album}/duplicates/", Role.VIEWER, None),
    ("get", "/api/v1/albums/{album}/map/", Role.VIEWER, None),
    ("get", "/api/v1/albums/{album}/map/?support_set={support_set}", Role.VIEWER, None),
    ("post", "/api/v1/albums/{album}/map/rebuild/", Role.EDITOR, None),
    ("get", "/api/v1/images/{image}/similar/", Role.VIEWER, None),
    ("get", "/api/v1/images/{image}/mask/", Role.VIEWER, None),
    ("put", "/api/v1/images/{image}/mask/", Role.EDITOR, lambda: {"mask": "not read before the access check"}),
    ("delete", "/api/v1/images/{image}/mask/", Role.EDITOR, None),
    ("get", "/api/v1/support-sets/?album={album}", Role.VIEWER, None),
    ("get", "/api/v1/support-sets/{support_set}/", Role.VIEWER, None),
    ("patch", "/api/v1/support-sets/{support_set}/", Role.EDITOR, lambda: {"name": "renamed"}),
    ("delete", "/api/v1/support-sets/{support_set}/", Role.EDITOR, None),
    ("get", "/api/v1/support-sets/{support_set}/classes/", Role.VIEWER, None),
    ("post", "/api/v1/support-sets/{support_set}/classes/", Role.EDITOR, lambda: {"label": "new"}),
    ("post", "/api/v1/support-sets/{support_set}/classify/", Role.VIEWER, lambda: {"image_base64": "eA=="}),
    ("get", "/api/v1/support-classes/{support_class}/", Role.VIEWER, None),
    ("patch", "/api/v1/support-classes/{support_class}/", Role.EDITOR, lambda: {"label": "renamed"}),
    ("delete", "/api/v1/support-classes/{support_class}/", Role.EDITOR, None),
    ("get", "/api/v1/support-classes/{support_class}/images/", Role.VIEWER, None),
    ("post", "/api/v1/support-classes/{support_class}/images/", Role.EDITOR,
     lambda: {"files": [io.BytesIO(image_bytes(color=(4, 5, 6)))]}),
    ("get", "/api/v1/support-images/{support_image}/", Role.VIEWER, None),
    ("delete", "/api/v1/support-images/{support_image}/", Role.EDITOR, None),
    ("get", "/api/v1/support-images/{support_image}/crop?box=0,0,1,1", Role.VIEWER, None),
    ("post", "/api/v1/support-sets/{support_set}/label-jobs/", Role.EDITOR, lambda: {"scope": "album"}),
    ("get", "/api/v1/support-sets/{support_set}/labels/", Role.VIEWER, None),
    ("get", "/api/v1/support-sets/{support_set}/labels/export?format=csv", Role.VIEWER, None),
    ("get", "/api/v1/support-sets/{support_set}/labels/export?format=zip", Role.VIEWER, None),
    ("get", "/api/v1/labels/{label}/", Role.VIEWER, None),
    ("patch", "/api/v1/labels/{label}/", Role.EDITOR, lambda: {"state": "accepted"}),
    ("post", "/api/v1/labels/{label}/add-to-set/", Role.EDITOR, None),
]
IDS = [f"{m.upper()} {p}" for m, p, _, _ in ENDPOINTS]


@pytest.fixture
def world(alice, make_user):
    album = services.album_create(owner=alice, name="private")
    [result] = services.image_upload_many(album=album, user=alice, files=[("a.jpg", io.BytesIO(image_bytes()))])
    job = IndexJob.objects.create(album=album, kind=IndexJob.Kind.INDEX)
    make_user("mallory")
    support_set = rag_services.support_set_create(album=album, user=alice, name="set")
    support_class = rag_services.support_class_create(support_set=support_set, label="a")
    [added] = rag_services.support_images_add(support_class=support_class, user=alice, image_ids=[result.image_id])
    label = Label.objects.create(image_id=result.image_id, support_set=support_set, support_class=support_class, label="a",
                                 predicted_label="a", scores={"a": 1.0}, margin=1.0)
    return {"label": label.pk, "album": album.pk, "image": result.image_id, "job": job.pk, "owner": alice.pk, "support_set": support_set.pk,
            "support_class": support_class.pk, "support_image": added.support_image_id}


def _call(client, method, template, ids, body=None):
    path = template.format(**ids)
    kwargs = {"format": "multipart"} if body and "files" in body else {"format": "json"}
    return getattr(client, method)(path, body, **kwargs) if body else getattr(client, method)(path)


def _snapshot():
    return (
        list(Album.objects.values_list("pk", "name")),
        list(AlbumMembership.objects.values_list("album", "user", "role")),
        list(Image.objects.values_list("pk")),
        list(IndexJob.objects.values_list("pk", "status")),
        list(SupportSet.objects.values_list("pk", "name", "generation")),
        list(SupportClass.objects.values_list("pk", "label")),
        list(SupportImage.objects.values_list("pk", "support_class")),
        list(Label.objects.values_list("pk", "state", "label")),
    )


@pytest.mark.parametrize("method,template,role,body", ENDPOINTS, ids=IDS)
def test_anonymous_gets_401(world, client_for, method, template, role, body):
    response = _call(client_for(None), method, template, world, body() if body else None)
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("method,template,role,body", ENDPOINTS, ids=IDS)
def test_non_member_gets_the_same_404_as_a_missing_id(world, bob, client_for, method, template, role, body):
    before = _snapshot()
    client = client_for(bob)
    foreign = _call(client, method, template, world, body() if body else None)
    missing_ids = {key: value + 10_000 for key, value in world.items()}
    missing_ids["owner"] = world["owner"]
    missing = _call(client, method, template, missing_ids, body() if body else None)
    assert foreign.status_code == 404
    assert foreign.json() == missing.json()
    assert _snapshot() == before


BELOW_ROLE = [
    (member_role, *endpoint)
    for endpoint in ENDPOINTS
    for member_role in (Role.VIEWER, Role.EDITOR)
    if not role_at_least(member_role, endpoint[2])
]


@pytest.mark.parametrize(
    "member_role,method,template,role,body", BELOW_ROLE, ids=[f"{r[0]} {r[1].upper()} {r[2]}" for r in BELOW_ROLE]
)
def test_members_below_the_role_get_403_and_change_nothing(world, bob, client_for, member_role, method, template, role, body):
    album = Album.objects.get(pk=world["album"])
    services.album_member_add(album=album, username="bob", role=member_role)
    before = _snapshot()
    response = _call(client_for(bob), method, template, world, body() if body else None)
    assert response.status_code == 403, response.content
    assert response.json()["code"] == "role_required"
    assert _snapshot() == before
