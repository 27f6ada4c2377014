"""What search asks of the labeling layer above it (search.rag) without importing it
(docs/architecture.md, "Layers"): search shows the labels support sets gave its results, restricts a
search to one class, and colours the map by a set's labels, but the labels are that layer's rows.
search.rag registers the one `SearchLabels` provider in its AppConfig.ready; without it results
carry no labels and a label restriction or map colouring is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from psycopg import sql

from config.errors import ApplicationError


@dataclass(frozen=True)
class LabelRestriction:
    """Only images a support set labeled with this class, in one of these states: checked against
    the album by the provider (`label_restriction`) before a statement is built from it."""

    support_set_id: int
    label: str
    states: tuple[str, ...]


@dataclass(frozen=True)
class PointLabels:
    """A support set's labels for the map: `version` changes whenever a label does (it is part of the
    map's ETag); `columns(image_ids)` reads them, one entry per point in that order."""

    support_set_id: int
    version: tuple
    columns: Callable[[list[int]], dict]


class SearchLabels:
    """What the labeling layer answers. SQL pieces are composed into search's own statements, so that
    labels cost no statement of their own."""

    def labels_json(self, *, image_id: sql.Composable, album_id: sql.Composable) -> sql.Composable:
        """An expression: the image's labels from the album's sets as one JSON array, NULL when none."""
        raise NotImplementedError

    def restricted_to(self, only: LabelRestriction, *, column: sql.Composable) -> sql.Composable:
        """`AND column IN (the images `only` keeps)`."""
        raise NotImplementedError

    def restriction(self, *, album_id: int, support_set_id: int, label: str,
                    states: tuple[str, ...]) -> LabelRestriction:
        raise NotImplementedError

    def point_labels(self, *, user, album_id: int, support_set_id: int) -> PointLabels:
        raise NotImplementedError


_search_labels: SearchLabels | None = None


def provide_search_labels(provider: SearchLabels | None) -> None:
    global _search_labels
    _search_labels = provider


def _unavailable() -> ApplicationError:
    return ApplicationError("Labels are not available on this server.", code="invalid_label")


def labels_json(*, image_id: str = "i.id", album_id: str = "i.album_id") -> sql.Composable:
    """The labels column of a candidate statement, given the SQL names of its image and album ids."""
    if _search_labels is None:
        return sql.SQL("NULL::json")
    return _search_labels.labels_json(image_id=sql.SQL(image_id), album_id=sql.SQL(album_id))


def restricted_to(only: LabelRestriction | None, column: str) -> sql.Composable:
    """Nothing for no restriction; else the provider's condition on `column` (SQL)."""
    if only is None:
        return sql.SQL("")
    if _search_labels is None:
        raise _unavailable()
    return _search_labels.restricted_to(only, column=sql.SQL(column))


def label_restriction(*, album_id: int, support_set_id: int, label: str,
                      states: tuple[str, ...] = ()) -> LabelRestriction:
    """A search's "only images labeled `label` by this set", checked against the album: another
    album's set is the provider's not-found, an unknown class or state a 400."""
    if _search_labels is None:
        raise _unavailable()
    return _search_labels.restriction(album_id=album_id, support_set_id=support_set_id, label=label, states=states)


def point_labels(*, user, album_id: int, support_set_id: int) -> PointLabels:
    """A set of this album that `user` may see, as the map colours by it; else the provider's not-found."""
    if _search_labels is None:
        raise _unavailable()
    return _search_labels.point_labels(user=user, album_id=album_id, support_set_id=support_set_id)
