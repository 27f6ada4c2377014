"""Few-shot classification of a query image against a support set.

query image → patches (same grid rules as the support images) → every query patch matched against
every support patch (search/rag/retrieval.py) → normalized class scores (search/rag/scoring.py) and
per-class top-k evidence patches → evidence crops,
labeled with their class, to a vision-language model when one is configured → decision.

Runs where the model is: in this process (`classify_locally`) or on a worker of the `query` queue
(`classify`), which is always the case when a VLM will answer: generation takes seconds to minutes
and belongs on the worker (and its GPU), not in a web process.
"""

from __future__ import annotations

import io
import time
from dataclasses import asdict, dataclass

from django.conf import settings
from PIL import Image, UnidentifiedImageError

from albums.models import Image as AlbumImage
from albums.storage import image_file_open
from config.errors import ConflictError
from encoders.images import open_rgb
from encoders.registry import get_encoder
from encoders.vlm import Evidence, VlmError, VlmRequest, get_vlm
from search.query_encoding import query_encoding_mode
from search.query_worker import ask_query_worker, query_image_stash
from search.rag import scoring
from search.rag.errors import QueryImageError, SupportSetIncompleteError
from search.rag.indexing import model_key, stale_support_images, support_patches_compute
from search.rag.models import SupportClass, SupportImage, SupportSet
from search.rag.patches import image_patches
from search.rag.retrieval import match_patches
from search.rag.selectors import classes_without_ready_images
from search.rag.services import check_patch_count

VLM_QUERY_MAX_SIDE = 1024
NO_VLM_EXPLANATION = (
    "Retrieval only: no vision-language model {why}, so the decision is the class whose support patches "
    "are most similar to the query image (highest normalized score)."
)


@dataclass(frozen=True)
class ClassifyParams:
    k: int = 5  # evidence patches per class (shown; the first max_patches_per_class go to the VLM)
    max_patches_per_class: int = 3  # evidence crops per class shown to the VLM
    input_resolution: int | None = None  # None: the set's support resolution
    score_temperature: float | None = None  # None: LOUPE_RAG_SCORE_TEMPERATURE
    use_vlm: bool | None = None  # None: the set's setting
    system_prompt: str = ""
    user_prompt: str = ""
    temperature: float = 0.2
    top_p: float = 0.9
    max_new_tokens: int = 200
    # The RAG Vision Engine's flag: the prompts go to the VLM verbatim and its `<flag_key>: True|False`
    # is the answer (decision["flag_value"]); without a VLM, the set's flag_true_label decides.
    flag_key: str | None = None


def vlm_spec_for(support_set: SupportSet, params: ClassifyParams) -> str:
    wanted = support_set.use_vlm if params.use_vlm is None else params.use_vlm
    return settings.LOUPE_VLM if wanted else ""


def _open_query(image_bytes: bytes):
    try:
        return open_rgb(io.BytesIO(image_bytes))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise QueryImageError(f"The query image could not be decoded: {exc}") from None


def _crops(evidence: list[dict]) -> list:
    """The evidence boxes cut from their support images, each image read and decoded once."""
    pictures = {}
    for stored in AlbumImage.objects.filter(pk__in={item["image_id"] for item in evidence}).only("file"):
        with image_file_open(image=stored) as fp:
            pictures[stored.pk] = open_rgb(fp)
    return [pictures[item["image_id"]].crop(tuple(item["box"])) for item in evidence]


def _ensure_patches(support_set: SupportSet, encoder, key: str) -> int:
    """Embed now what a queued task has not embedded yet, so a classification right after an upload
    sees every example; the rows it writes are the ones the task would have written."""
    stale = stale_support_images(support_set=support_set, key=key)
    if len(stale) > settings.LOUPE_RAG_INLINE_PATCH_MAX:
        # Too many to embed inside one request: the worker is on it (or will be); say how far along.
        total = SupportImage.objects.filter(support_set=support_set).count()
        raise ConflictError(
            f"The support set's examples are being embedded ({total - len(stale)} of {total} ready); try again shortly.",
            code="support_set_patching",
            extra={"ready": total - len(stale), "total": total},
        )
    if stale:
        support_patches_compute(
            support_set_id=support_set.pk, generation=support_set.generation, support_image_ids=stale, encoder=encoder
        )
    return len(stale)


