"""An isolation sweep generated from the URLconf.

Every URL pattern (API under /api/v1/ and the pages; the admin has its own test) and every method it
answers is requested as anonymous, as a signed-in outsider, as a viewer, an editor and an owner of
a foreign album, and as a staff editor, against that album's objects. The expected status comes from
RULES alone; an endpoint or method found in the URLconf without a rule fails, naming itself.

An allowed request must answer exactly the status in EFFECTS (200 when it has no row) and either
have made the write EFFECTS names, read back from the database, or have changed nothing; a denied
one must have changed nothing.

To cover a new endpoint: add its `(url name, METHOD)` rows to RULES (and, if it writes, a body in
BODIES and the write in EFFECTS); for a new kind of object id in its URL, add a maker to OBJECT_MAKERS.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.apps import apps
from django.http import HttpResponse
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from albums import services
from albums.roles import Role, role_at_least
from tests.images import image_bytes
from workers.models import IndexJob

pytestmark = pytest.mark.django_db


@dataclass(frozen=True)
class Rule:
    """Who may use an endpoint: `public`, `signed_in`, a minimum album role, or `not_allowed` (405)."""

    access: str
    staff: bool = False  # also needs is_staff (folder import)


PUBLIC, SIGNED_IN, NOT_ALLOWED = Rule("public"), Rule("signed_in"), Rule("not_allowed")
VIEWER, EDITOR, OWNER = Rule(Role.VIEWER), Rule(Role.EDITOR), Rule(Role.OWNER)

# ---- The rule table: (url name, METHOD) → who may use it --------------------------------------------
RULES: dict[tuple[str, str], Rule] = {
    # API
    ("api:auth-token", "POST"): PUBLIC,
    ("api:health", "GET"): PUBLIC,
    ("api:health-web", "GET"): PUBLIC,
    ("api:album-list", "GET"): SIGNED_IN,
    ("api:album-list", "POST"): SIGNED_IN,
    ("api:album-detail", "GET"): VIEWER,
    ("api:album-detail", "PATCH"): OWNER,
    ("api:album-detail", "DELETE"): OWNER,
    ("api:album-members", "GET"): VIEWER,
    ("api:album-members", "POST"): OWNER,
    ("api:album-member", "DELETE"): OWNER,  # {user_id} is the owner; members may remove only themselves
    ("api:album-images", "GET"): VIEWER,
    ("api:album-images", "POST"): EDITOR,
    ("api:album-images-delete", "POST"): EDITOR,
    ("api:album-images-download", "POST"): VIEWER,
    ("api:album-images-copy", "POST"): VIEWER,  # out of this album; the body's target needs an editor (the actor's own)
    ("api:album-jobs", "GET"): VIEWER,
    ("api:album-index", "POST"): EDITOR,
    ("api:album-retry-failed", "POST"): EDITOR,
    ("api:album-rebuild-failure-dismiss", "POST"): EDITOR,
    ("api:album-import", "POST"): Rule(Role.EDITOR, staff=True),
    ("api:album-search", "POST"): VIEWER,
    ("api:album-duplicates", "GET"): VIEWER,
    ("api:album-duplicates", "POST"): VIEWER,
    ("api:album-map", "GET"): VIEWER,
    ("api:album-map-rebuild", "POST"): EDITOR,
    ("api:image-detail", "GET"): VIEWER,
    ("api:image-detail", "DELETE"): EDITOR,
    ("api:image-similar", "GET"): VIEWER,
    ("api:image-file", "GET"): VIEWER,
    ("api:image-thumbnail", "GET"): VIEWER,
    ("api:job-detail", "GET"): VIEWER,
    ("api:job-cancel", "POST"): EDITOR,
    ("api:image-mask", "GET"): VIEWER,
    ("api:image-mask", "PUT"): EDITOR,
    ("api:image-mask", "DELETE"): EDITOR,
    # Vision RAG: support sets belong to an album; its members read and classify, editors change
    ("api:support-set-list", "GET"): SIGNED_IN,  # lists the caller's sets only
    ("api:support-set-list", "POST"): EDITOR,  # of the album named in the body
    ("api:support-set-detail", "GET"): VIEWER,
    ("api:support-set-detail", "PATCH"): EDITOR,
    ("api:support-set-detail", "DELETE"): EDITOR,
    ("api:support-set-classes", "GET"): VIEWER,
    ("api:support-set-classes", "POST"): EDITOR,
    ("api:support-set-classify", "POST"): VIEWER,
    ("api:support-class-detail", "GET"): VIEWER,
    ("api:support-class-detail", "PATCH"): EDITOR,
    ("api:support-class-detail", "DELETE"): EDITOR,
    ("api:support-class-images", "GET"): VIEWER,
    ("api:support-class-images", "POST"): EDITOR,
    ("api:support-image-detail", "GET"): VIEWER,
    ("api:support-image-detail", "DELETE"): EDITOR,
    ("api:support-image-crop", "GET"): VIEWER,
    ("api:support-set-label-jobs", "POST"): EDITOR,
    ("api:support-set-labels", "GET"): VIEWER,
    ("api:support-set-labels-export", "GET"): VIEWER,
    ("api:label-detail", "GET"): VIEWER,
    ("api:label-detail", "PATCH"): EDITOR,
    ("api:label-add-to-set", "POST"): EDITOR,
    # The RAG Vision Engine's endpoints: uploads go to the caller's own set; an invocation names a set
    ("ragvision-support-upload", "POST"): SIGNED_IN,
    ("ragvision-invocations", "POST"): VIEWER,
    ("ragvision-healthcheck", "GET"): PUBLIC,
    ("schema", "GET"): PUBLIC,
    ("api-docs", "GET"): PUBLIC,
    # Pages (function views are swept with GET and POST)
    ("login", "GET"): PUBLIC,
    ("login", "POST"): PUBLIC,
    ("login", "PUT"): PUBLIC,
    ("logout", "POST"): PUBLIC,
    ("password_change", "GET"): SIGNED_IN,
    ("password_change", "POST"): SIGNED_IN,
    ("password_change", "PUT"): SIGNED_IN,
    ("albums:list", "GET"): SIGNED_IN,
    ("albums:list", "POST"): SIGNED_IN,
    ("albums:detail", "GET"): VIEWER,
    ("albums:detail", "POST"): VIEWER,  # a POST renders the page like a GET; it writes nothing
    ("albums:settings", "GET"): OWNER,
    ("albums:settings", "POST"): OWNER,
    ("albums:members", "GET"): VIEWER,
    ("albums:members", "POST"): OWNER,
    ("albums:member-remove", "GET"): NOT_ALLOWED,
    ("albums:member-remove", "POST"): OWNER,
    ("albums:delete", "GET"): NOT_ALLOWED,
    ("albums:delete", "POST"): OWNER,
    ("albums:tokens", "GET"): SIGNED_IN,
    ("albums:tokens", "POST"): SIGNED_IN,
    ("search:album", "GET"): VIEWER,
    ("search:album", "POST"): VIEWER,
    ("search:duplicates", "GET"): VIEWER,
    ("search:duplicates", "POST"): VIEWER,
    ("search:map", "GET"): VIEWER,
    ("search:map", "POST"): VIEWER,  # renders the page; the map and its rebuild go through the API
    ("search:image", "GET"): VIEWER,
    ("search:image", "POST"): VIEWER,
    ("search:jobs", "GET"): SIGNED_IN,
    ("search:jobs", "POST"): SIGNED_IN,
    ("rag:list", "GET"): VIEWER,
    ("rag:list", "POST"): EDITOR,
    ("rag:detail", "GET"): VIEWER,
    ("rag:detail", "POST"): EDITOR,
    ("rag:delete", "GET"): NOT_ALLOWED,
    ("rag:delete", "POST"): EDITOR,
    ("rag:classify", "GET"): VIEWER,
    ("rag:classify", "POST"): VIEWER,  # renders the page; classification itself goes through the API
    ("rag:review", "GET"): VIEWER,  # the page; jobs and reviews go through the API, which checks editors
    ("rag:review", "POST"): NOT_ALLOWED,
}

# Bodies for writes, so that a missing check would really change something: (format, maker(world)).
BODIES = {
    ("api:album-list", "POST"): ("json", lambda w: {"name": "new"}),
    ("api:album-detail", "PATCH"): ("json", lambda w: {"name": "renamed"}),
    ("api:album-members", "POST"): ("json", lambda w: {"username": "outsider", "role": "owner"}),
    ("api:album-images", "POST"): ("multipart", lambda w: {"files": [io.BytesIO(image_bytes(color=(1, 2, 3)))]}),
    ("api:album-import", "POST"): ("json", lambda w: {"path": str(w["import_root"])}),
    ("api:album-images-delete", "POST"): ("json", lambda w: {"image_ids": [w["image"].pk]}),
    ("api:album-images-download", "POST"): ("json", lambda w: {"image_ids": [w["image"].pk]}),
    ("api:album-images-copy", "POST"): ("json", lambda w: {"image_ids": [w["image"].pk], "target_album_id": _copy_target(w)}),
    ("api:album-search", "POST"): ("json", lambda w: {"text": "dog"}),
    ("api:auth-token", "POST"): ("json", lambda w: {"username": "owner", "password": "pw-owner"}),
    ("api:image-mask", "PUT"): ("multipart", lambda w: {"mask": io.BytesIO(image_bytes(fmt="PNG", mode="L", color=200,
                                                                                        size=(64, 48)))}),
    ("albums:settings", "POST"): ("form", lambda w: _settings_form(w["album"], name="renamed", max_search_results=5)),
    ("password_change", "POST"): ("form", lambda w: {"old_password": f"pw-{w['actor']}", "new_password1": NEW_PASSWORD,
                                                     "new_password2": NEW_PASSWORD}),
    ("albums:members", "POST"): ("form", lambda w: {"username": "outsider", "role": "owner"}),
    ("albums:list", "POST"): ("form", lambda w: {"name": "new"}),
    ("api:support-set-list", "POST"): ("json", lambda w: {"album": w["album"].pk, "name": "new set"}),
    ("api:support-set-detail", "PATCH"): ("json", lambda w: {"name": "renamed"}),
    ("api:support-set-classes", "POST"): ("json", lambda w: {"label": "dirty"}),
    ("api:support-set-classify", "POST"): ("json", lambda w: {"image_base64": "eA=="}),
    ("api:support-class-detail", "PATCH"): ("json", lambda w: {"label": "renamed"}),
    ("api:support-set-label-jobs", "POST"): ("json", lambda w: {"scope": "album"}),
    ("api:label-detail", "PATCH"): ("json", lambda w: {"state": "accepted"}),
    ("api:support-class-images", "POST"): ("multipart", lambda w: {"files": [io.BytesIO(image_bytes(color=(7, 8, 9)))]}),
    ("ragvision-support-upload", "POST"): ("multipart", lambda w: {
        "className": "clean", "classes": '["clean"]', "index": "0", "file": io.BytesIO(image_bytes(color=(3, 3, 3)))}),
    ("ragvision-invocations", "POST"): ("json", lambda w: {"supportSetId": _support_set(w), "encodedImage": "eA=="}),
    ("rag:list", "POST"): ("form", lambda w: {"name": "new set", "patch_source": "tokens", "support_resolution": 448,
                                              "patch_size": 64}),
    ("rag:detail", "POST"): ("form", lambda w: {"action": "add-class", "class-label": "dirty"}),
}

NEW_PASSWORD = "a-Fresh-passphrase-92"


def _settings_form(album, **changes) -> dict:
    """The settings page's whole form as it stands, with `changes`: a partial form is invalid."""
    from albums.forms import AlbumSettingsForm

    form = AlbumSettingsForm(instance=album)
    data = {name: form[name].value() for name in form.fields}
    data = {k: v for k, v in data.items() if v is not None and v is not False}  # an unticked box is not sent
    return {**data, **changes}


