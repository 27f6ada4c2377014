"""What labeling answers to albums (albums/hooks.py): the labels on a page of images and the images
a label filter keeps, so the images page and API show and filter labels without albums importing
this layer."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet

from albums import hooks
from albums.models import Album, Image
from search.rag import selectors


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


def connect() -> None:
    hooks.provide_image_labels(RagImageLabels())
