"""Reads. Each getter answers "not found" alike for objects that are missing and for objects in
albums the user is not a member of; a member below the role gets RoleRequiredError."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Max, Prefetch, Q, QuerySet

from albums.roles import Role
from albums.selectors import get_for_user, member_rows
from config.errors import ApplicationError
from search.rag.errors import LabelNotFoundError, SupportClassNotFoundError, SupportImageNotFoundError, SupportSetNotFoundError
from search.rag.models import Label, SupportClass, SupportImage, SupportSet
from search.hooks import LabelRestriction


def support_set_list_for_user(*, user: AbstractBaseUser, album_id: int | None = None) -> QuerySet[SupportSet]:
    sets = member_rows(SupportSet.objects.all(), user=user, album_path="album")
    if album_id is not None:
        sets = sets.filter(album_id=album_id)
    return sets.annotate(
        class_count=Count("classes", distinct=True),
        # Counted on the denormalized set key: one count per image, not one per class join row.
        image_count=Count("classes__images", distinct=True),
    ).select_related("album")


def support_set_get_for_user(*, user: AbstractBaseUser, support_set_id: int, min_role: str = Role.VIEWER) -> SupportSet:
    return get_for_user(SupportSet.objects.select_related("album"), user=user, pk=support_set_id, album_path="album",
                        not_found=SupportSetNotFoundError, min_role=min_role)


def support_class_get_for_user(*, user: AbstractBaseUser, class_id: int, min_role: str = Role.VIEWER) -> SupportClass:
    return get_for_user(SupportClass.objects.select_related("support_set__album"), user=user, pk=class_id,
                        album_path="support_set__album", not_found=SupportClassNotFoundError, min_role=min_role)


def support_image_get_for_user(*, user: AbstractBaseUser, support_image_id: int, min_role: str = Role.VIEWER) -> SupportImage:
    return get_for_user(SupportImage.objects.select_related("support_set__album", "support_class", "image"), user=user,
                        pk=support_image_id, album_path="support_set__album", not_found=SupportImageNotFoundError,
                        min_role=min_role)


def support_classes_with_images(*, support_set: SupportSet) -> list[SupportClass]:
    """Classes in display order, each with `support_images` (and their album images) prefetched."""
    images = SupportImage.objects.select_related("image").order_by("created_at", "id")
    return list(
        SupportClass.objects.filter(support_set=support_set)
        .prefetch_related(Prefetch("images", queryset=images, to_attr="support_images"))
        .order_by("position", "id")
    )


def support_set_status(*, support_set: SupportSet) -> dict:
    counts = dict(
        SupportImage.objects.filter(support_set=support_set).values_list("status").annotate(n=Count("pk")).order_by()
    )
    return {status: counts.get(status, 0) for status in SupportImage.Status.values}


def classes_without_ready_images(*, support_set: SupportSet) -> list[str]:
    return list(
        SupportClass.objects.filter(support_set=support_set)
        .annotate(ready=Count("images", filter=Q(images__status=SupportImage.Status.READY)))
        .filter(ready=0)
        .order_by("position", "id")
        .values_list("label", flat=True)
    )


def label_get_for_user(*, user: AbstractBaseUser, label_id: int, min_role: str = Role.VIEWER) -> Label:
    return get_for_user(Label.objects.select_related("support_set__album", "image"), user=user, pk=label_id,
                        album_path="support_set__album", not_found=LabelNotFoundError, min_role=min_role)


def image_labels(*, album_id: int, image_ids: list[int]) -> dict[int, list[dict]]:
    """Image id → the labels of the album's sets on it, in one query (a page of the images list or
    of search results). Every member sees them: the sets are the album's."""
    rows = (Label.objects.filter(image_id__in=image_ids, support_set__album_id=album_id)
            .order_by("image_id", "support_set_id")
            .values_list("image_id", "support_set_id", "support_set__name", "label", "state", "margin"))
    labels: dict[int, list[dict]] = {}
    for image_id, set_id, set_name, label, state, margin in rows:
        labels.setdefault(image_id, []).append(
            {"support_set": set_id, "support_set_name": set_name, "label": label, "state": state, "margin": round(margin, 4)})
    return labels


