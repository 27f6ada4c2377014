"""Security items of the reliability issue: CSRF for session auth, revocable tokens, Django's default
password hasher in production, throttles on auth/upload/search (shared through Redis, open when
Redis is down), `check --deploy` clean, no secrets in the repository, private file responses.
Endpoint-by-endpoint isolation is test_isolation_sweep.py."""

from __future__ import annotations

import io
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.test import Client
from rest_framework.test import APIClient

from albums.models import Album, Image
from albums.tokens import api_token_create, api_token_revoke
from tests.images import image_bytes

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def _production_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))}
    return {**env, "DJANGO_SETTINGS_MODULE": "config.settings.production",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), **extra}


# --- CSRF -------------------------------------------------------------------------------------------


def test_session_auth_needs_the_csrf_token_and_token_auth_does_not(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    refused = client.post("/api/v1/albums/", {"name": "csrf"}, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["code"] == "permission_denied" and "CSRF" in refused.json()["message"]
    assert not Album.objects.exists()

    client.get("/")  # the album list page sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post("/api/v1/albums/", {"name": "csrf"}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 201

    _, key = api_token_create(user=alice, name="script")
    scripted = Client(enforce_csrf_checks=True).post(
        "/api/v1/albums/", {"name": "by token"}, content_type="application/json", HTTP_AUTHORIZATION=f"Token {key}"
    )
    assert scripted.status_code == 201


def test_page_forms_need_the_csrf_token(alice):
    from albums import services

    album = services.album_create(owner=alice, name="keep me")
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.post(f"/albums/{album.pk}/delete/").status_code == 403
    assert Album.objects.filter(pk=album.pk).exists()


# --- Tokens -----------------------------------------------------------------------------------------


def test_tokens_stop_working_when_revoked_or_the_user_is_deactivated(alice, album):
    token, key = api_token_create(user=alice, name="laptop")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(f"/api/v1/albums/{album.pk}/").status_code == 200
    assert api_token_revoke(user=alice, token_id=token.pk)
    assert client.get(f"/api/v1/albums/{album.pk}/").json()["code"] == "authentication_failed"

    # DRF's password-exchanged token: a deactivated user's token is refused as well.
    drf_key = APIClient().post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json").json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {drf_key}")
    assert client.get(f"/api/v1/albums/{album.pk}/").status_code == 200
    alice.is_active = False
    alice.save(update_fields=["is_active"])
    assert client.get(f"/api/v1/albums/{album.pk}/").status_code == 401


def test_named_token_keys_are_stored_hashed(alice):
    token, key = api_token_create(user=alice, name="x")
    token.refresh_from_db()
    assert key not in repr(token.__dict__) and len(token.key_hash) == 64


# --- Passwords and deploy checks under production settings -----------------------------------------


def test_production_uses_djangos_default_password_hasher(tmp_path):
    code = ("from django.conf import settings, global_settings; from django.contrib.auth.hashers import make_password;"
            "assert settings.PASSWORD_HASHERS == global_settings.PASSWORD_HASHERS, settings.PASSWORD_HASHERS;"
            "print(make_password('correct horse'))")
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True, text=True,
                            env=_production_env(LOUPE_VAR_DIR=str(tmp_path)), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    algorithm, iterations, salt, digest = result.stdout.strip().splitlines()[-1].split("$")
    assert algorithm == "pbkdf2_sha256" and int(iterations) >= 1_000_000


def test_check_deploy_is_clean_under_production_settings(tmp_path):
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                            capture_output=True, text=True, env=_production_env(LOUPE_VAR_DIR=str(tmp_path)), timeout=180)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    env = _production_env(LOUPE_VAR_DIR=str(tmp_path))
    del env["DJANGO_SECRET_KEY"]
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode != 0 and "DJANGO_SECRET_KEY must be set" in result.stderr



