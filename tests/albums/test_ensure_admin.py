"""`ensure_admin` runs on every `make run` and every `docker compose up` (the migrate service): it creates
the first admin and must never touch an account that exists."""

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def ensure_admin(monkeypatch, **env: str) -> str:
    for name in ("LOUPE_ADMIN_USERNAME", "LOUPE_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    call_command("ensure_admin", stdout=out)
    return out.getvalue()


def test_a_changed_admin_password_survives_the_next_start(monkeypatch):
    ensure_admin(monkeypatch, LOUPE_ADMIN_USERNAME="admin", LOUPE_ADMIN_PASSWORD="from-the-env-file-1")
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("from-the-env-file-1")

    admin.set_password("changed-after-install-2")  # `manage.py changepassword`, or the admin site
    admin.save()
    out = ensure_admin(monkeypatch, LOUPE_ADMIN_USERNAME="admin", LOUPE_ADMIN_PASSWORD="from-the-env-file-1")

    admin.refresh_from_db()
    assert admin.check_password("changed-after-install-2")
    assert not admin.check_password("from-the-env-file-1")
    assert "exists" in out and "not changed" in out
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_no_second_admin_is_created_under_another_name(monkeypatch):
    ensure_admin(monkeypatch, LOUPE_ADMIN_USERNAME="first", LOUPE_ADMIN_PASSWORD="first-password-1")
    ensure_admin(monkeypatch, LOUPE_ADMIN_USERNAME="second", LOUPE_ADMIN_PASSWORD="second-password-2")
    assert list(get_user_model().objects.filter(is_superuser=True).values_list("username", flat=True)) == ["first"]


def test_without_a_password_one_is_generated_and_printed_once(monkeypatch):
    out = ensure_admin(monkeypatch, LOUPE_ADMIN_USERNAME="admin")
    password = out.split("password: ", 1)[1].split()[0]
    assert len(password) >= 16 and get_user_model().objects.get(username="admin").check_password(password)
    assert "password:" not in ensure_admin(monkeypatch, LOUPE_ADMIN_USERNAME="admin")


@pytest.mark.parametrize("placeholder", ["change-me", "CHANGE-ME", "changeme"])
def test_the_shipped_placeholder_password_is_never_used(monkeypatch, placeholder):
    out = ensure_admin(monkeypatch, LOUPE_ADMIN_USERNAME="admin", LOUPE_ADMIN_PASSWORD=placeholder)
    admin = get_user_model().objects.get(username="admin")
    assert not admin.check_password(placeholder)
    assert "placeholder" in out
    password = out.split("password: ", 1)[1].split()[0]
    assert admin.check_password(password)
