"""Labeling an album with a support set: a job classifies every image in scope and writes one
`Label` row per image; editors then review the labels (accept, correct, reject), add reviewed
images to the set as new examples, and export them.

The job is an IndexJob of kind `label` (workers/models.py): its progress, cancel (POST
/api/v1/jobs/{id}/cancel/) and the jobs list are those of every job. It runs on the `encode` queue
in batches of LOUPE_RAG_LABEL_BATCH images:

- the query patches of a batch are encoded together (search/rag/patches.images_patches: one forward
  pass for the token grid);
- every query patch of the batch is matched with the set's support matrix in one product, on the
  per-process cached copy (search/rag/retrieval.support_matrix);
- a vision-language model is asked only for images whose retrieval margin (top score minus the
  second) is below the editor's `margin_threshold`, and only when one is configured (LOUPE_VLM);
  none is the default.

Resume: images that already have a label for the set are skipped, unless `relabel` is asked, which
re-predicts the `predicted` ones (reviewed labels are never overwritten). One task runs for at most
LOUPE_RAG_LABEL_TASK_SECONDS and hands the rest to the next (a cursor on the image id), so a large
album never meets the task time limit. An image that cannot be read or classified is counted in
the job's `failed` and listed with the reason in `result.failures`; the job goes on.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from albums.models import Image
from albums.storage import image_file_open
from config.errors import ApplicationError, ConflictError
from encoders.images import open_rgb
from encoders.registry import get_encoder
from search.rag import scoring
from search.rag.errors import SupportSetIncompleteError
from search.rag.indexing import model_key, stale_support_images, support_patches_compute
from search.rag.models import Label, PatchEmbedding, SupportClass, SupportImage, SupportSet
from search.rag.patches import images_patches
from search.rag.retrieval import support_matrix
from search.rag.selectors import classes_without_ready_images
from workers.models import IndexJob
from workers.selectors import JobNotFoundError

logger = logging.getLogger(__name__)

SCOPE_ALBUM, SCOPE_IMAGES = "album", "images"
MAX_FAILURES_LISTED = 100
MAX_SCOPE_IDS = 100_000


# --- Starting a job ------------------------------------------------------------------------------


def _scope_ids(support_set: SupportSet, image_ids: list[int] | None) -> list[int] | None:
    if image_ids is None:
        return None
    wanted = sorted(set(image_ids))
    if not wanted:
        raise ApplicationError("The scope names no images.", code="empty_scope")
    if len(wanted) > MAX_SCOPE_IDS:
        raise ApplicationError(f"At most {MAX_SCOPE_IDS} images per job.", code="scope_too_large")
    found = set(Image.objects.filter(album_id=support_set.album_id, pk__in=wanted).values_list("pk", flat=True))
    missing = [pk for pk in wanted if pk not in found]
    if missing:
        # The same answer for "no such image" and "an image of an album you cannot see".
        raise ApplicationError("Some images are not in this support set's album.", code="image_not_found",
                               extra={"image_ids": missing[:50]})
    return wanted


def _scope(support_set_id: int, album_id: int, params: dict) -> QuerySet[Image]:
    images = Image.objects.filter(album_id=album_id)
    if params.get("image_ids") is not None:
        images = images.filter(pk__in=params["image_ids"])
    return images


def _todo(job: IndexJob, *, after_id: int = 0) -> QuerySet[Image]:
    """Images of the scope still to label, in id order: no label for the set yet, or (relabel) a
    predicted one this job has not written."""
    params = job.params
    set_id = params["support_set_id"]
    labeled = Label.objects.filter(support_set_id=set_id)
    if params.get("relabel"):
        labeled = labeled.filter(Q(state__in=Label.REVIEWED_STATES) | Q(job_id=job.pk or 0))
    return (_scope(set_id, job.album_id, params).filter(pk__gt=after_id)
            .exclude(pk__in=labeled.values("image_id")).order_by("pk"))


def check_ready(support_set: SupportSet) -> None:
    if not SupportClass.objects.filter(support_set=support_set).exists():
        raise SupportSetIncompleteError("The support set has no classes: add at least one class with example images.")
    if not SupportImage.objects.filter(support_set=support_set).exists():
        raise SupportSetIncompleteError("No class of the support set has example images yet.")


def label_job_start(*, support_set: SupportSet, user, image_ids: list[int] | None = None,
                    margin_threshold: float | None = None, relabel: bool = False) -> tuple[IndexJob, bool]:
    """Queue a job (True), or join the set's queued or running one (False). `image_ids` None: the
    whole album; else a selection or a search result of the set's album."""
    from search.rag.tasks import encode_label_images as task  # cycle: search.rag.tasks imports this module

    if margin_threshold is not None and not 0 <= margin_threshold <= 1:
        raise ApplicationError("margin_threshold must be between 0 and 1.", code="invalid_margin_threshold")
    check_ready(support_set)
    wanted = _scope_ids(support_set, image_ids)
    params = {"support_set_id": support_set.pk, "scope": SCOPE_ALBUM if wanted is None else SCOPE_IMAGES,
              "image_ids": wanted, "margin_threshold": margin_threshold, "relabel": bool(relabel)}
    with transaction.atomic():
        SupportSet.objects.select_for_update().filter(pk=support_set.pk).first()  # one job per set at a time
        running = IndexJob.objects.filter(kind=IndexJob.Kind.LABEL, params__support_set_id=support_set.pk,
                                          status__in=IndexJob.ACTIVE_STATUSES).first()
        if running is not None and not running.is_stale:
            return running, False
        if running is not None:  # its worker died: it would be joined for ever
            IndexJob.objects.filter(pk=running.pk).update(
                status=IndexJob.Status.FAILED, message="No sign of life from its worker; replaced.", finished_at=timezone.now())
        job = IndexJob(album_id=support_set.album_id, kind=IndexJob.Kind.LABEL, model_id=support_set.encoder_spec,
                       created_by=user, params=params)
        job.total = _todo(job).count()
        job.save()
        transaction.on_commit(lambda: task.delay(job.pk))
    return job, True


