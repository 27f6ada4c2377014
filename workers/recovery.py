"""Work a broker outage left undone, picked up once the broker is back, with no request needed.

While Redis is down, uploads are stored but their index job cannot be queued (it fails at once
with BROKER_UNAVAILABLE in its message), a dispatch cut off half-way ends its job the same way, an
encoder change's rebuild can be refused the same way, and metadata tasks are lost; a job whose
messages Redis lost in a crash stays active without a sign of life. workers/heartbeat.py asks for
one sweep whenever a worker's consumer (re)connects and every LOUPE_RECOVERY_SWEEP_SECONDS; the
sweep, on the `default` queue:

- restarts, with the same kind, an album's last indexing job when it failed for the broker (an
  INDEX or a REBUILD: a refused rebuild leaves every image `indexed` under the old model);
- replaces an active job that went stale (index_job_start does that);
- starts an index job for an album with images waiting and no job, unless its last job failed for
  another reason (missing weights, say: a new job would only fail again) or was cancelled;
- re-queues metadata for images that still have no thumbnail a while after upload and that no
  queued or running metadata task holds (workers/services.py marks them in the cache);
- replaces a model download whose worker died (workers/fetching.py);
- drops album HNSW graphs whose album is gone or searches another model now.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

import redis
from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from albums.models import Album, Image
from workers.fetching import model_fetches_resume
from workers.indexing import BROKER_UNAVAILABLE, INDEXING_KINDS, active_index_jobs, index_job_start, pending_scope
from workers.models import IndexJob
from workers.services import image_metadata_enqueue, images_without_metadata_task
from workers.vector_store import album_graphs_prune

logger = logging.getLogger(__name__)

SWEEP_LOCK_KEY = "loupe:recovery-sweep"
# Held from the request until the sweep ends (it releases its own token); the expiry only matters
# when the sweep task is lost. A sweep queued behind a long backlog may let a second one in: harmless.
SWEEP_LOCK_SECONDS = 300
# Their metadata task was queued with the upload; only after this long is a missing thumbnail lost work.
METADATA_GRACE = timedelta(minutes=5)

# Delete the lock only if it still holds this sweep's token (another sweep may own it by now).
_RELEASE_SCRIPT = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


def _last_indexing_job(album: Album) -> IndexJob | None:
    return IndexJob.objects.filter(album=album, kind__in=INDEXING_KINDS).order_by("-created_at", "-pk").first()


def _refused_by_broker(job: IndexJob | None) -> bool:
    return job is not None and job.status == IndexJob.Status.FAILED and BROKER_UNAVAILABLE in job.message


def _resume_kind(album: Album) -> str | None:
    """The kind of job to start for the album, or None to leave it alone."""
    active = active_index_jobs(album).first()
    if active is not None:
        return active.kind if active.is_stale else None
    last = _last_indexing_job(album)
    if _refused_by_broker(last):
        return last.kind
    if last is not None and last.status != IndexJob.Status.SUCCEEDED:
        return None  # failed for another reason, or cancelled
    has_pending = pending_scope(album, album.active_model_id or "").exists()
    return IndexJob.Kind.INDEX if has_pending else None


def resume_pending_work() -> dict[str, list[int]]:
    jobs = IndexJob.objects.filter(album=OuterRef("pk"), kind__in=INDEXING_KINDS)
    waiting = Image.objects.filter(album=OuterRef("pk"), status=Image.Status.PENDING)
    candidates = Album.objects.filter(
        Exists(waiting)
        | Exists(jobs.filter(status__in=IndexJob.ACTIVE_STATUSES))
        | Exists(jobs.filter(status=IndexJob.Status.FAILED, message__contains=BROKER_UNAVAILABLE))
    ).order_by("pk")
    resumed = []
    for album in candidates:
        kind = _resume_kind(album)
        if kind is None:
            continue
        _, created = index_job_start(album=album, kind=kind, countdown=0)
        if created:
            resumed.append(album.pk)
    cutoff = timezone.now() - METADATA_GRACE
    no_thumbnail = images_without_metadata_task(
        Image.objects.filter(thumbnail="", created_at__lt=cutoff).filter(~Q(status=Image.Status.FAILED))
        .order_by("pk").values_list("pk", flat=True)
    )
    if no_thumbnail:
        image_metadata_enqueue(image_ids=no_thumbnail)
    dropped = album_graphs_prune()
    fetches = model_fetches_resume()
    if resumed or no_thumbnail or dropped or fetches:
        logger.info("recovery sweep: index jobs started for albums %s; metadata re-queued for %d image(s); "
                    "album graphs dropped: %s; model downloads restarted: %s", resumed, len(no_thumbnail), dropped,
                    fetches)
    return {"albums": resumed, "metadata": no_thumbnail, "album_graphs_dropped": dropped, "model_fetches": fetches}


def request_sweep(client, app, hostname: str) -> bool:
    """Send the sweep task unless one is already queued or running. True if sent. Workers that
    reconnect together send one; a reconnection after that sweep ended sends another."""
    token = f"{hostname}/{uuid.uuid4()}"
    if not client.set(SWEEP_LOCK_KEY, token, nx=True, ex=SWEEP_LOCK_SECONDS):
        return False
    try:
        app.send_task("workers.tasks.resume_pending_work", args=[token])
    except Exception:
        release_sweep_lock(token, client=client)  # not sent: the next reconnection must be able to ask again
        raise
    return True


def release_sweep_lock(token: str, *, client=None) -> None:
    own = client is None
    client = client or redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.eval(_RELEASE_SCRIPT, 1, SWEEP_LOCK_KEY, token)
    except redis.RedisError:
        pass  # it expires by itself
    finally:
        if own:
            client.close()
