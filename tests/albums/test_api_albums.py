import pytest

from albums.models import Album, AlbumMembership
from albums.roles import Role

pytestmark = pytest.mark.django_db


def test_create_album_makes_the_creator_its_owner(alice, client_for):
    response = client_for(alice).post("/api/v1/albums/", {"name": "Holidays", "description": "2025"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["name"] == "Holidays"
    assert body["role"] == "owner"
    assert body["owner"] == "alice"
    assert body["encoder_spec"]
    assert body["max_search_results"] == 100
    assert body["use_query_optimization"] is False  # no encoder here ensembles by default (issue #19)
    assert AlbumMembership.objects.get(album_id=body["id"], user=alice).role == Role.OWNER


@pytest.mark.parametrize("spec,ensembles", [
    ("siglip:google/siglip2-base-patch16-224", True),  # SigLIP's own practice
    ("open-clip:ViT-B-32/laion2b_s34b_b79k", False),  # not measured to help here
    ("openai-clip:ViT-B/32", False),
    ("dense:efficientnet-lite0", False),  # no text tower: nothing to ensemble
])
def test_query_optimization_starts_from_the_encoder_and_the_request_wins(alice, client_for, spec, ensembles):
    client = client_for(alice)
    body = client.post("/api/v1/albums/", {"name": spec, "encoder_spec": spec}, format="json").json()
    assert body["use_query_optimization"] is ensembles, body
    body = client.post("/api/v1/albums/", {"name": spec + "+", "encoder_spec": spec, "use_query_optimization": True},
                       format="json").json()
    assert body["use_query_optimization"] is True


def test_create_album_rejects_unknown_fields_and_bad_values(alice, client_for):
    client = client_for(alice)
    response = client.post("/api/v1/albums/", {"name": "x", "colour": "red"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "colour" in response.json()["extra"]["fields"]
    response = client.post("/api/v1/albums/", {"name": "x", "max_search_results": 0}, format="json")
    assert response.status_code == 400
    assert "max_search_results" in response.json()["extra"]["fields"]
    response = client.post("/api/v1/albums/", {"name": "x", "encoder_spec": "nonsense-backend:foo"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "encoder_spec_invalid"  # no such backend; encoder_not_allowed is for valid specs
    assert "nonsense-backend" in response.json()["message"]
    assert not Album.objects.exists()


def test_list_shows_own_and_shared_albums_with_role_and_count(alice, bob, album, member_of, client_for):
    bobs = client_for(bob).post("/api/v1/albums/", {"name": "Bob's"}, format="json").json()
    member_of(bob, Role.EDITOR)
    response = client_for(bob).get("/api/v1/albums/")
    assert response.status_code == 200
    rows = {row["id"]: row for row in response.json()["results"]}
    assert set(rows) == {album.pk, bobs["id"]}
    assert rows[album.pk]["role"] == "editor"
    assert rows[album.pk]["image_count"] == 0
    assert rows[bobs["id"]]["role"] == "owner"
    # Alice sees only her own.
    assert [r["id"] for r in client_for(alice).get("/api/v1/albums/").json()["results"]] == [album.pk]


def test_owner_updates_settings(alice, album, client_for):
    response = client_for(alice).patch(
        f"/api/v1/albums/{album.pk}/",
        {"min_search_score": 0.25, "max_search_results": 500, "use_query_optimization": False, "description": "d"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    album.refresh_from_db()
    assert (album.min_search_score, album.max_search_results, album.use_query_optimization) == (0.25, 500, False)
    assert album.generation == 1


def test_changing_the_encoder_bumps_the_generation(alice, album, client_for, settings, tiny_models_dir):
    from tests.tiny_models import OPEN_CLIP_TINY

    settings.LOUPE_MODELS_DIR = tiny_models_dir
    other = OPEN_CLIP_TINY  # installed: its weights are in the models folder
    response = client_for(alice).patch(f"/api/v1/albums/{album.pk}/", {"encoder_spec": other}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["encoder_spec"] == other
    assert response.json()["generation"] == 2
    # Saving the same encoder again is not a change.
    client_for(alice).patch(f"/api/v1/albums/{album.pk}/", {"encoder_spec": other}, format="json")
    album.refresh_from_db()
    assert album.generation == 2


def test_an_encoder_whose_weights_are_missing_is_refused_and_nothing_changes(alice, album, client_for, settings):
    """Its rebuild could only fail, leaving the album on the old encoder; the owner is told now, with
    where the weights go."""
    settings.LOUPE_ALLOW_DOWNLOADS = False
    before = (album.encoder_spec, album.generation)
    response = client_for(alice).patch(f"/api/v1/albums/{album.pk}/", {"encoder_spec": "openai-clip:ViT-B/32"},
                                       format="json")
    assert response.status_code == 409 and response.json()["code"] == "encoder_weights_missing"
    assert "ViT-B-32.pt" in response.json()["message"] and response.json()["extra"]["files"]
    album.refresh_from_db()
    assert (album.encoder_spec, album.generation) == before


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR])
def test_only_owners_change_settings_or_delete(album, bob, member_of, client_for, role):
    member_of(bob, role)
    client = client_for(bob)
    response = client.patch(f"/api/v1/albums/{album.pk}/", {"name": "mine now"}, format="json")
    assert response.status_code == 403
    assert response.json()["code"] == "role_required"
    assert client.delete(f"/api/v1/albums/{album.pk}/").status_code == 403
    album.refresh_from_db()
    assert album.name == "Alice's trip"


def test_owner_deletes_album(alice, album, client_for):
    assert client_for(alice).delete(f"/api/v1/albums/{album.pk}/").status_code == 204
    assert not Album.objects.filter(pk=album.pk).exists()


def test_members_add_change_remove(alice, bob, album, client_for):
    client = client_for(alice)
    response = client.post(f"/api/v1/albums/{album.pk}/members/", {"username": "bob", "role": "editor"}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["role"] == "editor"
    members = client.get(f"/api/v1/albums/{album.pk}/members/").json()
    assert {(m["username"], m["role"]) for m in members} == {("alice", "owner"), ("bob", "editor")}
    response = client.post(f"/api/v1/albums/{album.pk}/members/", {"username": "bob", "role": "viewer"}, format="json")
    assert response.json()["role"] == "viewer"
    assert client.delete(f"/api/v1/albums/{album.pk}/members/{bob.pk}/").status_code == 204
    assert not AlbumMembership.objects.filter(album=album, user=bob).exists()


def test_member_errors(alice, album, client_for):
    client = client_for(alice)
    response = client.post(f"/api/v1/albums/{album.pk}/members/", {"username": "nobody"}, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "user_not_found"
    response = client.post(f"/api/v1/albums/{album.pk}/members/", {"username": "alice", "role": "boss"}, format="json")
    assert response.status_code == 400
    # The last owner can neither leave nor be demoted.
    response = client.delete(f"/api/v1/albums/{album.pk}/members/{alice.pk}/")
    assert response.status_code == 409
    assert response.json()["code"] == "membership_conflict"
    response = client.post(f"/api/v1/albums/{album.pk}/members/", {"username": "alice", "role": "viewer"}, format="json")
    assert response.status_code == 409


def test_viewer_can_leave_but_not_remove_others(alice, bob, make_user, album, member_of, client_for):
    carol = make_user("carol")
    member_of(bob)
    member_of(carol)
    client = client_for(bob)
    assert client.delete(f"/api/v1/albums/{album.pk}/members/{carol.pk}/").status_code == 403
    assert client.post(f"/api/v1/albums/{album.pk}/members/", {"username": "bob", "role": "owner"}, format="json").status_code == 403
    assert client.delete(f"/api/v1/albums/{album.pk}/members/{bob.pk}/").status_code == 204
    assert client.get(f"/api/v1/albums/{album.pk}/").status_code == 404


def test_error_shape_is_uniform(client_for):
    response = client_for(None).get("/api/v1/albums/")
    assert response.status_code == 401
    assert set(response.json()) == {"message", "code", "extra"}
    assert response.json()["code"] == "not_authenticated"
