"""Faults on a whole Loupe of its own (bench.stack: own PostgreSQL, Redis, gunicorn, Celery worker),
so restarting PostgreSQL and Redis never disturbs the test database other tests use. A smaller run
of bench/faults.py: Redis restarted mid-job, PostgreSQL restarted mid-job, uploads while the worker
is down. Each ends with exactly one vector per image, and health named the part that was down.
SIGKILL of a worker mid-job is tests/workers/test_faults.py."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from bench import faults
from bench.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

IMAGES, OUTAGE = 240, 4.0
# Chunks of 4: sixty of them, so the job is still running when the fault is injected.
WORKER_ENV = {**faults.WORKER_ENV, "LOUPE_INDEX_CHUNK": "4", "LOUPE_ENCODE_BATCH_SIZE": "4"}


@pytest.fixture(scope="module")
def stack(tiny_models_dir, postgres_template):
    # Not under pytest's tmp_path: as root, PostgreSQL's pg_ctl runs as another user, which cannot
    # enter pytest's private (0700) temp folder to stop the server.
    workdir = Path(tempfile.mkdtemp(prefix="loupe-stack-"))
    workdir.chmod(0o755)
    # The session's tiny models, built by the same function the stack would call (3-7 s less).
    shutil.copytree(tiny_models_dir, workdir / "models")
    try:
        with Stack.started(workdir, worker_env=WORKER_ENV, postgres_template=postgres_template) as stack:
            stack.start_worker("w1")
            yield stack
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _assert_recovered(result: dict, *, images: int) -> None:
    assert result["settled"], result
    assert result["images_with_one_vector"] == result["images"] == images, result
    assert result["failed_images"] == 0
    assert all(job["status"] == "succeeded" for job in result["jobs"]), result["jobs"]
    assert result["seconds_from_fault_to_health_ok"] is not None, result  # health came back
    # Workers are seen by their heartbeat keys, which a reconnected consumer writes again (finding 4,
    # fixed): health stays ok after the fault while they index.
    assert result["health_after"] == 200 and result["down_after"] == [], result


def test_redis_restart_mid_job(stack):
    result = faults.scenario_redis_restart(stack, images=IMAGES, outage=OUTAGE)
    during = result["during"]
    assert set(during["health"]) == {"503"} and set(during["down"]) == {"redis,workers"}, during
    assert set(during["album"]) == {"200"} and set(during["search"]) == {"200"}, during  # reads need no Redis
    assert set(during["upload"]) == {"201"}, during  # stored; indexed once Redis is back
    _assert_recovered(result, images=IMAGES + 1)


def test_postgres_restart_mid_job(stack):
    result = faults.scenario_postgres_restart(stack, images=IMAGES, outage=OUTAGE)
    during = result["during"]
    assert set(during["health"]) == {"503"} and "database" in ",".join(during["down"]), during
    assert set(during["album"]) == {"503"} and set(during["upload"]) == {"503"}, during
    _assert_recovered(result, images=IMAGES)  # the upload during the outage was refused, not half-stored


def test_uploads_while_the_worker_is_down_are_indexed_when_it_returns(stack):
    result = faults.scenario_queue_while_worker_down(stack, images=IMAGES, outage=OUTAGE)
    during = result["during"]
    assert set(during["down"]) == {"workers"} and set(during["upload"]) == {"201"}, during
    assert sum(result["queued_while_down"].values()) > 0
    _assert_recovered(result, images=IMAGES + 1)


def test_uploads_while_redis_is_down_are_indexed_once_it_is_back_with_no_request(stack):
    result = faults.scenario_uploads_while_redis_down(stack, images=IMAGES, outage=OUTAGE)
    during = result["during"]
    assert set(during["down"]) == {"redis,workers"} and set(during["upload"]) == {"201"}, during
    # Each upload's job failed at once, planning nothing (the broker refused it); the sweep started the
    # one that indexed them.
    *refused, last = result["jobs"]
    assert refused and all(job["status"] == "failed" and job["total"] == 0 for job in refused), result["jobs"]
    assert last["status"] == "succeeded" and last["total"] == IMAGES // 20 + 1, result["jobs"]
    assert result["settled"] and result["failed_images"] == 0, result
    assert result["images_with_one_vector"] == result["images"] == IMAGES // 20 + 1, result
    assert result["health_after"] == 200 and result["down_after"] == [], result


def test_a_worker_mode_text_search_while_redis_is_down_is_a_503_that_says_so(stack):
    result = faults.scenario_text_search_while_redis_down(stack, images=4, outage=OUTAGE)
    assert result["before"] == 200, result
    assert result["during"] and all(d == {"status": 503, "code": "broker_unavailable", "retry_after": "5"}
                                    for d in result["during"]), result
    assert result["seconds_from_fault_to_search_ok"] is not None
