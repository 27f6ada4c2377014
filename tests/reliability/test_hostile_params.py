"""Hostile values in every query parameter the OpenAPI schema declares and in every field of every
server-rendered page's forms, as a signed-in user who owns one row of every kind (tests/populated.py):
never a 500. The values are the ones that hid 500s behind int() and str.isdigit() (config/params.py)."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from tests.populated import populate

pytestmark = pytest.mark.django_db

HOSTILE = ["²", "1²", "٣", "null", "[]", "[1, 2]", '{"a": 1}', str(2**70), "-1", "0", "", " 1", "1_0", "1e309", "NaN",
           "x" * 5000, "\x00", "<script>", ["1", "²"]]


@pytest.fixture
def world(make_user, settings):
    settings.LOUPE_QUERY_ENCODING = "web"  # a query never waits on a query worker that is not running
    return populate(make_user("hostile"))


def _ids(world) -> dict[str, int]:
    return {"album_id": world.album.pk, "image_id": world.image.pk, "support_set_id": world.support_set.pk,
            "class_id": world.support_class.pk, "support_image_id": world.support_image.pk, "job_id": world.job.pk,
            "user_id": world.member.pk}


def _schema() -> dict:
    from drf_spectacular.generators import SchemaGenerator

    return SchemaGenerator().get_schema(request=None, public=True)


def _query_operations() -> list[tuple[str, str, list[str]]]:
    operations = []
    for path, item in sorted(_schema()["paths"].items()):
        for method, operation in sorted(item.items()):
            names = [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]
            if names:
                operations.append((method, path, names))
    return operations


QUERY_OPERATIONS = _query_operations()


def test_the_schema_declares_query_parameters():
    assert len(QUERY_OPERATIONS) >= 5  # a schema that lost them would make the test below vacuous


@pytest.mark.parametrize("method,path,names", QUERY_OPERATIONS, ids=[f"{m.upper()} {p}" for m, p, _ in QUERY_OPERATIONS])
def test_hostile_query_parameters_are_never_a_500(world, method, path, names):
    client = APIClient()
    client.force_authenticate(world.owner)
    url = re.sub(r"{(\w+)}", lambda m: str(_ids(world)[m.group(1)]), path)
    for name in names:
        for value in HOSTILE:
            response = getattr(client, method)(url + "?" + _urlencode(name, value))
            assert response.status_code < 500, (method, url, name, value, response.content[:300])
            if response.status_code >= 400 and path.startswith("/api/v1/"):
                assert set(response.json()) == {"message", "code", "extra"}, (name, value, response.content[:300])


def _urlencode(name: str, value) -> str:
    from urllib.parse import urlencode

    return urlencode({name: value}, doseq=True)


def _page_patterns() -> list[tuple[str, str]]:
    """(url name, route) of the pages: albums/, search/ and search/rag/ url confs."""
    found = []
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.app_name in ("albums", "search", "rag"):
            found += [(f"{entry.app_name}:{p.name}", str(p.pattern)) for p in entry.url_patterns if isinstance(p, URLPattern)]
    return sorted(found)


PAGES = _page_patterns()
_FIELD = re.compile(r'<(?:input|select|textarea|button)\b[^>]*\bname="([^"]+)"')


@pytest.mark.parametrize("name,route", PAGES, ids=[name for name, _ in PAGES])
def test_hostile_page_queries_and_forms_are_never_a_500(world, name, route):
    client = Client()
    client.force_login(world.owner)
    url = "/" + re.sub(r"<int:(\w+)>", lambda m: str(_ids(world)[m.group(1)]), route)
    page = client.get(url)
    assert page.status_code in (200, 405), (url, page.status_code)
    fields = sorted(set(_FIELD.findall(page.content.decode())) - {"csrfmiddlewaretoken"}) if page.status_code == 200 else []
    fields = fields or ["id"]  # a POST-only page: still send it something
    fields += ["page", "status", "image_id", "revoke"]
    for value in HOSTILE:
        data = {field: value for field in fields}
        for method in ("get", "post"):
            response = getattr(client, method)(url, data)
            assert response.status_code < 500, (method, url, value, response.content[:300])