# ---- What an allowed request must do: its status, and the write it makes (or that it writes nothing) ----


@dataclass(frozen=True)
class Effect:
    """`status`: the one status an allowed request gets. `wrote(world, actor, response)`: the write it
    must have made, read back from the database; None: it must leave the database unchanged (a read,
    or a write the endpoint refuses by design, as named)."""

    status: int
    wrote: Callable[[dict, str, HttpResponse], bool] | None = None


def _exists(model_path: str, **filters):
    """A row of the model matches `filters`; a callable value is called with (world, actor)."""

    def check(w, actor, response) -> bool:
        model = apps.get_model(model_path)
        return model.objects.filter(**{k: v(w, actor) if callable(v) else v for k, v in filters.items()}).exists()

    return check


def _gone(model_path: str, key: str):
    """The object the URL named (`key`) is no longer there."""
    return lambda w, actor, response: not apps.get_model(model_path).objects.filter(pk=w["url_kwargs"][key]).exists()


def _the_actor(w, actor):
    return w["users"][actor]


def _the_owner(w, actor):
    return w["users"]["owner"]


def _the_album(w, actor):
    return w["album"]


def _the_image(w, actor):
    return w["image"]


def _the_album_id(w, actor):
    return w["album"].pk


def _the_job_id(w, actor):
    return w["job"].pk


