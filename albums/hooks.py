"""How albums, the lowest domain app, tells the apps above it what happened without importing them
(docs/architecture.md, "Layers"). Higher apps connect in their AppConfig.ready.

- `images_uploaded(album, user, image_ids)`: sent after the upload's transaction commits. The
  indexing layer queues metadata and an index job.
- `album_vectors_changed(album, user)`: sent inside the transaction that bumped the album's
  generation (encoder, pooling or storage changed). The indexing layer cancels the album's job and
  starts a rebuild in that same transaction.
- `model_fetch(spec, start)`: the model fetch job for an encoder's weights (a `ModelFetchState`),
  started when asked and none is under way or failed, from the provider the indexing layer
  registers; without it, None. New albums ask it before taking a default encoder that is not here yet.
- `index_summary(album)`: image counts by status and the model search uses, plus what albums shows
  of its indexing but does not own (the job under way, a failed rebuild not yet dismissed: an
  `IndexState`), from the one provider the indexing layer registers; without it, both are None.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Count
from django.dispatch import Signal

from albums.models import Image
from encoders.model_ids import parse_model_id

logger = logging.getLogger(__name__)

images_uploaded = Signal()
album_vectors_changed = Signal()


@dataclass(frozen=True)
class IndexState:
    """What the indexing layer tells about an album: its job under way, as the jobs API serializes it
    (JSON the provider made; albums passes it on), whether that job is a rebuild, and the last rebuild
    when it failed and nobody dismissed it yet."""

    active_job: dict | None = None
    rebuilding: bool = False
    last_failed_rebuild: dict | None = None  # {job_id, encoder_spec, message, finished_at}
    model_fetch: dict | None = None  # the album encoder's weights on their way: {status, done, total, percent}


@dataclass(frozen=True)
class ModelFetchState:
    """A model fetch job as albums sees it: its status and bytes, never whose request started it."""

    spec: str
    status: str  # an IndexJob status: queued, running, succeeded, failed, cancelled
    done: int  # bytes
    total: int  # bytes; 0 until the hub has said how many
    message: str = ""

    @property
    def arriving(self) -> bool:
        return self.status in ("queued", "running")

    @property
    def percent(self) -> int:
        return int(100 * self.done / self.total) if self.total else 0


_model_fetch: Callable[..., ModelFetchState | None] | None = None


def provide_model_fetch(provider: Callable[..., ModelFetchState | None]) -> None:
    global _model_fetch
    _model_fetch = provider


def model_fetch_provided() -> bool:
    return _model_fetch is not None


def model_fetch(*, spec: str, start: bool = False) -> ModelFetchState | None:
    """The latest fetch of `spec`'s weights, or None; with `start`, one is started unless one is
    under way or the last failed (a machine with no network does not try again at every new album:
    the launcher tries once per start, `manage.py fetch_default_encoder` on demand)."""
    return _model_fetch(spec=spec, start=start) if _model_fetch is not None else None


@dataclass(frozen=True)
class IndexSummary:
    """An album's indexing at a glance, for its page and API (IndexSummarySerializer)."""

    search_model_id: str | None
    search_model: str | None  # the model_id described for people
    images: dict[str, int]  # every image status → how many images have it
    active_job: dict | None
    rebuilding: bool
    last_failed_rebuild: dict | None
    model_fetch: dict | None = None


_index_summary: Callable[..., IndexState] | None = None


def provide_index_summary(provider: Callable[..., IndexState]) -> None:
    global _index_summary
    _index_summary = provider


def index_summary(*, album) -> IndexSummary:
    """Image counts by status, the model search uses, the job under way if any, and the album's last
    rebuild when it failed and nobody dismissed it yet."""
    counts = dict(Image.objects.filter(album=album).values_list("status").annotate(n=Count("pk")).order_by())
    state = _index_summary(album=album) if _index_summary is not None else IndexState()
    return IndexSummary(
        search_model_id=album.active_model_id or None,
        search_model=parse_model_id(album.active_model_id).describe() if album.active_model_id else None,
        images={status: counts.get(status, 0) for status in Image.Status.values},
        active_job=state.active_job,
        rebuilding=state.rebuilding,
        last_failed_rebuild=state.last_failed_rebuild,
        model_fetch=state.model_fetch,
    )


def announce(signal: Signal, **kwargs) -> None:
    """Every receiver runs, whatever another raised (a broker outage stops one, not the others), and
    each failure is logged with its traceback."""
    for receiver, outcome in signal.send_robust(sender=None, **kwargs):
        if isinstance(outcome, Exception):
            logger.error("%s: %s failed", getattr(receiver, "__qualname__", receiver), type(outcome).__name__,
                         exc_info=(type(outcome), outcome, outcome.__traceback__))
