"""Model fetch jobs: the default text encoder's weights, downloaded in the background where a network
exists (`LOUPE_ALLOW_DOWNLOADS` auto or true), so that text search works on a fresh install.

The launcher (`manage.py fetch_default_encoder`) or the first album that needs the weights starts
one (albums asks through albums.hooks.model_fetch). It is an IndexJob of kind `fetch` with no album:
`model_id` holds the spec, `done`/`total` count bytes, staff see it on the jobs page and in Flower.
One runs per spec at a time; a second request gets it. Where no hub answers within a few seconds it
fails at once with the reason, and new albums then take the next default that is here. Index jobs
of albums on that encoder wait for it (workers.indexing) and run once the weights land.
"""

from __future__ import annotations

import logging
import time
import uuid

from django.db import IntegrityError, transaction
from django.utils import timezone

from albums.hooks import ModelFetchState
from encoders.errors import EncoderError
from encoders.fetch import fetch_with_progress, hub_probe
from encoders.spec import EncoderSpec
from encoders.weights import find_weights
from workers.models import IndexJob

logger = logging.getLogger(__name__)

PROGRESS_SECONDS = 0.5  # how often the job row hears of the bytes (and counts as alive)


def fetch_jobs(spec: str):
    return IndexJob.objects.filter(kind=IndexJob.Kind.FETCH, model_id=spec)


def active_fetch(spec: str) -> IndexJob | None:
    return fetch_jobs(spec).filter(status__in=IndexJob.ACTIVE_STATUSES).first()


def last_fetch(spec: str) -> IndexJob | None:
    return fetch_jobs(spec).order_by("-created_at", "-pk").first()


def model_fetch_start(*, spec: str, user=None) -> tuple[IndexJob, bool]:
    """Queue a download of `spec`'s weights, or return the one under way (created=False). One that
    stopped giving signs of life (its worker killed) is failed and replaced."""
    active = active_fetch(spec)
    if active is not None:
        if not active.is_stale:
            return active, False
        IndexJob.objects.filter(pk=active.pk, status__in=IndexJob.ACTIVE_STATUSES).update(
            status=IndexJob.Status.FAILED, finished_at=timezone.now(),
            message="Stalled: no progress for a while; a new download replaced it.")
    task_id = str(uuid.uuid4())
    try:
        with transaction.atomic():
            job = IndexJob.objects.create(kind=IndexJob.Kind.FETCH, model_id=spec, created_by=user,
                                          celery_task_id=task_id, message=f"Waiting for a worker to download {spec}.")
    except IntegrityError:  # another request started one a moment ago
        return active_fetch(spec), False
    from workers.tasks import model_fetch_run  # cycle: workers.tasks imports this module

    def send() -> None:
        try:
            model_fetch_run.apply_async((job.pk,), task_id=task_id)
        except Exception as exc:  # noqa: BLE001 — any broker failure: the job must not sit queued with no task
            _finish(job.pk, IndexJob.Status.FAILED, f"Could not queue the download (broker unavailable: {exc}).")

    transaction.on_commit(send)
    return job, True


def model_fetch_state(*, spec: str, start: bool = False) -> ModelFetchState | None:
    """albums.hooks.model_fetch: the latest fetch of `spec`, started first when asked unless one is
    under way or the last failed."""
    job = last_fetch(spec)
    if start and (job is None or (not job.is_active and job.status != IndexJob.Status.FAILED)):
        job, _ = model_fetch_start(spec=spec)
    return fetch_state(job) if job is not None else None


def fetch_state(job: IndexJob) -> ModelFetchState:
    return ModelFetchState(spec=job.model_id, status=job.status, done=job.done, total=job.total, message=job.message)


def model_fetch_run(*, job_id: int) -> dict:
    claimed = IndexJob.objects.filter(pk=job_id, kind=IndexJob.Kind.FETCH, status=IndexJob.Status.QUEUED).update(
        status=IndexJob.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now())
    if not claimed:
        return {"skipped": "not queued"}
    spec = IndexJob.objects.values_list("model_id", flat=True).get(pk=job_id)
    # Whatever goes wrong ends the job with its reason: one left running would go stale and be
    # replaced by the recovery sweep, failing the same way every 15 minutes.
    try:
        return _fetch(job_id, EncoderSpec.parse(spec))
    except EncoderError as error:
        logger.warning("model fetch %s (%s): %s", job_id, spec, error.message)
        _finish(job_id, IndexJob.Status.FAILED, error.message)
        return {"failed": error.code}
    except Exception as error:  # the hub client raises many kinds: each is a download that did not happen
        logger.warning("model fetch %s (%s) failed", job_id, spec, exc_info=True)
        _finish(job_id, IndexJob.Status.FAILED, f"Downloading {spec} failed: {type(error).__name__}: {error}")
        return {"failed": type(error).__name__}


def _fetch(job_id: int, spec: EncoderSpec) -> dict:
    found = find_weights(spec)
    if found is None:
        hub_probe(spec)  # before the libraries' caches are looked in: that imports torch
        found = find_weights(spec, import_libraries=True)
    if found is not None:
        _finish(job_id, IndexJob.Status.SUCCEEDED, f"{spec}: already present at {found.path}.")
        return {"present": str(found.path)}
    IndexJob.objects.filter(pk=job_id).update(message=f"Downloading {spec}.")
    last_report = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last_report[0] < PROGRESS_SECONDS and done < total:
            return
        last_report[0] = now
        IndexJob.objects.filter(pk=job_id).update(done=min(done, total), total=total, heartbeat_at=timezone.now())

    fetched = fetch_with_progress(spec, progress=progress)
    size = fetched.path.stat().st_size
    _finish(job_id, IndexJob.Status.SUCCEEDED, f"{spec}: {size / 1e6:.1f} MB downloaded to {fetched.path}.")
    return {"path": str(fetched.path), "bytes": size}


def model_fetches_resume() -> list[int]:
    """For the recovery sweep: replace downloads whose worker died (their row went stale). Ids started."""
    started = []
    for job in IndexJob.objects.filter(kind=IndexJob.Kind.FETCH, status__in=IndexJob.ACTIVE_STATUSES):
        if job.is_stale:
            new, created = model_fetch_start(spec=job.model_id)
            if created:
                started.append(new.pk)
    return started


def _finish(job_id: int, status: str, message: str) -> None:
    IndexJob.objects.filter(pk=job_id, status__in=IndexJob.ACTIVE_STATUSES).update(
        status=status, message=message[:4000], finished_at=timezone.now())