def _env_example() -> dict[str, str]:
    """`.env.example` as compose's env_file reads it: KEY=VALUE lines, comments skipped."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.lstrip().startswith("#"))


def _check_deploy(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", *args], cwd=ROOT, capture_output=True,
                          text=True, env=env, timeout=180)


def test_check_deploy_refuses_the_shipped_example_secret(tmp_path):
    """`.env.example` copied to `.env` unchanged: production does not start, and says why."""
    example = _env_example()
    env = {**_production_env(LOUPE_VAR_DIR=str(tmp_path)), **example}
    assert env["DJANGO_SECRET_KEY"] == example["DJANGO_SECRET_KEY"]
    result = _check_deploy(env)
    assert result.returncode != 0, result.stdout + result.stderr
    assert "ImproperlyConfigured" in result.stderr and "DJANGO_SECRET_KEY is a placeholder" in result.stderr


@pytest.mark.parametrize("secret", [
    "loupe-insecure-development-key-change-me",  # base settings' key for `make run`
    "change-me",
    "django-insecure-" + "x7" * 25,  # what `startproject` writes
])
def test_production_refuses_other_known_placeholder_secrets(tmp_path, secret):
    result = _check_deploy(_production_env(LOUPE_VAR_DIR=str(tmp_path), DJANGO_SECRET_KEY=secret))
    assert result.returncode != 0 and "DJANGO_SECRET_KEY is a placeholder" in result.stderr


def test_the_example_with_a_real_secret_passes_check_deploy_without_warnings(tmp_path):
    """Only the secret needs filling in: HTTPS redirect, HSTS and secure cookies are on by default."""
    env = {**_production_env(LOUPE_VAR_DIR=str(tmp_path)), **_env_example(),
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
    result = _check_deploy(env, "--fail-level", "WARNING")
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    code = "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE)"
    shown = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True, text=True,
                           env=env, timeout=120)
    assert shown.stdout.strip().splitlines()[-1].split() == ["True", "31536000", "True"], shown.stderr[-2000:]


def test_the_documented_plain_http_opt_out_turns_redirect_hsts_and_secure_cookies_off(tmp_path):
    env = {**_production_env(LOUPE_VAR_DIR=str(tmp_path)), **_env_example(),
           "DJANGO_SECRET_KEY": secrets.token_urlsafe(50), "DJANGO_SECURE_COOKIES": "false"}
    assert "# DJANGO_SECURE_COOKIES=false" in (ROOT / ".env.example").read_text()  # the opt-out is documented there
    result = _check_deploy(env)
    assert result.returncode == 0, result.stderr[-2000:]
    # Django still says what plain HTTP gives up; nothing else.
    assert {"security.W004", "security.W008", "security.W012", "security.W016"} == set(re.findall(r"security\.W\d+", result.stdout + result.stderr))


# --- No secrets in the repository ------------------------------------------------------------------

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "OpenAI-style key": re.compile(r"\bsk-[A-Za-z0-9_-]{32,}\b"),
    "Slack token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    "Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "hard-coded Django secret": re.compile(r"SECRET_KEY\s*=\s*['\"](?!loupe-insecure-development-key)[^'\"]{20,}['\"]"),
}
SECRET_FILE_NAMES = re.compile(r"(^|/)(\.env|id_rsa|id_ed25519|.*\.pem|.*\.key|.*\.p12|credentials\.json)$")


def test_no_secrets_are_tracked_in_the_repository():
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    files = [f for f in files if f and (ROOT / f).is_file()]
    assert len(files) > 50
    findings = [f"{name}: a {f!r} file" for name in files for f in [name] if SECRET_FILE_NAMES.search(name)]
    for name in files:
        data = (ROOT / name).read_bytes()[:2_000_000]
        if b"\0" in data[:1024]:
            continue  # binary
        text = data.decode("utf-8", "replace")
        findings += [f"{name}: {label}" for label, pattern in SECRET_PATTERNS.items() if pattern.search(text)]
    assert not findings, findings


# --- Throttles ---------------------------------------------------------------------------------------


@pytest.fixture
def low_rates(settings):
    """Low rates through settings, and a clean slate in the shared cache for the users involved."""
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK,
                               "DEFAULT_THROTTLE_RATES": {"auth": "3/minute", "search": "3/minute", "upload": "2/minute"}}

    def reset(scope: str, ident) -> None:
        cache.delete(f"throttle_{scope}_{ident}")

    return reset


def _assert_throttled(response):
    assert response.status_code == 429, response.content
    body = response.json()
    assert body["code"] == "throttled" and body["message"]
    assert body["extra"]["retry_after_seconds"] >= 1
    assert int(response["Retry-After"]) >= 1


def test_search_is_throttled_per_user(alice, bob, album, member_of, low_rates, client_for):
    member_of(bob)
    for user in (alice, bob):
        low_rates("search", user.pk)
    client = client_for(alice)
    statuses = [client.post(f"/api/v1/albums/{album.pk}/search/", {"text": "x"}, format="json").status_code for _ in range(3)]
    assert statuses == [409, 409, 409]  # album_not_indexed; every call counts
    _assert_throttled(client.post(f"/api/v1/albums/{album.pk}/search/", {"text": "x"}, format="json"))
    _assert_throttled(client.get("/api/v1/images/1/similar/"))  # same scope
    # Another user has their own allowance.
    assert client_for(bob).post(f"/api/v1/albums/{album.pk}/search/", {"text": "x"}, format="json").status_code == 409


def test_upload_is_throttled_and_listing_is_not(alice, album, low_rates, client_for):
    low_rates("upload", alice.pk)
    client = client_for(alice)
    for i in range(2):
        files = {"files": [io.BytesIO(image_bytes(color=(i, 1, 1)))]}
        assert client.post(f"/api/v1/albums/{album.pk}/images/", files, format="multipart").status_code == 201
    _assert_throttled(client.post(f"/api/v1/albums/{album.pk}/images/", {"files": [io.BytesIO(image_bytes(color=(9, 1, 1)))]},
                                  format="multipart"))
    assert Image.objects.filter(album=album).count() == 2
    assert client.get(f"/api/v1/albums/{album.pk}/images/").status_code == 200


def test_token_endpoint_is_throttled(alice, low_rates):
    low_rates("auth", "127.0.0.1")
    client = APIClient()
    for _ in range(3):
        assert client.post("/api/v1/auth/token/", {"username": "alice", "password": "guess"}, format="json").status_code == 400
    _assert_throttled(client.post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"}, format="json"))


def test_throttle_counts_live_in_the_shared_redis_cache(settings):
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert settings.CACHES["default"]["LOCATION"] == settings.REDIS_URL
    # Fail fast while Redis restarts: every cache user treats an error as a miss, none may hang.
    assert settings.CACHES["default"]["OPTIONS"]["socket_timeout"] <= 5
    assert settings.CACHES["default"]["OPTIONS"]["socket_connect_timeout"] <= 5


def test_search_and_upload_still_answer_when_the_throttle_cache_is_down(alice, album, low_rates, client_for, settings, tmp_path):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": f"unix://{tmp_path}/no-redis.sock"}}
    client = client_for(alice)
    for _ in range(5):  # past the low rate: nothing can be counted, so nothing is refused
        assert client.post(f"/api/v1/albums/{album.pk}/search/", {"text": "x"}, format="json").status_code == 409
    response = client.post(f"/api/v1/albums/{album.pk}/images/", {"files": [io.BytesIO(image_bytes())]}, format="multipart")
    assert response.status_code == 201


# --- Private files ---------------------------------------------------------------------------------


def test_files_are_private_and_not_sniffed(alice, album, client_for):
    from albums import services

    [result] = services.image_upload_many(album=album, user=alice, files=[("<script>.jpg", io.BytesIO(image_bytes()))])
    for path in (f"/api/v1/images/{result.image_id}/file", f"/api/v1/images/{result.image_id}/thumbnail"):
        response = client_for(alice).get(path)
        assert response.status_code == 200
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Cache-Control"].startswith("private")
        assert response["Content-Type"] in ("image/jpeg", "image/webp")
    assert Client().get(f"/media/albums/{album.pk}/").status_code == 404