def _the_set(w, actor):
    return _support_set(w)


def _the_class(w, actor):
    return _support_class(w)


def _the_label(w, actor):
    return _label(w)


def _own_album_named(name: str):
    return _exists("albums.Album", name=name, owner=_the_actor)


def _copy_target(w) -> int:
    """An album of the actor's own (the owner's for anonymous), made before the sweep's snapshot."""
    owner = w["users"].get(w["actor"], w["users"]["owner"])
    w["copy_target"] = services.album_create(owner=owner, name="copy target")
    return w["copy_target"].pk


def _copied(w, actor, response) -> bool:
    return w["copy_target"].images.filter(sha256=w["image"].sha256).exists()


def _outsider_made_owner(w, actor, response) -> bool:
    return w["album"].memberships.filter(user=w["users"]["outsider"], role=Role.OWNER).exists()


def _is_owner_membership_gone(w, actor, response) -> bool:
    return not w["album"].memberships.filter(user=w["users"]["owner"]).exists()


def _password_changed(w, actor, response) -> bool:
    user = w["users"][actor]
    user.refresh_from_db()
    return user.check_password(NEW_PASSWORD)


def _ragvision_upload_landed(w, actor, response) -> bool:
    from search.rag.models import SupportImage

    set_id = response.json()["supportSetId"]
    return SupportImage.objects.filter(support_set_id=set_id, support_set__album__owner=w["users"][actor],
                                       support_class__label="clean").exists()


