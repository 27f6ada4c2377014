"""Cheap requests that must not make the server do unbounded work, and limits a client cannot
step around (issue #16, "Abuse"). Each test here failed on the code before its fix."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from tests.reliability.test_security import _assert_throttled, low_rates  # noqa: F401 — low_rates is a fixture

pytestmark = pytest.mark.django_db

GUESS = {"username": "alice", "password": "guess"}


def _fresh_addresses(*addresses: str) -> None:
    for address in addresses:
        cache.delete(f"throttle_auth_{address}")


def test_rotating_x_forwarded_for_does_not_escape_the_token_throttle(alice, low_rates):
    addresses = [f"203.0.113.{i}" for i in range(5)]
    _fresh_addresses("127.0.0.1", *addresses)
    client = APIClient()
    statuses = [
        client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR=address).status_code
        for address in addresses[:3]
    ]
    assert statuses == [400, 400, 400]
    _assert_throttled(client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR=addresses[3]))


def test_behind_one_proxy_the_address_the_proxy_saw_is_the_client(alice, low_rates, settings):
    """With LOUPE_TRUSTED_PROXIES=1 the last X-Forwarded-For entry (the proxy's own record) counts;
    what the client itself put in front of it does not."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    _fresh_addresses("198.51.100.7", "198.51.100.8")
    client = APIClient()
    for forged in ("1.1.1.1", "2.2.2.2", "3.3.3.3"):
        response = client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR=f"{forged}, 198.51.100.7")
        assert response.status_code == 400
    _assert_throttled(client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR="4.4.4.4, 198.51.100.7"))
    # Another client behind the same proxy has its own allowance.
    assert client.post("/api/v1/auth/token/", GUESS, format="json", HTTP_X_FORWARDED_FOR="198.51.100.8").status_code == 400


def test_the_sign_in_page_is_throttled_and_shares_the_token_endpoints_allowance(alice, low_rates):
    _fresh_addresses("127.0.0.1")
    assert APIClient().post("/api/v1/auth/token/", GUESS, format="json").status_code == 400
    page = Client()
    for _ in range(2):
        response = page.post("/accounts/login/", GUESS)
        assert response.status_code == 200 and b"didn" in response.content  # the wrong-password message
    response = page.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})  # right, but too late
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 1
    assert b"Too many sign-in attempts" in response.content
    assert "_auth_user_id" not in page.session
    _fresh_addresses("127.0.0.1")
    response = page.post("/accounts/login/", {"username": "alice", "password": "pw-alice"})
    assert response.status_code == 302 and page.session["_auth_user_id"] == str(alice.pk)