def _retrieval_flag_value(support_set: SupportSet, classes, retrieval_class: str | None) -> tuple[bool | None, str]:
    """The flag without a model: whether the decided class is the one the set says means true."""
    true_label = support_set.flag_true_label
    if not true_label:
        return None, (" The set names no class that means true (flag_true_label), so the flag is null;"
                      " the class decided is in `decision`.")
    if true_label not in {c.label for c in classes}:
        return None, f" The set's flag_true_label {true_label!r} names none of its classes, so the flag is null."
    return retrieval_class == true_label, f" The flag is true when the class is {true_label!r}."


def _decide(support_set, classes, scores, evidence, query, params, spec) -> dict:
    retrieval_flag = scoring.retrieval_decision(scores)
    decision = {
        "flag": retrieval_flag,
        "retrieval_flag": retrieval_flag,
        "source": "retrieval",
        "parsed": True,
        "explanation": NO_VLM_EXPLANATION.format(why="is configured (LOUPE_VLM)" if not settings.LOUPE_VLM else "was asked for"),
        "raw_response": "",
        "vlm": spec or None,
        "vlm_error": None,
    }
    why = ""
    if params.flag_key is not None:  # the engine's boolean: flag_key and flag_value join the decision
        decision["flag_key"] = params.flag_key
        decision["flag_value"], why = _retrieval_flag_value(support_set, classes, retrieval_flag)
        decision["explanation"] += why
    if not spec:
        return decision

    chosen = [item for item in evidence if item["sent_to_vlm"]]
    # Full-size photos would become thousands of vision tokens (or megabytes of data URL) for no gain.
    shown = query.copy()
    shown.thumbnail((VLM_QUERY_MAX_SIDE, VLM_QUERY_MAX_SIDE))
    request = VlmRequest(
        query=shown,
        classes=tuple(c.label for c in classes),
        evidence=tuple(
            Evidence(label=item["label"], image=crop, similarity=item["similarity"])
            for item, crop in zip(chosen, _crops(chosen), strict=True)
        ),
        class_scores=dict(scores),
        system_prompt=params.system_prompt,
        user_prompt=params.user_prompt,
        temperature=params.temperature,
        top_p=params.top_p,
        max_new_tokens=params.max_new_tokens,
        flag_key=params.flag_key,
    )
    try:
        answer = get_vlm(spec).answer(request)
    except VlmError as exc:
        # The retrieval result stands; the response says why there is no explanation.
        decision["vlm_error"] = {"code": getattr(exc, "code", "vlm_error"), "message": str(getattr(exc, "message", exc))}
        decision["explanation"] = f"The vision-language model failed ({decision['vlm_error']['message']}); " + NO_VLM_EXPLANATION.format(
            why="answered"
        ) + why
        return decision
    if params.flag_key is not None:
        # The model answered the flag, not a class: the class decision stays retrieval's.
        decision.update(flag_value=answer.flag_value)
    else:
        decision.update(flag=answer.flag)
    decision.update(
        source="vlm",
        parsed=answer.parsed,
        explanation=answer.explanation,
        raw_response=answer.raw,
        vlm=answer.model,
    )
    return decision