# Allowed requests with no row here must answer 200 and write nothing (reads, pages rendered).
EFFECTS: dict[tuple[str, str], Effect] = {
    ("api:health", "GET"): Effect(200),  # or 503 "degraded" with only the workers down: see the sweep
    ("api:auth-token", "POST"): Effect(200, _exists("authtoken.Token", user=_the_owner)),
    ("api:album-list", "POST"): Effect(201, _own_album_named("new")),
    ("api:album-detail", "PATCH"): Effect(200, _exists("albums.Album", id=_the_album_id, name="renamed")),
    ("api:album-detail", "DELETE"): Effect(204, _gone("albums.Album", "album_id")),
    ("api:album-members", "POST"): Effect(201, _outsider_made_owner),
    ("api:album-member", "DELETE"): Effect(204, _is_owner_membership_gone),  # a co-owner stays
    ("api:album-images", "POST"): Effect(201, lambda w, a, r: w["album"].images.count() == 2),
    ("api:album-images-delete", "POST"): Effect(200, lambda w, a, r: not w["album"].images.filter(pk=w["image"].pk).exists()),
    ("api:album-images-copy", "POST"): Effect(201, _copied),
    ("api:album-index", "POST"): Effect(200),  # joins the album's queued job: a new one would be a 202
    ("api:album-retry-failed", "POST"): Effect(200),  # {"retried": 0}: no image of the album has failed
    ("api:album-rebuild-failure-dismiss", "POST"): Effect(200, _exists("workers.IndexJob", album=_the_album, kind="rebuild",
                                                                       dismissed_at__isnull=False)),
    ("api:album-import", "POST"): Effect(202, _exists("workers.IndexJob", kind="import", album=_the_album)),
    ("api:album-search", "POST"): Effect(409),  # album_not_indexed: the album has no vectors
    ("api:album-duplicates", "GET"): Effect(409),
    ("api:album-duplicates", "POST"): Effect(409),  # album_not_indexed: nothing to scan, no job
    ("api:album-map-rebuild", "POST"): Effect(409),  # album_not_indexed: no vectors to lay out, no job
    ("api:image-similar", "GET"): Effect(409),
    ("api:image-detail", "DELETE"): Effect(204, _gone("albums.Image", "image_id")),
    ("api:job-cancel", "POST"): Effect(200, _exists("workers.IndexJob", id=_the_job_id, status="cancelled")),
    ("api:image-mask", "PUT"): Effect(200, lambda w, a, r: apps.get_model("albums.ImageMask").objects.get(
        image=w["image"]).updated_at > w["mask_updated_at"]),
    ("api:image-mask", "DELETE"): Effect(204, _exists("albums.ImageMask", image=_the_image, file="")),
    ("api:support-set-list", "POST"): Effect(201, _exists("rag.SupportSet", album=_the_album, name="new set")),
    ("api:support-set-detail", "PATCH"): Effect(200, _exists("rag.SupportSet", pk=_the_set, name="renamed")),
    ("api:support-set-detail", "DELETE"): Effect(204, _gone("rag.SupportSet", "support_set_id")),
    ("api:support-set-classes", "POST"): Effect(201, _exists("rag.SupportClass", support_set=_the_set, label="dirty")),
    ("api:support-set-classify", "POST"): Effect(400),  # "eA==" is no image; classifying writes nothing
    ("api:support-class-detail", "PATCH"): Effect(200, _exists("rag.SupportClass", pk=_the_class, label="renamed")),
    ("api:support-class-detail", "DELETE"): Effect(204, _gone("rag.SupportClass", "class_id")),
    ("api:support-class-images", "POST"): Effect(201, _exists("rag.SupportImage", support_class=_the_class)),
    ("api:support-image-detail", "DELETE"): Effect(204, _gone("rag.SupportImage", "support_image_id")),
    ("api:support-image-crop", "GET"): Effect(400),  # no box given: invalid_box
    ("api:support-set-label-jobs", "POST"): Effect(400),  # the set has no classes yet: no job
    ("api:label-detail", "PATCH"): Effect(200, _exists("rag.Label", pk=_the_label, state="accepted")),
    ("api:label-add-to-set", "POST"): Effect(409),  # only a reviewed label becomes an example
    ("ragvision-support-upload", "POST"): Effect(200, _ragvision_upload_landed),
    ("ragvision-invocations", "POST"): Effect(400),
    ("ragvision-healthcheck", "GET"): Effect(201),  # the engine's answer, kept for its monitors
    ("logout", "POST"): Effect(302),
    ("password_change", "POST"): Effect(302, _password_changed),
    ("albums:list", "POST"): Effect(302, _own_album_named("new")),
    ("albums:settings", "POST"): Effect(302, _exists("albums.Album", id=_the_album_id, name="renamed",
                                                     max_search_results=5)),
    ("albums:members", "POST"): Effect(302, _outsider_made_owner),
    ("albums:member-remove", "POST"): Effect(302, _is_owner_membership_gone),
    ("albums:delete", "POST"): Effect(302, _gone("albums.Album", "album_id")),
    ("albums:tokens", "POST"): Effect(302, _exists("albums.ApiToken", user=_the_actor)),  # then shown once by GET
    ("rag:list", "POST"): Effect(302, _exists("rag.SupportSet", album=_the_album, name="new set")),
    ("rag:detail", "POST"): Effect(302, _exists("rag.SupportClass", support_set=_the_set, label="dirty")),
    ("rag:delete", "POST"): Effect(302, _gone("rag.SupportSet", "support_set_id")),
}

