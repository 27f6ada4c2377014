"""What the indexing layer does when albums announce something (albums/hooks.py), connected in
WorkersConfig.ready."""

from __future__ import annotations

from albums import hooks
from workers import fetching, indexing, services
from workers.api.views import FailedRebuildSerializer, JobSerializer
from workers.models import IndexJob
from workers.selectors import rebuild_failure_get


def queue_metadata(*, album, user, image_ids, **kwargs) -> None:
    services.image_metadata_enqueue(image_ids=image_ids)


def queue_indexing(*, album, user, image_ids, **kwargs) -> None:
    indexing.index_job_start(album=album, user=user)  # debounced: a burst of uploads joins one job


def rebuild(*, album, user, **kwargs) -> None:
    indexing.album_encoder_changed(album=album, user=user)


def album_index_state(*, album) -> hooks.IndexState:
    """The indexing job under way and a failed rebuild not yet dismissed (serialized) for
    albums.hooks.index_summary."""
    job = indexing.active_index_jobs(album).first()
    failed = rebuild_failure_get(album=album)
    # Only the album's own encoder: members learn how far its weights are, not who asked for them.
    download = fetching.active_fetch(album.encoder_spec)
    state = fetching.fetch_state(download) if download else None
    return hooks.IndexState(
        active_job=JobSerializer(job).data if job else None,
        rebuilding=bool(job and job.kind == IndexJob.Kind.REBUILD),
        last_failed_rebuild=FailedRebuildSerializer(failed, context={"album": album}).data if failed else None,
        model_fetch={"status": state.status, "done": state.done, "total": state.total, "percent": state.percent}
        if state else None,
    )


def connect() -> None:
    hooks.images_uploaded.connect(queue_metadata, dispatch_uid="workers.queue_metadata")
    hooks.images_uploaded.connect(queue_indexing, dispatch_uid="workers.queue_indexing")
    hooks.album_vectors_changed.connect(rebuild, dispatch_uid="workers.rebuild")
    hooks.provide_index_summary(album_index_state)
    hooks.provide_model_fetch(fetching.model_fetch_state)