# --- Running it ----------------------------------------------------------------------------------


class _Cancelled(Exception):
    pass


@dataclass
class _Context:
    support_set: SupportSet
    encoder: object
    key: str
    classes: list[SupportClass]
    temperature: float
    vlm_threshold: float | None  # None: never ask a model


def _context(job: IndexJob) -> _Context:
    support_set = SupportSet.objects.get(pk=job.params["support_set_id"])
    check_ready(support_set)
    encoder = get_encoder(support_set.encoder_spec)
    key = model_key(encoder, support_set)
    stale = stale_support_images(support_set=support_set, key=key)
    if stale:  # examples the encode queue has not reached yet: embed them here, once
        support_patches_compute(support_set_id=support_set.pk, generation=support_set.generation,
                                support_image_ids=stale, encoder=encoder)
    empty = classes_without_ready_images(support_set=support_set)
    if empty:
        raise SupportSetIncompleteError(f"Every class needs at least one usable example image; none in: {', '.join(empty)}.")
    threshold = job.params.get("margin_threshold")
    return _Context(
        support_set=support_set, encoder=encoder, key=key,
        classes=list(SupportClass.objects.filter(support_set=support_set).order_by("position", "id")),
        temperature=settings.LOUPE_RAG_SCORE_TEMPERATURE,
        vlm_threshold=threshold if threshold is not None and settings.LOUPE_VLM else None,
    )


def _open(image: Image):
    with image_file_open(image=image) as fp:
        return open_rgb(fp)


def margin_of(scores: dict[str, float]) -> float:
    ordered = sorted(scores.values(), reverse=True)
    return float(ordered[0] - ordered[1]) if len(ordered) > 1 else 1.0