# ---- Objects named in URLs: kwarg → maker(world) returning an id in the foreign album --------------


def _support_set(world) -> int:
    from search.rag import services as rag

    if "support_set" not in world:
        world["support_set"] = rag.support_set_create(album=world["album"], user=world["users"]["owner"], name="set")
    return world["support_set"].pk


def _support_class(world) -> int:
    from search.rag import services as rag

    _support_set(world)
    if "support_class" not in world:
        world["support_class"] = rag.support_class_create(support_set=world["support_set"], label="clean")
    return world["support_class"].pk


def _support_image(world) -> int:
    from search.rag import services as rag
    from search.rag.models import SupportImage

    _support_class(world)
    rag.support_images_add(support_class=world["support_class"], user=world["users"]["owner"],
                           image_ids=[world["image"].pk])
    return SupportImage.objects.get(support_class=world["support_class"]).pk


def _label(world) -> int:
    from search.rag.models import Label

    _support_class(world)
    if "label" not in world:
        world["label"] = Label.objects.create(image=world["image"], support_set=world["support_set"],
                                              support_class=world["support_class"], label="clean",
                                              predicted_label="clean", scores={"clean": 1.0}, margin=1.0)
    return world["label"].pk


OBJECT_MAKERS = {
    "album_id": lambda w: w["album"].pk,
    "image_id": lambda w: w["image"].pk,
    "job_id": lambda w: w["job"].pk,
    "user_id": lambda w: w["users"]["owner"].pk,
    "support_set_id": _support_set,
    "support_class_id": _support_class,
    "class_id": _support_class,
    "support_image_id": _support_image,
    "label_id": _label,
}
# Kwargs that name the acting user's own things, not the album's: never offset for "missing".
NOT_ALBUM_OBJECTS = {"user_id"}

