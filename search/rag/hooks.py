"""What labeling answers to the layers below it, which do not import it: to albums (albums/hooks.py)
the labels on a page of images and the images a label filter keeps; to search (search/hooks.py) the
labels of its results and restrictions inside its statements, and a set's labels for the map."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet
from psycopg import sql

from albums import hooks
from albums.models import Album, Image
from search import hooks as search_hooks
from search.rag import selectors
from search.rag.errors import SupportSetNotFoundError
from search.rag.models import Label, SupportSet


class RagImageLabels(hooks.ImageLabels):
    def labels(self, *, album: Album, image_ids: list[int]) -> dict[int, list[dict]]:
        return selectors.image_labels(album_id=album.pk, image_ids=image_ids)

    def restrict(self, *, album: Album, images: QuerySet[Image], wanted: hooks.LabelFilter) -> QuerySet[Image]:
        labels = selectors.labels_matching(album_id=album.pk, support_set_id=wanted.support_set_id, label=wanted.label,
                                           states=(wanted.state,) if wanted.state else (),
                                           margin_below=wanted.margin_below)
        # EXISTS, not a join: an image with labels in two sets stays one row of the page.
        return images.filter(Exists(labels.filter(image_id=OuterRef("pk"))))

    def label_sets(self, *, album: Album) -> list[dict]:
        return selectors.label_sets(album_id=album.pk)


class RagSearchLabels(search_hooks.SearchLabels):
    def labels_json(self, *, image_id: sql.Composable, album_id: sql.Composable) -> sql.Composable:
        # One index probe per candidate row on the (image, set) unique index; read in the candidate
        # statement itself, showing labels on results costs no statement of its own (a separate query
        # per search cost ~0.5 ms, also in albums with no sets).
        return sql.SQL(
            "(SELECT json_agg(json_build_object('support_set', l.support_set_id, 'support_set_name', s.name, "
            "'label', l.label, 'state', l.state, 'margin', l.margin) ORDER BY l.support_set_id) "
            "FROM {label} l JOIN {set} s ON s.id = l.support_set_id WHERE l.image_id = {image_id} "
            "AND s.album_id = {album_id})"
        ).format(label=sql.Identifier(Label._meta.db_table), set=sql.Identifier(SupportSet._meta.db_table),
                 image_id=image_id, album_id=album_id)

    def restricted_to(self, only: search_hooks.LabelRestriction, *, column: sql.Composable) -> sql.Composable:
        # Inside the kNN's own WHERE, literals included: the index scan (pgvector's iterative scan)
        # keeps looking until it has k labeled rows, and a selective label lets the planner scan just
        # the labeled rows exactly; filtering the k nearest afterwards would starve the result.
        return sql.SQL(
            " AND {column} IN (SELECT l.image_id FROM {table} l WHERE l.support_set_id = {set} AND l.label = {label} "
            "AND l.state IN ({states}))"
        ).format(column=column, table=sql.Identifier(Label._meta.db_table), set=sql.Literal(int(only.support_set_id)),
                 # Hex, not a quoted literal: a class may hold a "%", which the %s-parameter statements
                 # would read as a placeholder.
                 label=sql.SQL("convert_from(decode({hex}, 'hex'), 'UTF8')").format(hex=sql.Literal(only.label.encode().hex())),
                 states=sql.SQL(", ").join(sql.Literal(state) for state in only.states if state.isalpha()))

    def restriction(self, *, album_id: int, support_set_id: int, label: str,
                    states: tuple[str, ...]) -> search_hooks.LabelRestriction:
        return selectors.label_restriction(album_id=album_id, support_set_id=support_set_id, label=label, states=states)

    def point_labels(self, *, user, album_id: int, support_set_id: int) -> search_hooks.PointLabels:
        support_set = selectors.support_set_get_for_user(user=user, support_set_id=support_set_id)
        if support_set.album_id != album_id:
            raise SupportSetNotFoundError()
        return search_hooks.PointLabels(
            support_set_id=support_set.pk, version=selectors.labels_version(support_set=support_set),
            columns=lambda image_ids: selectors.point_label_columns(support_set=support_set, image_ids=image_ids))


def connect() -> None:
    hooks.provide_image_labels(RagImageLabels())
    search_hooks.provide_search_labels(RagSearchLabels())
