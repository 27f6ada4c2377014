import pytest
from django.test import Client
from rest_framework.test import APIClient

from albums.models import ApiToken

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_create_shows_the_key_once_and_it_authenticates_until_revoked(alice, album):
    client = signed_in(alice)
    created = client.post("/account/tokens/", {"name": "laptop script"})
    assert created.status_code == 302 and created["Location"] == "/account/tokens/"  # a reload makes no second token
    page = client.get("/account/tokens/").content.decode()
    token = ApiToken.objects.get(user=alice)
    key = page.split('id="token-key" readonly value="')[1].split('"')[0]
    assert key.startswith("lp_") and token.prefix == key[:8] and key not in token.key_hash
    listing = client.get("/account/tokens/").content.decode()
    assert "laptop script" in listing and key not in listing  # never shown again
    assert ApiToken.objects.filter(user=alice).count() == 1

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert [a["id"] for a in api.get("/api/v1/albums/").json()["results"]] == [album.pk]
    token.refresh_from_db()
    assert token.last_used_at is not None

    client.post("/account/tokens/", {"revoke": token.pk})
    assert not ApiToken.objects.exists()
    response = api.get("/api/v1/albums/")
    assert response.status_code == 401 and response.json()["code"] == "authentication_failed"


def test_users_cannot_revoke_or_see_each_others_tokens(alice, bob):
    signed_in(alice).post("/account/tokens/", {"name": "alice's"})
    token = ApiToken.objects.get()
    page = signed_in(bob).post("/account/tokens/", {"revoke": token.pk}, follow=True).content.decode()
    assert ApiToken.objects.filter(pk=token.pk).exists() and "alice&#x27;s" not in page


def test_tokens_page_needs_sign_in():
    assert Client().get("/account/tokens/").status_code == 302


@pytest.mark.parametrize("value", ["²", "abc", "", "-1", "9" * 30, "1.5"], ids=repr)
def test_revoking_something_that_is_not_a_token_id_is_a_400_and_revokes_nothing(alice, value):
    from albums.tokens import api_token_create

    api_token_create(user=alice, name="laptop")
    response = signed_in(alice).post("/account/tokens/", {"revoke": value})
    assert response.status_code == 400
    assert "revoke must be" in response.content.decode()
    assert ApiToken.objects.filter(user=alice).count() == 1