ACTORS = ["anonymous", "outsider", "viewer", "editor", "owner", "staff_editor"]
ACTOR_ROLE = {"viewer": Role.VIEWER, "editor": Role.EDITOR, "owner": Role.OWNER, "staff_editor": Role.EDITOR}

# ---- Discovering endpoints ---------------------------------------------------------------------------

PAGE_METHODS = ("GET", "POST")  # what a plain function view is assumed to answer until a rule says 405


def _walk(patterns, prefix: str = "", namespace: str = ""):
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":
                continue  # tested on its own: test_admin_is_for_staff_only
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), ns)
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), (f"{namespace}{entry.name}" if entry.name else None), entry.callback


def _methods(callback) -> list[str]:
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:
        return list(PAGE_METHODS)
    return [m.upper() for m in view_class.http_method_names if m not in ("options", "head") and hasattr(view_class, m)]


def discovered_endpoints() -> list[tuple[str, str, str | None]]:
    """(route, METHOD, url name) for everything the URLconf routes, admin and static files aside."""
    found = []
    for route, name, callback in _walk(get_resolver().url_patterns):
        for method in _methods(callback):
            found.append((route, method, name))
    return found


ENDPOINTS = discovered_endpoints()


def test_every_endpoint_in_the_urlconf_has_a_rule():
    unnamed = sorted({route for route, _, name in ENDPOINTS if name is None})
    assert not unnamed, f"URL patterns without a name cannot have an isolation rule: {unnamed}"
    missing = sorted(f"{name} {method}  ({route})" for route, method, name in ENDPOINTS if (name, method) not in RULES)
    assert not missing, "No isolation rule in tests/reliability/test_isolation_sweep.py RULES for:\n  " + "\n  ".join(missing)
    stale = sorted(set(RULES) - {(name, method) for _, method, name in ENDPOINTS})
    assert not stale, f"Rules for endpoints the URLconf no longer has: {stale}"
    assert not set(EFFECTS) - set(RULES), f"EFFECTS rows with no rule: {sorted(set(EFFECTS) - set(RULES))}"


# ---- The sweep ------------------------------------------------------------------------------------------


@pytest.fixture
def world(make_user, settings, import_root):
    settings.LOUPE_IMPORT_ROOTS = [str(import_root)]
    users = {name: make_user(name) for name in ("owner", "viewer", "editor", "outsider", "co_owner")}
    users["staff_editor"] = make_user("staff_editor", is_staff=True)
    album = services.album_create(owner=users["owner"], name="foreign")
    for actor in ("viewer", "editor", "staff_editor"):
        services.album_member_add(album=album, username=actor, role=ACTOR_ROLE[actor])
    # A second owner, so that the owner may really leave (album-member DELETE, member-remove).
    services.album_member_add(album=album, username="co_owner", role=Role.OWNER)
    services.album_create(owner=users["outsider"], name="the outsider's own")  # a member elsewhere
    [upload] = services.image_upload_many(album=album, user=users["owner"], files=[("a.jpg", io.BytesIO(image_bytes()))])
    from albums.models import Image

    # A rebuild that failed before the queued index job, shown on the album until dismissed.
    IndexJob.objects.create(album=album, kind=IndexJob.Kind.REBUILD, status=IndexJob.Status.FAILED, message="no weights")
    job = IndexJob.objects.create(album=album, kind=IndexJob.Kind.INDEX)
    image = Image.objects.get(pk=upload.image_id)
    from search import masks

    # So that GET …/mask/ has one, and PUT …/mask/ replaces it.
    mask = masks.image_mask_set(image=image, data=image_bytes(fmt="PNG", mode="L", color=255, size=(64, 48)))
    return {"album": album, "image": image, "job": job, "users": users, "import_root": import_root,
            "mask_updated_at": mask.updated_at}


