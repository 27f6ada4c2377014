"""Work a broker outage left undone, picked up once the broker is back, with no request needed.

While Redis is down, uploads are stored but their index job cannot be queued (it fails at once
with BROKER_UNAVAILABLE in its message), a dispatch cut off half-way ends its job the same way, and
metadata tasks are lost. When a worker's consumer (re)connects, workers/heartbeat.py asks for one
sweep (one at a time across workers); the sweep, on the `default` queue, starts an
index job for every album that has images waiting for vectors and no job running, unless the
album's last job failed for another reason (missing weights, say: a new job would only fail
again) or was cancelled, and re-queues metadata for images that have no thumbnail yet.
"""

from __future__ import annotations

import logging

from django.db.models import Exists, OuterRef

from albums.models import Album, Image
from workers.models import IndexJob

logger = logging.getLogger(__name__)

BROKER_UNAVAILABLE = "broker unavailable"
SWEEP_LOCK_KEY = "loupe:recovery-sweep"
SWEEP_LOCK_SECONDS = 60  # only if the sweep task is lost: it releases the lock when it ends


def _last_job_allows_resume(album: Album) -> bool:
    from workers.indexing import INDEXING_KINDS

    last = IndexJob.objects.filter(album=album, kind__in=INDEXING_KINDS).order_by("-created_at", "-pk").first()
    if last is None or last.status == IndexJob.Status.SUCCEEDED:
        return True
    return last.status == IndexJob.Status.FAILED and BROKER_UNAVAILABLE in last.message


def resume_pending_work() -> dict[str, list[int]]:
    from workers.indexing import INDEXING_KINDS, _pending_scope, index_job_start
    from workers.services import image_metadata_enqueue

    active = IndexJob.objects.filter(album=OuterRef("pk"), kind__in=INDEXING_KINDS, status__in=IndexJob.ACTIVE_STATUSES)
    waiting = Image.objects.filter(album=OuterRef("pk")).exclude(status=Image.Status.FAILED).exclude(status=Image.Status.INDEXED)
    resumed = []
    for album in Album.objects.filter(Exists(waiting)).exclude(Exists(active)).order_by("pk"):
        if not _pending_scope(album, album.active_model_id or "").exists() or not _last_job_allows_resume(album):
            continue
        job, created = index_job_start(album=album, countdown=0)
        if created:
            resumed.append(album.pk)
    no_thumbnail = list(Image.objects.filter(thumbnail="").exclude(status=Image.Status.FAILED).order_by("pk")
                        .values_list("pk", flat=True))
    if no_thumbnail:
        image_metadata_enqueue(image_ids=no_thumbnail)
    if resumed or no_thumbnail:
        logger.info("recovery sweep: index jobs started for albums %s; metadata re-queued for %d image(s)",
                    resumed, len(no_thumbnail))
    return {"albums": resumed, "metadata": no_thumbnail}


def request_sweep(client, app, hostname: str) -> bool:
    """Send the sweep task unless one is already queued or running. True if sent. Workers that
    reconnect together send one; a reconnection after that sweep ended sends another."""
    if not client.set(SWEEP_LOCK_KEY, hostname, nx=True, ex=SWEEP_LOCK_SECONDS):
        return False
    app.send_task("workers.tasks.resume_pending_work")
    return True


def release_sweep_lock() -> None:
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.delete(SWEEP_LOCK_KEY)
    except redis.RedisError:
        pass  # it expires by itself
    finally:
        client.close()
