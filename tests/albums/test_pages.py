"""Server-rendered pages check membership exactly like the API."""

import io

import pytest
from django.test import Client

from albums import services
from albums.models import Album, AlbumMembership
from albums.roles import Role
from tests.images import image_bytes

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_sign_in_page_and_redirect_for_anonymous(alice):
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    client = Client()
    response = client.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302
    assert client.get("/").status_code == 200


def test_album_list_create_and_detail(alice):
    client = signed_in(alice)
    response = client.post("/", {"name": "Summer", "description": "beach"})
    album = Album.objects.get(name="Summer")
    assert response["Location"] == f"/albums/{album.pk}/"
    services.image_upload_many(album=album, user=alice, files=[("sea.jpg", io.BytesIO(image_bytes()))])
    page = client.get(f"/albums/{album.pk}/").content.decode()
    assert "Summer" in page and "sea.jpg" in page and 'id="upload"' in page
    assert "/api/v1/images/" in page
    listing = client.get("/").content.decode()
    assert "Summer" in listing and "owner" in listing


def test_grid_partial_for_htmx_and_status_filter(alice, album):
    services.image_upload_many(album=album, user=alice, files=[("a.jpg", io.BytesIO(image_bytes()))])
    client = signed_in(alice)
    partial = client.get(f"/albums/{album.pk}/?status=failed", HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in partial and "No failed photos." in partial


def test_settings_saves_and_bumps_generation_on_encoder_change(alice, album, settings, tiny_models_dir):
    from tests.tiny_models import OPEN_CLIP_TINY

    settings.LOUPE_MODELS_DIR = tiny_models_dir
    other = OPEN_CLIP_TINY
    client = signed_in(alice)
    page = client.get(f"/albums/{album.pk}/settings/").content.decode()
    assert "rebuild" in page.lower() or "re-embeds" in page
    response = client.post(
        f"/albums/{album.pk}/settings/",
        {"name": "Renamed", "description": "", "encoder_spec": other, "min_search_score": "0.3", "max_search_results": "50", "use_query_optimization": "on"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    album.refresh_from_db()
    assert (album.name, album.encoder_spec, album.min_search_score, album.max_search_results, album.generation) == ("Renamed", other, 0.3, 50, 2)


def test_settings_refuse_an_encoder_that_is_not_installed_and_say_where_its_weights_go(alice, album, settings):
    settings.LOUPE_ALLOW_DOWNLOADS = False
    form = {"name": album.name, "description": "", "encoder_spec": "openai-clip:ViT-B/32", "max_search_results": "100"}
    response = signed_in(alice).post(f"/albums/{album.pk}/settings/", form)
    page = response.content.decode()
    assert response.status_code == 200 and "Settings saved" not in page
    assert "Weights for encoder openai-clip:ViT-B/32 are missing" in page and "ViT-B-32.pt" in page
    album.refresh_from_db()
    assert album.encoder_spec != "openai-clip:ViT-B/32" and album.generation == 1


def test_members_page_share_and_remove(alice, bob, album):
    client = signed_in(alice)
    client.post(f"/albums/{album.pk}/members/", {"username": "bob", "role": "editor"})
    assert AlbumMembership.objects.get(album=album, user=bob).role == "editor"
    assert "bob" in client.get(f"/albums/{album.pk}/members/").content.decode()
    client.post(f"/albums/{album.pk}/members/{bob.pk}/remove/")
    assert not AlbumMembership.objects.filter(album=album, user=bob).exists()


@pytest.mark.parametrize(
    "method,path",
    [("get", "/albums/{id}/"), ("get", "/albums/{id}/settings/"), ("get", "/albums/{id}/members/"),
     ("post", "/albums/{id}/members/"), ("post", "/albums/{id}/delete/"), ("post", "/albums/{id}/members/1/remove/")],
)
def test_non_members_get_404_on_every_page(bob, album, method, path):
    response = getattr(signed_in(bob), method)(path.format(id=album.pk), {"username": "bob", "role": "owner"} if method == "post" else None)
    assert response.status_code == 404
    assert Album.objects.filter(pk=album.pk).exists()
    assert not AlbumMembership.objects.filter(album=album, user=bob).exists()
    assert "Alice" not in response.content.decode()


def test_albums_of_others_are_not_listed(bob, album):
    assert "Alice&#x27;s trip" not in signed_in(bob).get("/").content.decode()


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_members_below_owner_cannot_open_settings_delete_or_share(bob, album, member_of, role):
    member_of(bob, role)
    client = signed_in(bob)
    assert client.get(f"/albums/{album.pk}/settings/").status_code == 403
    assert client.post(f"/albums/{album.pk}/delete/").status_code == 403
    assert client.post(f"/albums/{album.pk}/members/", {"username": "bob", "role": "owner"}).status_code == 403
    assert AlbumMembership.objects.get(album=album, user=bob).role == role
    page = client.get(f"/albums/{album.pk}/").content.decode()
    assert ('id="upload"' in page) == (role == Role.EDITOR)


def test_openapi_schema_and_docs(alice):
    client = signed_in(alice)
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    text = schema.content.decode()
    for path in ["/api/v1/albums/{album_id}/images/", "/api/v1/health/", "/api/v1/auth/token/", "/api/v1/jobs/{job_id}/"]:
        assert path in text
    assert client.get("/api/docs/").status_code == 200


def test_token_auth_flow(alice, album):
    from rest_framework.test import APIClient

    client = APIClient()
    response = client.post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json")
    assert response.status_code == 200
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert [a["id"] for a in client.get("/api/v1/albums/").json()["results"]] == [album.pk]
    bad = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "nope"}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid"


def test_the_album_page_offers_editors_to_retry_failed_images(alice, bob, album):
    from albums.models import Image

    services.album_member_add(album=album, username="bob", role="viewer")
    services.image_upload_many(album=album, user=alice, files=[("a.jpg", io.BytesIO(image_bytes()))])
    page = signed_in(alice).get(f"/albums/{album.pk}/").content.decode()
    assert f'data-retry-url="/api/v1/albums/{album.pk}/retry-failed/"' in page
    assert '<button type="button" id="retry-failed" hidden>' in page  # nothing has failed
    Image.objects.filter(album=album).update(status=Image.Status.FAILED, failure_reason="I/O error")
    page = signed_in(alice).get(f"/albums/{album.pk}/").content.decode()
    assert '<button type="button" id="retry-failed" >Retry failed images</button>' in page
    assert 'id="retry-failed"' not in signed_in(bob).get(f"/albums/{album.pk}/").content.decode()


def test_the_new_album_form_offers_installed_encoders_first_and_a_custom_one(alice):
    from albums.forms import CUSTOM_ENCODER, encoder_choices, flat_choices
    from encoders.registry import known_specs

    installed = {e["spec"] for e in known_specs() if e["weights_present"]}
    grouped = encoder_choices()
    assert grouped[0][0] == "Installed" and {value for value, _ in grouped[0][1]} == installed
    assert grouped[1][0].startswith("Needs download (downloads are off")
    assert all(label.endswith("needs download") for _, label in grouped[1][1])
    choices = [value for value, _ in flat_choices(grouped)]
    assert installed and set(choices[: len(installed)]) == installed and choices[-1] == CUSTOM_ENCODER
    labels = dict(flat_choices(grouped))
    assert labels["dense:efficientnet-lite0"].endswith("words for 1,000 ImageNet concepts")  # installed: no note
    assert "words and images" in labels["open-clip:ViT-B-32/laion2b_s34b_b79k"]
    client = signed_in(alice)
    page = client.get("/").content.decode()
    assert 'name="encoder_spec"' in page and 'id="custom-encoder"' in page
    client.post("/", {"name": "Picked", "encoder_spec": "dense:efficientnet-lite0"})
    assert Album.objects.get(name="Picked").encoder_spec == "dense:efficientnet-lite0"
    client.post("/", {"name": "Typed", "encoder_spec": CUSTOM_ENCODER, "custom_encoder_spec": " DENSE:efficientnet-lite0 "})
    assert Album.objects.get(name="Typed").encoder_spec == "dense:efficientnet-lite0"
    response = client.post("/", {"name": "Blank", "encoder_spec": CUSTOM_ENCODER, "custom_encoder_spec": ""})
    assert response.status_code == 200 and "Type the encoder spec" in response.content.decode()
    response = client.post("/", {"name": "Bogus", "encoder_spec": CUSTOM_ENCODER, "custom_encoder_spec": "nope:thing"})
    assert response.status_code == 200 and not Album.objects.filter(name="Bogus").exists()


def test_query_optimization_is_locked_where_an_encoder_has_no_text(alice):
    album = services.album_create(owner=alice, name="Dense", encoder_spec="dense:efficientnet-lite0")
    client = signed_in(alice)
    page = client.get(f"/albums/{album.pk}/settings/").content.decode()
    assert 'name="use_query_optimization"' in page and "no text tower" in page and "disabled" in page
    form = {"name": "Dense", "description": "", "encoder_spec": album.encoder_spec, "pooling": album.pooling,
            "vector_storage": album.vector_storage, "max_search_results": 100, "use_query_optimization": "on"}
    client.post(f"/albums/{album.pk}/settings/", form)
    album.refresh_from_db()
    assert album.use_query_optimization is False


def test_not_found_and_not_allowed_pages_are_the_apps_own(alice, bob, album):
    services.album_member_add(album=album, username="bob", role="viewer")
    missing = signed_in(alice).get("/albums/999999/")
    assert missing.status_code == 404 and "Not found" in missing.content.decode()
    assert "URLconf" not in missing.content.decode()  # never Django's debug page listing every route
    refused = signed_in(bob).get(f"/albums/{album.pk}/settings/")
    assert refused.status_code == 403 and "Not allowed" in refused.content.decode()
    page = signed_in(alice).get("/").content.decode()
    assert 'rel="icon"' in page


def test_the_index_button_shows_only_when_something_waits(alice, album):
    page = signed_in(alice).get(f"/albums/{album.pk}/").content.decode()
    assert '<button type="button" id="index-now" hidden>' in page  # nothing pending
    services.image_upload_many(album=album, user=alice, files=[("a.jpg", io.BytesIO(image_bytes()))])
    from workers.models import IndexJob

    IndexJob.objects.filter(album=album).delete()  # the upload's job, not under test here
    page = signed_in(alice).get(f"/albums/{album.pk}/").content.decode()
    assert '<button type="button" id="index-now" >Index waiting images</button>' in page


def test_the_album_page_names_the_search_model_for_people_and_the_jobs_page_follows_running_jobs(alice, album):
    from albums.models import Album
    from workers.models import IndexJob

    model_id = "dense:efficientnet-lite0@sha256:0123456789ab+pooling=regions-4x3+storage=halfvec"
    Album.objects.filter(pk=album.pk).update(active_model_id=model_id)
    page = signed_in(alice).get(f"/albums/{album.pk}/").content.decode()
    assert "dense:efficientnet-lite0 (regions 4×3, halfvec)</span>" in page and f'title="{model_id}"' in page
    jobs = signed_in(alice).get("/jobs/").content.decode()
    assert 'hx-trigger="every 3s"' not in jobs
    IndexJob.objects.create(album=album, kind=IndexJob.Kind.INDEX, status=IndexJob.Status.RUNNING, total=3)
    jobs = signed_in(alice).get("/jobs/").content.decode()
    assert 'hx-trigger="every 3s"' in jobs and 'hx-select="#jobs"' in jobs


def test_photos_come_first_albums_show_covers_and_upload_folds_away_once_there_are_photos(alice, album):
    from albums.selectors import album_covers

    page = signed_in(alice).get(f"/albums/{album.pk}/").content.decode()
    panel = page.split('id="upload"')[1].split(">")[0]
    assert "hidden" not in panel  # an empty album opens on its upload panel
    uploads = services.image_upload_many(album=album, user=alice, files=[
        (f"{i}.jpg", io.BytesIO(image_bytes(color=(i * 40, 5, 5)))) for i in range(6)])
    page = signed_in(alice).get(f"/albums/{album.pk}/").content.decode()
    assert "hidden" in page.split('id="upload"')[1].split(">")[0]  # the photos come first; Upload is a button
    assert 'id="upload-button"' in page and 'id="drop-overlay"' in page
    newest_four = [r.image_id for r in uploads][::-1][:4]
    assert album_covers(album_ids=[album.pk]) == {album.pk: newest_four}
    listing = signed_in(alice).get("/").content.decode()
    assert all(f"/api/v1/images/{image_id}/thumbnail" in listing for image_id in newest_four)
    assert "6 photos" in listing


def test_the_album_page_sorts_like_the_api_and_shows_the_default_for_junk(alice, album):
    from datetime import datetime, timezone

    from albums.models import Image

    results = services.image_upload_many(album=album, user=alice, files=[
        (f"{n}.jpg", io.BytesIO(image_bytes(color=(i * 50, 1, 1)))) for i, n in enumerate("abc")])
    ids = {r.name: r.image_id for r in results}
    Image.objects.filter(pk=ids["c.jpg"]).update(taken_at=datetime(2001, 1, 1, tzinfo=timezone.utc))
    client = signed_in(alice)
    response = client.get(f"/albums/{album.pk}/?sort=taken")
    assert response.context["sort"] == "taken"
    # c has a capture time; a and b, undated, follow in upload order (ties by id, ascending)
    assert [image.pk for image in response.context["page"]] == [ids["c.jpg"], ids["a.jpg"], ids["b.jpg"]]
    default = client.get(f"/albums/{album.pk}/?sort=bogus")
    assert default.status_code == 200 and default.context["sort"] == "-added"
    assert [image.pk for image in default.context["page"]] == [ids["c.jpg"], ids["b.jpg"], ids["a.jpg"]]