def _kwargs(route: str, world, *, missing: bool = False) -> dict[str, int]:
    from django.urls.resolvers import RoutePattern

    names = RoutePattern(route).converters.keys()
    unknown = sorted(set(names) - set(OBJECT_MAKERS))
    if unknown:
        pytest.fail(f"No object maker for URL kwarg(s) {unknown} in {route}: add one to OBJECT_MAKERS")
    offset = 1_000_000 if missing else 0
    return {n: OBJECT_MAKERS[n](world) + (0 if n in NOT_ALBUM_OBJECTS else offset) for n in names}


def _request(client: Client, method: str, path: str, body):
    if body is None:
        return client.generic(method, path)
    fmt, data = body
    if fmt == "json":
        return client.generic(method, path, json.dumps(data), content_type="application/json")
    if fmt == "multipart" and method != "POST":
        from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

        return client.generic(method, path, encode_multipart(BOUNDARY, data), content_type=MULTIPART_CONTENT)
    return client.post(path, data)  # multipart (the test client encodes files) or a form


def _snapshot() -> str:
    """Every row of the apps' models: a denied request must leave all of them as they were."""
    rows = []
    installed = {config.label for config in apps.get_app_configs()}
    for label in ("albums", "search", "workers", "rag"):
        if label not in installed:
            continue
        for model in apps.get_app_config(label).get_models():
            rows.append((model._meta.label, repr(list(model.objects.order_by("pk").values_list()))))
    return repr(rows)


def _expected(rule: Rule, actor: str) -> str:
    if rule.access == "not_allowed":
        return "not_allowed"
    if rule.access == "public":
        return "allowed"
    if actor == "anonymous":
        return "unauthenticated"
    if rule.access == "signed_in":
        return "allowed"
    if actor == "outsider":
        return "not_found"
    if not role_at_least(ACTOR_ROLE[actor], rule.access) or (rule.staff and actor != "staff_editor"):
        return "forbidden"
    return "allowed"


# Fields that differ between any two requests: the RAG Vision Engine's error bodies carry a timing and
# a request id (made up when the client sent none).
VOLATILE = ("elapsedTimeMs", "imageId")


def _stable(body):
    return {k: v for k, v in body.items() if k not in VOLATILE} if isinstance(body, dict) else body


SWEEP = [(route, method, name, actor) for route, method, name in ENDPOINTS for actor in ACTORS]


