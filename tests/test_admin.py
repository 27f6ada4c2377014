"""Every model registered with the admin: its list page (plain and searched) and its change page open
for a superuser with a row in the table (tests/populated.py); the list links to the row and the change
page shows its string."""

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.test import Client
from django.urls import reverse
from django.utils.html import escape

from tests.populated import populate

pytestmark = pytest.mark.django_db

REGISTERED = sorted(admin.site._registry, key=lambda model: model._meta.label)


@pytest.fixture
def superuser_client(make_user):
    root = make_user("root", is_staff=True, is_superuser=True)
    populate(make_user("owner"))
    client = Client()
    client.force_login(root)
    return client


@pytest.mark.parametrize("model", REGISTERED, ids=[model._meta.label for model in REGISTERED])
def test_admin_list_and_change_pages_show_a_row(superuser_client, model):
    row = model._default_manager.order_by("pk").first()
    assert row is not None, f"populate() made no {model._meta.label}"
    info = (model._meta.app_label, model._meta.model_name)
    change_url = reverse("admin:{}_{}_change".format(*info), args=[quote(row.pk)])

    listing = superuser_client.get(reverse("admin:{}_{}_changelist".format(*info)))
    assert listing.status_code == 200
    assert change_url in listing.content.decode(), f"{model._meta.label}: no link to {row!r} on the list page"

    searched = superuser_client.get(reverse("admin:{}_{}_changelist".format(*info)), {"q": "populated ²"})
    assert searched.status_code == 200  # the search_fields all exist

    change = superuser_client.get(change_url)
    assert change.status_code == 200
    assert escape(str(row)) in change.content.decode(), f"{model._meta.label}: {str(row)!r} not on its change page"


def test_every_registered_model_is_covered():
    """A model registered later is covered by the parametrization above without editing this file;
    this pins that the admin still has the models the project expects."""
    labels = {model._meta.label for model in REGISTERED}
    assert {"albums.Album", "albums.Image", "rag.SupportSet", "rag.PatchEmbedding", "workers.IndexJob"} <= labels
