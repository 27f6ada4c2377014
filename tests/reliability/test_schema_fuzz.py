"""Fuzzing every API operation from its own OpenAPI schema (schemathesis), in-process through the
WSGI app on the test database, as a signed-in user who owns one row of every kind (tests/populated.py).
Bounded: FUZZ_EXAMPLES per operation.

Path ids are the fixture's real ids (album_id, image_id, support_set_id, class_id, support_image_id,
job_id, user_id): a fuzzer's own small ids hit no row and every request with an id in the path used to
stop at a 404. The checks: never a 500, and a documented response matches its schema. How many requests
reached a real object (a 2xx, or a 4xx other than 404/405) is counted per operation, printed at the end
and written to var/schema-fuzz-reach.json. Findings are in docs/reliability.md."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from config.wsgi import application
from tests.populated import populate

pytestmark = [pytest.mark.django_db, pytest.mark.slow]  # ~2 min: every operation, FUZZ_EXAMPLES each

FUZZ_EXAMPLES = 15
REACH_FILE = Path(__file__).resolve().parents[2] / "var" / "schema-fuzz-reach.json"
schema = schemathesis.openapi.from_wsgi("/api/schema/", application)

# Per operation ("GET /api/v1/albums/{album_id}/"): requests sent, and those that reached a real object.
SENT: Counter[str] = Counter()
REACHED: Counter[str] = Counter()


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
def world(make_user, settings, monkeypatch):
    """The fuzzing user's rows, and a query encoder double (search is under test, not the encoder):
    unit vectors of the populated album's dimension, at once."""
    from search import services as search_services
    from search.query_encoding import EncodedQuery

    settings.LOUPE_QUERY_ENCODING = "web"  # never wait on a query worker that is not running
    settings.LOUPE_VLM = ""

    def encode_query(*, model, texts, image_bytes, ensemble, box=None):
        parts = set(texts) | ({"image"} if image_bytes is not None else set())
        return EncodedQuery(model_id=str(model), vectors={part: np.eye(1, 4, dtype=np.float32)[0] for part in parts})

    monkeypatch.setattr(search_services, "encode_query", encode_query)
    return populate(make_user("fuzzer"))


def real_ids(world) -> dict[str, int]:
    return {
        "album_id": world.album.pk, "image_id": world.image.pk, "support_set_id": world.support_set.pk,
        "class_id": world.support_class.pk, "support_image_id": world.support_image.pk, "job_id": world.job.pk,
        "user_id": world.member.pk, "label_id": world.label.pk,
    }


def _reached(status: int) -> bool:
    return 200 <= status < 300 or (400 <= status < 500 and status not in (404, 405))


@schema.parametrize()
@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_operation_answers_500(case, world):
    ids = real_ids(world)
    unknown = set(case.path_parameters or {}) - set(ids)
    assert not unknown, f"no real id for path parameters {unknown}: add them to real_ids()"
    if case.path_parameters:
        case.path_parameters = {name: ids[name] for name in case.path_parameters}
    # identity: schemathesis asks for gzip as `requests` does, but its WSGI transport hands the checks
    # the body undecoded (the map's compressed answer is tested in tests/search/test_map_api.py).
    response = case.call(headers={"Authorization": f"Token {world.api_key}", "Accept-Encoding": "identity"})
    key = case.operation.label  # the coverage phase also sends undocumented methods: counted, never reached
    SENT[key] += 1
    REACHED[key] += _reached(response.status_code)
    if case.path == "/api/v1/health/" and case.method.upper() == "GET":  # the coverage phase also tries other methods: 405
        # 503 "degraded" is health doing its job: no Celery worker runs in this test (unless an
        # earlier test of the session started one). Nothing else may be down, and the status
        # follows the body: 503 exactly when a component is down.
        body = response.json()
        down = body.get("down", [] if body["status"] == "ok" else ["workers"])  # non-staff see the status only
        assert down in ([], ["workers"]), body
        assert (response.status_code, body["status"]) == ((503, "degraded") if down else (200, "ok"))
        return
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])


def test_fuzzing_reached_a_real_object_on_every_operation(capsys):
    """Runs after the fuzzing above (file order): prints and saves the counts, and fails for an
    operation none of whose requests got past the lookup of its path ids."""
    if not SENT:
        pytest.skip("the fuzzing test did not run in this session")
    table = {key: {"sent": SENT[key], "reached": REACHED[key]} for key in sorted(SENT)}
    totals = {"operations": len(table), "sent": sum(SENT.values()), "reached": sum(REACHED.values()),
              "operations_reached": sum(1 for key in table if REACHED[key])}
    REACH_FILE.parent.mkdir(parents=True, exist_ok=True)
    REACH_FILE.write_text(json.dumps({"totals": totals, "operations": table}, indent=1) + "\n")
    with capsys.disabled():
        print(f"\nschema fuzz: {totals['sent']} requests, {totals['reached']} reached a real object; "
              f"{totals['operations_reached']}/{totals['operations']} operations reached one (per operation: {REACH_FILE})")
    missed = [key for key in table if not REACHED[key]]
    assert not missed, f"operations that never got past a 404/405: {missed}"