def classify_batch(ctx: _Context, pictures: list) -> list[dict]:
    """Scores, margin, decision and per-class evidence of each picture, retrieval only."""
    support_set = ctx.support_set
    grids = images_patches(ctx.encoder, pictures, resolution=support_set.support_resolution,
                           patch_size=support_set.patch_size, source=support_set.patch_source,
                           background_std=settings.LOUPE_RAG_BACKGROUND_STD)
    matrix, class_ids = support_matrix(support_set.pk, ctx.key)
    queries = np.concatenate([grid.vectors for grid in grids]).astype(np.float32)
    sims = matrix.vectors @ queries.T  # (support patches, every query patch of the batch)
    labels = {c.pk: c.label for c in ctx.classes}
    rows_of = {cid: np.flatnonzero(class_ids == cid) for cid in np.unique(class_ids).tolist() if cid in labels}
    best = {cid: sims[rows].max(axis=0) for cid, rows in rows_of.items()}
    out, start, chosen = [], 0, []
    for grid in grids:
        n = len(grid.patches)
        cols = slice(start, start + n)
        keep = grid.foreground if grid.foreground is not None and grid.foreground.any() else np.ones(n, dtype=bool)
        means = scoring.class_means({labels[cid]: b[cols].astype(np.float64) for cid, b in best.items()}, keep=keep)
        scores = scoring.softmax_scores(means, temperature=ctx.temperature)
        evidence = []
        for cid, rows in rows_of.items():
            block = sims[rows][:, start:start + n][:, keep]
            r, q = np.unravel_index(int(block.argmax()), block.shape)
            query_patch = int(np.flatnonzero(keep)[q])
            evidence.append({"label": labels[cid], "patch_id": int(matrix.ids[rows[r]]), "similarity": round(float(block[r, q]), 6),
                             "query_box": list(grid.patches[query_patch].box)})
            chosen.append(int(matrix.ids[rows[r]]))
        decided = scoring.retrieval_decision(scores)
        out.append({"scores": {k: round(v, 6) for k, v in scores.items()}, "margin": margin_of(scores),
                    "label": decided, "evidence": evidence})
        start += n
    details = {row["pk"]: row for row in PatchEmbedding.objects.filter(pk__in=chosen).values(
        "pk", "support_image_id", "support_image__image_id", "x0", "y0", "x1", "y1")}
    for item in out:
        item["evidence"] = [
            {**e, "support_image_id": details[e["patch_id"]]["support_image_id"],
             "image_id": details[e["patch_id"]]["support_image__image_id"],
             "box": [details[e["patch_id"]][c] for c in ("x0", "y0", "x1", "y1")]}
            for e in item["evidence"] if e["patch_id"] in details
        ]
        item["evidence"].sort(key=lambda e: -e["similarity"])
    return out


def _ask_model(ctx: _Context, image: Image, answer: dict) -> None:
    """Below the margin threshold: the set's classification with its vision-language model."""
    from search.rag.classify import classify_locally  # the model's path, prompts and parsing as a classify

    with image_file_open(image=image) as fp:
        image_bytes = fp.read()
    result = classify_locally(support_set_id=ctx.support_set.pk, image_bytes=image_bytes, params={"use_vlm": True})
    decision = result["decision"]
    answer["explanation"] = decision.get("explanation") or ""
    if decision.get("source") == "vlm" and decision.get("flag") in answer["scores"]:
        answer["label"] = decision["flag"]
        answer["source"] = Label.Source.MODEL


def _write(job: IndexJob, ctx: _Context, labeled: list[tuple[Image, dict]], failures: list[dict], processed: int) -> None:
    class_by_label = {c.label: c for c in ctx.classes}
    rows = [
        Label(image_id=image.pk, support_set_id=ctx.support_set.pk, support_class=class_by_label.get(answer["label"]),
              label=answer["label"], predicted_label=answer["label"], scores=answer["scores"], margin=answer["margin"],
              source=answer.get("source", Label.Source.RETRIEVAL), explanation=answer.get("explanation", ""),
              evidence=answer["evidence"], state=Label.State.PREDICTED, job_id=job.pk)
        for image, answer in labeled
    ]
    with transaction.atomic():
        current = IndexJob.objects.select_for_update().filter(pk=job.pk, status=IndexJob.Status.RUNNING).first()
        if current is None:
            raise _Cancelled()
        # A label reviewed while this batch ran keeps its review.
        reviewed = set(Label.objects.filter(support_set_id=ctx.support_set.pk, image_id__in=[r.image_id for r in rows],
                                            state__in=Label.REVIEWED_STATES).values_list("image_id", flat=True))
        rows = [r for r in rows if r.image_id not in reviewed]
        Label.objects.bulk_create(
            rows, update_conflicts=True, unique_fields=["image", "support_set"],
            update_fields=["support_class", "label", "predicted_label", "scores", "margin", "source", "explanation",
                           "evidence", "state", "job", "updated_at"],
        )
        result = current.result or {}
        if failures:
            listed = result.get("failures", [])
            result["failures"] = (listed + failures)[:MAX_FAILURES_LISTED]
        done = min(current.done + processed, max(current.total, current.done + processed))
        IndexJob.objects.filter(pk=job.pk).update(
            done=done, total=max(current.total, done), failed=current.failed + len(failures), result=result,
            heartbeat_at=timezone.now())