def labels_matching(*, album_id: int, support_set_id: int | None = None, label: str = "", states: tuple[str, ...] = (),
                    margin_below: float | None = None) -> QuerySet[Label]:
    """The album's labels a filter keeps (blank or None: any). A set that is not the album's is
    SupportSetNotFoundError; a state that does not exist, a 400. The caller checked the album's access."""
    bad = [state for state in states if state not in Label.State.values]
    if bad:
        raise ApplicationError(f"Unknown label state {bad[0]!r}; use one of {', '.join(Label.State.values)}.",
                               code="invalid_filter", extra={"field": "label_state"})
    labels = Label.objects.filter(support_set__album_id=album_id)
    if support_set_id is not None:
        if not SupportSet.objects.filter(pk=support_set_id, album_id=album_id).exists():
            raise SupportSetNotFoundError()
        labels = labels.filter(support_set_id=support_set_id)
    if label:
        labels = labels.filter(label=label)
    if states:
        labels = labels.filter(state__in=states)
    if margin_below is not None:
        labels = labels.filter(margin__lt=margin_below)
    return labels


def label_sets(*, album_id: int) -> list[dict]:
    """The album's sets with their classes (display order), for the label filters and pickers."""
    sets: dict[int, dict] = {}
    rows = (SupportClass.objects.filter(support_set__album_id=album_id)
            .order_by("support_set__name", "support_set_id", "position", "id")
            .values_list("support_set_id", "support_set__name", "label"))
    for set_id, name, label in rows:
        sets.setdefault(set_id, {"id": set_id, "name": name, "classes": []})["classes"].append(label)
    return list(sets.values())


def labels_version(*, support_set: SupportSet) -> tuple:
    """(count, last change) of the set's labels: changes whenever a label does (the map's ETag)."""
    counted = Label.objects.filter(support_set=support_set).aggregate(n=Count("pk"), last=Max("updated_at"))
    return counted["n"], counted["last"] and counted["last"].isoformat()


def point_label_columns(*, support_set: SupportSet, image_ids: list[int]) -> dict:
    """Per image, in that order, the index of its label in `names` (-1: none; a rejected label counts
    as none) and the label's review state (null: no label). `names`: the set's classes in their order,
    then labels of classes deleted since."""
    names = list(support_set.classes.values_list("label", flat=True))
    rows = {image_id: (label, state) for image_id, label, state in
            Label.objects.filter(support_set=support_set).values_list("image_id", "label", "state")}
    for label, state in rows.values():
        if state != Label.State.REJECTED and label not in names:
            names.append(label)
    position = {name: k for k, name in enumerate(names)}
    index, states = [], []
    for image_id in image_ids:
        label, state = rows.get(image_id, (None, None))
        index.append(-1 if label is None or state == Label.State.REJECTED else position[label])
        states.append(state)
    return {"support_set": support_set.pk, "names": names, "index": index, "state": states}


DEFAULT_RESTRICTION_STATES = (Label.State.PREDICTED, Label.State.ACCEPTED, Label.State.CORRECTED)


def label_restriction(*, album_id: int, support_set_id: int, label: str,
                      states: tuple[str, ...] | None = None) -> LabelRestriction:
    """A search's "only images labeled `label` by this set", checked: a set that is not the album's
    is not found (as for every id), a class the set has neither now nor on any label is a 400.
    States default to every one but rejected (a rejected label says the image is not of the class)."""
    states = tuple(dict.fromkeys(states)) if states else DEFAULT_RESTRICTION_STATES
    bad = [state for state in states if state not in Label.State.values]
    if bad:
        raise ApplicationError(f"Unknown label state {bad[0]!r}; use one of {', '.join(Label.State.values)}.",
                               code="invalid_label", extra={"field": "label.states"})
    if not SupportSet.objects.filter(pk=support_set_id, album_id=album_id).exists():
        raise SupportSetNotFoundError()
    known = (SupportClass.objects.filter(support_set_id=support_set_id, label=label).exists()
             or Label.objects.filter(support_set_id=support_set_id, label=label).exists())
    if not known:
        raise ApplicationError(f"The support set has no class {label!r}.", code="unknown_class",
                               extra={"field": "label.label"})
    return LabelRestriction(support_set_id=support_set_id, label=label, states=tuple(str(s) for s in states))