def classify_locally(*, support_set_id: int, image_bytes: bytes, params: dict) -> dict:
    """JSON-safe result, so a Celery task can return it."""
    started = time.perf_counter()
    options = ClassifyParams(**params)
    support_set = SupportSet.objects.get(pk=support_set_id)
    classes = list(SupportClass.objects.filter(support_set=support_set).order_by("position", "id"))
    if len(classes) < 1:
        raise SupportSetIncompleteError("The support set has no classes: add at least one class with example images.")
    if not SupportImage.objects.filter(support_set=support_set).exists():
        raise SupportSetIncompleteError(
            "No class of the support set has example images yet.", extra={"empty_classes": [c.label for c in classes]}
        )
    query = _open_query(image_bytes)
    encoder = get_encoder(support_set.encoder_spec)  # EncoderError: the API maps it (config/errors.py)
    key = model_key(encoder, support_set)
    embedded_now = _ensure_patches(support_set, encoder, key)
    empty = classes_without_ready_images(support_set=support_set)
    if empty:
        raise SupportSetIncompleteError(
            f"Every class needs at least one usable example image; none in: {', '.join(empty)}.",
            extra={"empty_classes": empty},
        )
    t_support = time.perf_counter()
    grid = image_patches(
        encoder,
        query,
        resolution=options.input_resolution or support_set.support_resolution,
        patch_size=support_set.patch_size,
        source=support_set.patch_source,
        background_std=settings.LOUPE_RAG_BACKGROUND_STD,
    )
    t_query = time.perf_counter()
    matches = match_patches(support_set_id=support_set.pk, model_key=key, query_vectors=grid.vectors, k=options.k,
                            query_keep=grid.foreground)
    t_retrieval = time.perf_counter()
    by_class: dict[int, list] = {c.pk: [] for c in classes}
    for item in matches.evidence:
        by_class[item.class_id].append(item)
    labels = {c.pk: c.label for c in classes}
    means = scoring.class_means({labels[cid]: best for cid, best in matches.best_per_query.items()}, keep=grid.foreground)
    temperature = options.score_temperature or settings.LOUPE_RAG_SCORE_TEMPERATURE
    scores = scoring.softmax_scores(means, temperature=temperature)
    spec = vlm_spec_for(support_set, options)
    evidence = [
        {
            "class_id": item.class_id,
            "label": labels[item.class_id],
            "support_image_id": item.support_image_id,
            "image_id": item.image_id,
            "box": list(item.box),
            "similarity": round(item.similarity, 6),
            "query_box": list(grid.patches[item.query_patch].box),
            "sent_to_vlm": bool(spec) and rank < options.max_patches_per_class,  # only when a model reads them
        }
        for items in by_class.values()
        for rank, item in enumerate(items)
    ]
    decision = _decide(support_set, classes, scores, evidence, query, options, spec)
    finished = time.perf_counter()
    return {
        "support_set_id": support_set.pk,
        "model_key": key,
        "patch_source": grid.source,
        "classes": [
            {"id": c.pk, "label": c.label, "raw_score": round(means[c.label], 6), "score": round(scores[c.label], 6)}
            for c in classes
        ],
        "class_scores": {label: round(score, 6) for label, score in scores.items()},
        "score_temperature": temperature,
        "decision": decision,
        "evidence": evidence,
        "query": {"width": query.width, "height": query.height, "patches": len(grid.patches),
                  "foreground_patches": int(grid.foreground.sum())},
        "embedded_now": embedded_now,
        "params": asdict(options),
        "timings_ms": {
            "support": round((t_support - started) * 1000, 1),
            "query_patches": round((t_query - t_support) * 1000, 1),
            "retrieval": round((t_retrieval - t_query) * 1000, 1),
            "decision": round((finished - t_retrieval) * 1000, 1),
            "total": round((finished - started) * 1000, 1),
        },
    }


def _runs_here(spec: str) -> bool:
    """Where search encodes its queries (search.query_encoding.query_encoding_mode), except that a
    vision-language model's generation runs on a worker unless the web is told to do it all."""
    if spec:
        return settings.LOUPE_QUERY_ENCODING == "web"
    return query_encoding_mode() == "web"


def classify(*, support_set: SupportSet, image_bytes: bytes, params: ClassifyParams) -> dict:
    check_patch_count(params.input_resolution or support_set.support_resolution, support_set.patch_size)
    if _runs_here(vlm_spec_for(support_set, params)):
        return classify_locally(support_set_id=support_set.pk, image_bytes=image_bytes, params=asdict(params))
    from search.rag.tasks import query_classify  # cycle: search.rag.tasks imports this module

    timeout = settings.LOUPE_CLASSIFY_TIMEOUT_SECONDS
    image_key = query_image_stash(image_bytes, seconds=timeout)  # beside the task, not in its message
    return ask_query_worker(query_classify, (support_set.pk, None, asdict(params), image_key), timeout=timeout)
