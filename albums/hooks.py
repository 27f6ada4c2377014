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
- `image_labels` / `images_labeled`: the labels the layer above gave an album's images (search.rag's
  support sets), for the images page and API, and the images kept by a `LabelFilter`; from the one
  `ImageLabels` provider search.rag registers. Without it an image has no labels and a label filter
  is refused. `LabelState` is their review states' vocabulary, which the layers that show or
  filter labels share with the one that writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.db.models import Count, QuerySet, TextChoices
from django.dispatch import Signal

from albums.models import Album, Image
from config.errors import ApplicationError
from config.params import MAX_ID
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


class LabelState(TextChoices):
    """A label's review state: `predicted` until an editor accepts it, corrects its class or rejects it."""

    PREDICTED = "predicted", "Predicted"
    ACCEPTED = "accepted", "Accepted"
    CORRECTED = "corrected", "Corrected"
    REJECTED = "rejected", "Rejected"


@dataclass(frozen=True)
class LabelFilter:
    """Keep the images with a label of one set (None: any of the album's sets), of one class, in one
    state, with a margin below this (each blank: any)."""

    support_set_id: int | None = None
    label: str = ""
    state: str = ""
    margin_below: float | None = None

    def __bool__(self) -> bool:
        return bool(self.support_set_id or self.label or self.state or self.margin_below is not None)

    @classmethod
    def from_params(cls, params, *, strict: bool = True) -> LabelFilter:
        """From a query string: `support_set`, `label`, `label_state`, `margin_below`. `strict` (the
        API): a malformed number is a 400; else (the page) it is ignored, as the page does with junk."""
        def number(name: str, convert, low: float, high: float):
            raw = (params.get(name) or "").strip()
            if not raw:
                return None
            try:
                value = convert(raw)
                if not low <= value <= high:
                    raise ValueError
                return value
            except ValueError:
                if strict:
                    wanted = "an id (a positive integer)" if convert is int else f"a number from {low:g} to {high:g}"
                    raise ApplicationError(f"{name} must be {wanted}.", code="invalid_filter",
                                           extra={"field": name}) from None
                return None

        def text(name: str) -> str:
            value = (params.get(name) or "").strip()
            if "\x00" in value:  # PostgreSQL text cannot hold it; no class or state does
                if strict:
                    raise ApplicationError(f"{name} holds a NUL character.", code="invalid_filter", extra={"field": name})
                return ""
            return value[:100]

        return cls(support_set_id=number("support_set", int, 1, MAX_ID), label=text("label"), state=text("label_state"),
                   margin_below=number("margin_below", float, 0, 1))


class ImageLabels:
    """What the labeling layer answers; albums only passes the dicts on:
    `{"support_set": id, "support_set_name": "…", "label": "coat", "state": "predicted", "margin": 0.42}`."""

    def labels(self, *, album: Album, image_ids: list[int]) -> dict[int, list[dict]]:  # one query
        raise NotImplementedError

    def restrict(self, *, album: Album, images: QuerySet[Image], wanted: LabelFilter) -> QuerySet[Image]:
        raise NotImplementedError

    def label_sets(self, *, album: Album) -> list[dict]:  # [{"id", "name", "classes": [label, ...]}]
        raise NotImplementedError


_image_labels: ImageLabels | None = None


def provide_image_labels(provider: ImageLabels) -> None:
    global _image_labels
    _image_labels = provider


def image_labels(*, album: Album, image_ids: list[int]) -> dict[int, list[dict]]:
    """Image id → its labels (images without any are left out)."""
    if _image_labels is None or not image_ids:
        return {}
    return _image_labels.labels(album=album, image_ids=image_ids)


def label_sets(*, album: Album) -> list[dict]:
    """The album's label sources and their classes, for a filter control: `{"id", "name", "classes"}`."""
    return _image_labels.label_sets(album=album) if _image_labels is not None else []


def images_labeled(*, album: Album, images: QuerySet[Image], wanted: LabelFilter) -> QuerySet[Image]:
    """`images` narrowed to those `wanted` keeps; a filter naming another album's set (or one that
    does not exist) is the provider's not-found."""
    if not wanted:
        return images
    if _image_labels is None:
        raise ApplicationError("Labels are not available on this server.", code="invalid_filter")
    return _image_labels.restrict(album=album, images=images, wanted=wanted)


def announce(signal: Signal, **kwargs) -> None:
    """Every receiver runs, whatever another raised (a broker outage stops one, not the others), and
    each failure is logged with its traceback."""
    for receiver, outcome in signal.send_robust(sender=None, **kwargs):
        if isinstance(outcome, Exception):
            logger.error("%s: %s failed", getattr(receiver, "__qualname__", receiver), type(outcome).__name__,
                         exc_info=(type(outcome), outcome, outcome.__traceback__))