@pytest.mark.parametrize("route,method,name,actor", SWEEP, ids=[f"{m} {n or r} as {a}" for r, m, n, a in SWEEP])
def test_isolation_sweep(world, route, method, name, actor):
    rule = RULES.get((name, method))
    if rule is None:
        pytest.fail(f"No isolation rule for {name} {method} ({route}): add it to RULES")
    client = Client()
    if actor != "anonymous":
        client.force_login(world["users"][actor])
    body_spec = BODIES.get((name, method))
    world["actor"] = actor
    body = (body_spec[0], body_spec[1](world)) if body_spec else None
    world["url_kwargs"] = _kwargs(route, world)
    path = reverse(name, kwargs=world["url_kwargs"])
    api = path.startswith("/api/")
    before = _snapshot()
    response = _request(client, method, path, body)
    expected = _expected(rule, actor)
    content = b"<streamed>" if getattr(response, "streaming", False) else response.content[:300]
    what = f"{method} {path} as {actor}: expected {expected}, got {response.status_code} {content!r}"

    if expected == "allowed":
        effect = EFFECTS.get((name, method), Effect(200))
        status = effect.status
        if name == "api:health":  # 503 "degraded" when no worker runs (none does, unless an earlier test started one)
            report = response.json()  # staff see which part is down; everyone else the status only
            down = report.get("down", [] if report["status"] == "ok" else ["workers"])
            assert down in ([], ["workers"]) and report["status"] in ("ok", "degraded"), what
            status = 503 if down else 200
        assert response.status_code == status, what
        if effect.wrote is None:
            assert _snapshot() == before, f"{what} — and the database changed"
        else:
            assert effect.wrote(world, actor, response), f"{what} — but its write is not in the database"
        return
    # Denied: nothing written, nothing streamed.
    assert not getattr(response, "streaming", False), what
    assert _snapshot() == before, f"{what} — and the database changed"
    if expected == "not_allowed":
        assert response.status_code == 405, what
    elif expected == "unauthenticated":
        if api:
            assert response.status_code == 401 and response.json()["code"] == "not_authenticated", what
        else:
            assert response.status_code == 302 and response["Location"].startswith(reverse("login")), what
    elif expected == "not_found":
        assert response.status_code == 404, what
        if api:
            missing = _request(client, method, reverse(name, kwargs=_kwargs(route, world, missing=True)), body)
            assert _stable(response.json()) == _stable(missing.json()), f"{what}: a foreign id must look exactly like a missing one"
    elif expected == "forbidden":
        assert response.status_code == 403, what
        if api:
            assert response.json()["code"] in ("role_required", "staff_required"), what


def test_admin_is_for_staff_only(make_user):
    plain, staff = make_user("plain"), make_user("boss", is_staff=True, is_superuser=True)
    anonymous = Client().get("/admin/")
    assert anonymous.status_code == 302 and "/admin/login/" in anonymous["Location"]
    client = Client()
    client.force_login(plain)
    for path in ("/admin/", "/admin/albums/album/", "/admin/auth/user/"):
        response = client.get(path)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], path
    client.force_login(staff)
    assert client.get("/admin/albums/album/").status_code == 200


# ---- Ids in query strings and bodies -------------------------------------------------------------------
# An id of another album's object, sent to an endpoint of the actor's own album, answers exactly as an
# id that does not exist (and never filters by it). Each row: (what, maker(world, own) → foreign id,
# request(own, id) → (method, path, params or body)).

def _foreign_label_job(world) -> int:
    set_id = _support_set(world)
    return IndexJob.objects.create(album=world["album"], kind=IndexJob.Kind.LABEL,
                                   params={"support_set_id": set_id, "scope": "album", "image_ids": None}).pk


ID_PARAMS = [
    ("images list ?support_set", lambda w: _support_set(w),
     lambda own, pk: ("GET", f"/api/v1/albums/{own['album'].pk}/images/", {"support_set": pk})),
    ("search body label.support_set", lambda w: _support_set(w),
     lambda own, pk: ("POST", f"/api/v1/albums/{own['album'].pk}/search/", {"text": "x", "label": {"support_set": pk, "label": "clean"}})),
    ("labels list ?job", _foreign_label_job,
     lambda own, pk: ("GET", f"/api/v1/support-sets/{own['support_set'].pk}/labels/", {"job": pk})),
]


@pytest.mark.parametrize("what, foreign, build", ID_PARAMS, ids=[row[0] for row in ID_PARAMS])
def test_a_foreign_id_in_a_parameter_looks_missing(world, what, foreign, build):
    from rest_framework.test import APIClient

    from search.rag import services as rag

    from albums.models import Album

    outsider = world["users"]["outsider"]
    album = Album.objects.get(name="the outsider's own")
    own = {"album": album, "support_set": rag.support_set_create(album=album, user=outsider, name="own set")}
    client = APIClient()
    client.force_authenticate(outsider)
    pk = foreign(world)

    def answer(value):
        method, path, data = build(own, value)
        return client.get(path, data) if method == "GET" else client.post(path, data, format="json")

    before = _snapshot()
    found, missing = answer(pk), answer(pk + 1_000_000)
    assert found.status_code == missing.status_code == 404, (what, found.content)
    assert _stable(found.json()) == _stable(missing.json()), what
    assert _snapshot() == before