def _finish(job_id: int) -> None:
    job = IndexJob.objects.get(pk=job_id)
    labels = Label.objects.filter(job_id=job_id).count()
    IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.RUNNING).update(
        status=IndexJob.Status.SUCCEEDED, finished_at=timezone.now(), total=job.done,
        message=f"{labels} image(s) labeled, {job.failed} could not be.")


def label_job_run(*, job_id: int, after_id: int = 0) -> dict:
    """On a worker: label batch after batch until the scope is done, the job is cancelled, or this
    task has run LOUPE_RAG_LABEL_TASK_SECONDS (then the next task goes on after the last image)."""
    if after_id == 0:
        IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.QUEUED).update(
            status=IndexJob.Status.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now())
    job = IndexJob.objects.filter(pk=job_id).first()
    if job is None or job.status != IndexJob.Status.RUNNING:
        # Cancelled, finished or gone. A running one is this job's task redelivered after its worker
        # died (acks_late): it goes on after the images already labeled.
        return {"skipped": job.status if job else "gone"}
    try:
        ctx = _context(job)
    except (ApplicationError, SupportSet.DoesNotExist) as exc:
        message = getattr(exc, "message", None) or "The support set was deleted."
        IndexJob.objects.filter(pk=job_id, status=IndexJob.Status.RUNNING).update(
            status=IndexJob.Status.FAILED, message=message, finished_at=timezone.now())
        return {"failed": message}
    started = time.monotonic()
    size = max(1, settings.LOUPE_RAG_LABEL_BATCH)
    labeled_count = 0
    try:
        while True:
            batch = list(_todo(job, after_id=after_id).only("pk", "file", "original_name")[:size])
            if not batch:
                _finish(job_id)
                return {"labeled": labeled_count, "finished": True}
            after_id = batch[-1].pk
            pictures, readable, failures = [], [], []
            for image in batch:
                try:
                    pictures.append(_open(image))
                    readable.append(image)
                except Exception as exc:  # noqa: BLE001 — one unreadable image never stops the job
                    failures.append({"image_id": image.pk, "name": image.original_name,
                                     "reason": getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"})
            answers = classify_batch(ctx, pictures) if pictures else []
            labeled = []
            for image, answer in zip(readable, answers, strict=True):
                if ctx.vlm_threshold is not None and answer["margin"] < ctx.vlm_threshold:
                    try:
                        _ask_model(ctx, image, answer)
                    except Exception as exc:  # noqa: BLE001 — the retrieval answer stands
                        answer["explanation"] = f"The vision-language model was not asked or failed: {exc}"
                labeled.append((image, answer))
            _write(job, ctx, labeled, failures, len(batch))
            labeled_count += len(labeled)
            if time.monotonic() - started > settings.LOUPE_RAG_LABEL_TASK_SECONDS:
                from search.rag.tasks import encode_label_images  # cycle, as in label_job_start

                encode_label_images.delay(job_id, after_id)
                return {"labeled": labeled_count, "continued_after": after_id}
    except _Cancelled:
        return {"cancelled": job_id, "labeled": labeled_count}


# --- Review ------------------------------------------------------------------------------------


def label_review(*, label: Label, user, state: str | None = None, class_label: str | None = None) -> Label:
    """`class_label`: the image is of that class (corrected, or accepted when it is the prediction);
    else `state`: accepted, rejected, or predicted (undo)."""
    if class_label is not None:
        support_class = SupportClass.objects.filter(support_set_id=label.support_set_id, label=class_label).first()
        if support_class is None:
            raise ApplicationError(f"The set has no class {class_label!r}.", code="unknown_class")
        label.support_class, label.label = support_class, support_class.label
        label.state = Label.State.ACCEPTED if support_class.label == label.predicted_label else Label.State.CORRECTED
    elif state is not None:
        if state not in (Label.State.ACCEPTED, Label.State.REJECTED, Label.State.PREDICTED):
            raise ApplicationError("state must be accepted, rejected or predicted; send a class to correct.", code="invalid_state")
        if state in (Label.State.ACCEPTED, Label.State.PREDICTED):  # back to what the job said
            label.label = label.predicted_label
            label.support_class = SupportClass.objects.filter(support_set_id=label.support_set_id, label=label.label).first()
        label.state = state
    else:
        raise ApplicationError("Send a state or a class.", code="invalid")
    label.reviewed_by = user
    label.save(update_fields=["support_class", "label", "state", "reviewed_by", "updated_at"])
    return label


def label_add_to_set(*, label: Label, user):
    """An accepted or corrected image becomes an example of its class. Its patches are embedded by
    the encode queue and join the cached support matrix incrementally (only new patch ids are fetched,
    search/rag/retrieval.support_matrix)."""
    from search.rag.services import support_images_add  # cycle: services → classify → this module's users

    if label.state not in (Label.State.ACCEPTED, Label.State.CORRECTED):
        raise ConflictError("Only an accepted or corrected label can become an example.", code="label_not_reviewed")
    if label.support_class_id is None:
        raise ConflictError(f"The set no longer has the class {label.label!r}.", code="unknown_class")
    support_class = SupportClass.objects.select_related("support_set__album").get(pk=label.support_class_id)
    return support_images_add(support_class=support_class, user=user, image_ids=[label.image_id])


# --- Reading and export --------------------------------------------------------------------------


def label_job_scope(*, support_set: SupportSet, job_id: int) -> list[int] | None:
    """The image ids a labeling job of this set was started for (None: the whole album). A job of
    another set, or no job, is JobNotFoundError: the same for a job the user cannot see."""
    job = IndexJob.objects.filter(pk=job_id, kind=IndexJob.Kind.LABEL, params__support_set_id=support_set.pk).first()
    if job is None:
        raise JobNotFoundError()
    return job.params.get("image_ids") if job.params.get("scope") == SCOPE_IMAGES else None


def label_jobs_recent(*, support_set: SupportSet, limit: int = 20) -> list[dict]:
    """The set's newest labeling jobs, each with a word on its scope: {id, status, created_at, scope, images}."""
    jobs = (IndexJob.objects.filter(kind=IndexJob.Kind.LABEL, params__support_set_id=support_set.pk)
            .order_by("-created_at", "-id")[:limit])
    return [{"id": job.pk, "status": job.status, "created_at": job.created_at, "scope": job.params.get("scope"),
             "images": len(job.params.get("image_ids") or [])} for job in jobs]


def labels_filtered(*, support_set: SupportSet, class_label: str | None = None, state: str | None = None,
                    margin_below: float | None = None, job_id: int | None = None) -> QuerySet[Label]:
    """`job_id`: the labels of the images that job was started for, whichever job wrote them last (a
    job skips images already labeled, so its own rows alone would hide them)."""
    labels = Label.objects.filter(support_set=support_set).select_related("image")
    if job_id is not None:
        scope = label_job_scope(support_set=support_set, job_id=job_id)
        if scope is not None:
            labels = labels.filter(image_id__in=scope)
    if class_label:
        labels = labels.filter(label=class_label)
    if state:
        if state not in Label.State.values:
            raise ApplicationError(f"state must be one of {', '.join(Label.State.values)}.", code="invalid_filter")
        labels = labels.filter(state=state)
    if margin_below is not None:
        labels = labels.filter(margin__lt=margin_below)
    return labels.order_by("margin", "id")


def export_rows(labels: QuerySet[Label]) -> list[dict]:
    return [
        {"image_id": label.image_id, "file_name": label.image.original_name, "sha256": label.image.sha256,
         "class": label.label, "predicted_class": label.predicted_label, "scores": label.scores,
         "margin": round(label.margin, 6), "source": label.source, "state": label.state}
        for label in labels.order_by("image_id")
    ]
