"""Fuzzing every API operation from its own OpenAPI schema (schemathesis), in-process through the
WSGI app on the test database, as a signed-in user who owns an album with an image. Bounded:
FUZZ_EXAMPLES per operation. The check is the one that matters for reliability: never a 500.
Findings are in docs/reliability.md."""

from __future__ import annotations

import io

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from config.wsgi import application

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # ~2 min: every operation, FUZZ_EXAMPLES each

FUZZ_EXAMPLES = 15
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture(autouse=True)
def _keep_the_test_connection():
    """As Django's test client does: the WSGI handler would otherwise close the test's connection
    (inside its transaction) at the end of every request."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def fuzz_headers(make_user, settings):
    """A user with a token who owns album 1's stand-in: ids the fuzzer guesses small hit real rows."""
    from albums import services
    from albums.tokens import api_token_create
    from tests.images import image_bytes

    user = make_user("fuzzer")
    album = services.album_create(owner=user, name="fuzz")
    services.image_upload_many(album=album, user=user, files=[("a.jpg", io.BytesIO(image_bytes()))])
    _, key = api_token_create(user=user, name="fuzz")
    return {"Authorization": f"Token {key}"}


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_answers_500(case, fuzz_headers):
    response = case.call(headers=fuzz_headers)
    if case.path == "/api/v1/health/" and case.method.upper() == "GET":  # the coverage phase also tries other methods: 405
        # 503 "degraded" is health doing its job: no Celery worker runs in this test (unless an
        # earlier test of the session started one). Nothing else may be down, and the status
        # follows the body: 503 exactly when a component is down.
        body = response.json()
        assert body["down"] in ([], ["workers"]), body
        assert (response.status_code, body["status"]) == ((503, "degraded") if body["down"] else (200, "ok"))
        return
    case.validate_response(response, checks=[not_a_server_error])
