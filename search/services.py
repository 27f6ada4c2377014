"""Search, more-like-this and near-duplicates over an album's vectors."""

from __future__ import annotations

import datetime
import hashlib
import time
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser

from albums.errors import ImageNotFoundError
from albums.models import Album, Image
from albums.selectors import image_visible_to
from albums.storage import image_file_open
from config.errors import ApplicationError, ConflictError
from encoders.model_ids import ModelId, parse_model_id
from encoders.pooling import REGIONS
from encoders.concepts import CONCEPT_MIN_SCORE, concept_index
from encoders.registry import TEXT_CONCEPTS, default_min_score, spec_modalities, text_search
from search import scoring
from search.hooks import LabelRestriction
from search.query_encoding import EncodedQuery, encode_query
from search.selectors import (
    Candidates,
    StoredQuery,
    album_graph_rows,
    album_has_concepts,
    album_images_mean_vector,
    candidate_count,
    concept_candidates,
    model_dim,
    region_matches,
    search_candidates,
    single_part_depth,
    single_part_ef_depth,
    stored_query_vector,
)


class AlbumNotIndexedError(ConflictError):
    code = "album_not_indexed"

    def __init__(self) -> None:
        super().__init__("This album has no searchable vectors yet: upload images and wait for indexing to finish.")


@dataclass(frozen=True)
class SearchQuery:
    text: str = ""
    negative_text: str = ""
    image_bytes: bytes | None = None
    image_id: int | None = None  # checked by the search: an image in one of the searching user's albums
    # Images of the searched album (a selection on its map): the query image is the normalized mean
    # of their stored vectors.
    image_ids: tuple[int, ...] = ()
    weights: scoring.Weights = scoring.Weights()
    min_score: float | None = None
    max_results: int | None = None
    use_query_optimization: bool | None = None
    page: int = 1
    page_size: int = 50
    # (x0, y0, x1, y1), fractions of the query image: match this region against the stored region
    # tokens (albums with `regions` pooling) instead of the whole image.
    box: tuple[float, float, float, float] | None = None
    # Leave the query image itself out of the results: by id, or, for uploaded bytes, the album's
    # images with the same content. Off by default, so an image_id and the same image's bytes rank
    # alike (the image first, at 1.0); more-like-this sets it.
    exclude_query_image: bool = False
    # Only images with this label (search.rag): part of the candidate statement, not a filter after it.
    label: LabelRestriction | None = None


@dataclass(frozen=True)
class SearchHit:
    image_id: int
    score: float
    cosines: dict[str, float]  # part -> its (calibrated) cosine, rounded as served
    original_name: str
    width: int | None
    height: int | None
    taken_at: datetime.datetime | None
    region: dict[str, int] | None = None  # box queries: the stored region that matched (cell, row, col)
    # The album's support sets' labels on the image (search.rag), read with the candidates.
    labels: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class SearchResult:
    """What a search answers: what was searched, one page of hits, and where the time went. The API
    view turns it into the response body (search/api/views.py: search_body)."""

    model: ModelId
    rebuilding: bool
    min_score: float
    max_results: int
    count: int
    page: int
    page_size: int
    hits: list[SearchHit]
    timings_ms: dict[str, float]  # encode, search, total
    region_grid: tuple[int, int] | None = None  # box queries: (rows, cols) of the stored regions

    @property
    def model_id(self) -> str:
        return str(self.model)


def _present_parts(query: SearchQuery) -> set[str]:
    parts = set()
    if query.text.strip():
        parts.add("text")
    if query.negative_text.strip():
        parts.add("negative")
    if query.image_bytes is not None or query.image_id is not None or query.image_ids:
        parts.add("image")
    return parts


def _check_modalities(album: Album, model_spec: str, parts: set[str]) -> None:
    if parts & {"text", "negative"} and "text" not in spec_modalities(model_spec):
        raise ApplicationError(
            f"This album's encoder ({model_spec}) is image-only: search it with an image, or switch the album "
            "to a CLIP, OpenCLIP or SigLIP encoder for text search (docs/encoders.md).",
            code="encoder_modality_unsupported",
        )


def _album_model(album: Album) -> ModelId:
    """The model the album's search reads, parsed here once and passed on as it is."""
    if not album.active_model_id:
        raise AlbumNotIndexedError()
    return parse_model_id(album.active_model_id)


def _rebuilding(album: Album, model: ModelId) -> bool:
    """Whether search still reads vectors made under other settings than the album's current ones."""
    return (model.spec, model.pooling, model.storage) != (album.encoder_spec, album.pooling, album.vector_storage)


def _limits(album: Album, query: SearchQuery, model_spec: str) -> tuple[float, int]:
    """min_score and max_results: the request's, else the album's, else the encoder's default score."""
    min_score = query.min_score
    if min_score is None:
        min_score = album.min_search_score if album.min_search_score is not None else default_min_score(model_spec)
    return min_score, _max_results(album, query)


def _max_results(album: Album, query: SearchQuery) -> int:
    return min(query.max_results or album.max_search_results, settings.LOUPE_MAX_SEARCH_RESULTS)


def _stored_query_image(image_id: int) -> bytes:
    with image_file_open(image=Image.objects.get(pk=image_id)) as fp:
        return fp.read()


def _result(*, album: Album, model: ModelId, query: SearchQuery, min_score: float, max_results: int, count: int,
            hits: list[SearchHit], times: tuple[float, float, float], region_grid: tuple[int, int] | None = None,
            ) -> SearchResult:
    started, encoded_at, finished = times
    return SearchResult(
        model=model, rebuilding=_rebuilding(album, model), min_score=min_score, max_results=max_results, count=count,
        page=query.page, page_size=query.page_size, hits=hits, region_grid=region_grid,
        timings_ms={
            "encode": round((encoded_at - started) * 1000, 1),
            "search": round((finished - encoded_at) * 1000, 1),
            "total": round((finished - started) * 1000, 1),
        },
    )


def album_search(*, user: AbstractBaseUser, album: Album, query: SearchQuery) -> SearchResult:
    """The album searched as `user` (a member: the caller got the album through album_get_for_user).
    A query image given by id must be in one of the user's albums, else ImageNotFoundError."""
    once = _region_search_once if query.box is not None else _album_search_once
    result, had_candidates = once(user=user, album=album, query=query)
    if not had_candidates and (switched_to := _model_switched_since(album, result.model_id)):
        # A rebuild switched the album between our read of its model and the candidate statement,
        # and deleted the old vectors in the same commit: ask again, once, under the new model.
        album.active_model_id = switched_to
        result, _ = once(user=user, album=album, query=query)
    return result


def _model_switched_since(album: Album, model_id: str) -> str | None:
    """The album's active model now, when it is no longer `model_id` (a rebuild switched it)."""
    current = Album.objects.filter(pk=album.pk).values_list("active_model_id", flat=True).first()
    return current if current and current != model_id else None


def _stored_image_alone(album: Album, query: SearchQuery) -> bool:
    """A query by a stored image and nothing else, on an indexed album: the path that never lets the
    vector leave PostgreSQL (nothing in it can fail before the access check it holds)."""
    return (query.image_id is not None and query.box is None and bool(album.active_model_id)
            and query.weights.image > 0 and not query.text.strip() and not query.negative_text.strip())


def _album_search_once(*, user: AbstractBaseUser, album: Album, query: SearchQuery) -> tuple[SearchResult, bool]:
    """One search under the album's model as read; also whether any vector was a candidate."""
    started = time.perf_counter()
    if _stored_image_alone(album, query) and user.is_authenticated:
        answered = _stored_image_search(user=user, album=album, query=query, started=started)
        if answered is not None:
            return answered
    if query.image_id is not None and not album.active_model_id:
        if not image_visible_to(user=user, image_id=query.image_id):
            raise ImageNotFoundError()
    if query.image_ids:
        _check_album_images(album, query.image_ids)
    model = _album_model(album)
    stored_image_vector = None
    if query.image_id is not None:
        visible, stored_image_vector = stored_query_vector(user=user, image_id=query.image_id, model=model)
        if not visible:
            raise ImageNotFoundError()
    elif query.image_ids:
        stored_image_vector = _mean_query_vector(album, model, query.image_ids)
    active = scoring.active_parts(_present_parts(query), query.weights)
    _check_modalities(album, model.spec, active)
    if active & {"text", "negative"} and text_search(model.spec) == TEXT_CONCEPTS:
        return _concept_search(album=album, model=model, query=query, active=active,
                               stored_image_vector=stored_image_vector, started=started)

    image_bytes = query.image_bytes
    if "image" in active and query.image_id is not None and stored_image_vector is None:
        # Not indexed under this model: encode its file, unless a rebuild has just switched the album
        # (and deleted this model's vectors): then nothing, and album_search asks the new model.
        if _model_switched_since(album, str(model)):
            return _result(album=album, model=model, query=query, min_score=0.0, max_results=0, count=0, hits=[],
                           times=(started, started, time.perf_counter())), False
        image_bytes = _stored_query_image(query.image_id)
    texts = {"text": query.text.strip(), "negative": query.negative_text.strip()}
    texts = {part: value for part, value in texts.items() if part in active}
    ensemble = album.use_query_optimization if query.use_query_optimization is None else query.use_query_optimization
    needs_encoding = bool(texts) or ("image" in active and stored_image_vector is None)
    encoded = (
        encode_query(model=model, texts=texts, image_bytes=image_bytes if "image" in active else None,
                     ensemble=ensemble)
        if needs_encoding
        else EncodedQuery(model_id=str(model), vectors={})
    )
    vectors = dict(encoded.vectors)
    if "image" in active and stored_image_vector is not None:
        vectors["image"] = stored_image_vector
    encoded_at = time.perf_counter()
    exclude = _query_image_ids(album, query) if query.exclude_query_image else ()
    min_score, max_results = _limits(album, query, model.spec)
    candidates, order, scores, parts = _rank(album=album, model=model, vectors=vectors, query=query,
                                             calibrate=encoded.calibrate, exclude=exclude, max_results=max_results,
                                             min_score=min_score, linear_text=encoded.siglip_logits is None)
    hits = _hits(candidates, order, scores, parts, query)
    result = _result(album=album, model=model, query=query, min_score=min_score, max_results=max_results,
                     count=int(len(order)), hits=hits, times=(started, encoded_at, time.perf_counter()))
    return result, len(candidates.image_ids) > 0


class ConceptsNotIndexedError(ConflictError):
    code = "concepts_not_indexed"

    def __init__(self) -> None:
        super().__init__("This album's images were indexed before its encoder kept their ImageNet concepts, so words "
                         "cannot search them yet: re-index the album (or search with an image).")


def _concept_search(*, album: Album, model: ModelId, query: SearchQuery, active: set[str],
                    stored_image_vector: np.ndarray | None, started: float) -> tuple[SearchResult, bool]:
    """Words on an encoder with an ImageNet head (EfficientNet-Lite0): each word part is the images'
    probability mass on the classes its words name through WordNet (encoders/concepts.py), a
    probability already, so it combines with the image part's cosine as SigLIP's calibrated text
    does. Unknown words are a 400 (ConceptNotFoundError) naming them."""
    texts = {"text": query.text.strip(), "negative": query.negative_text.strip()}
    index = concept_index()
    concepts = {part: index.match(texts[part]).indicator() for part in ("text", "negative") if part in active}
    image_vector = None
    if "image" in active:
        image_vector = stored_image_vector
        if image_vector is None:
            image_bytes = query.image_bytes if query.image_bytes is not None else _stored_query_image(query.image_id)
            image_vector = encode_query(model=model, texts={}, image_bytes=image_bytes, ensemble=False).vectors["image"]
    encoded_at = time.perf_counter()
    exclude = _query_image_ids(album, query) if query.exclude_query_image else ()
    min_score, max_results = _limits(album, query, model.spec)
    if query.min_score is None and album.min_search_score is None:
        min_score = CONCEPT_MIN_SCORE
    candidates = concept_candidates(album_id=album.pk, model=model, concepts=concepts, image=image_vector,
                                    weights=query.weights, limit=max_results, exclude_image_ids=exclude,
                                    only=query.label)
    if not len(candidates.image_ids) and not album_has_concepts(album_id=album.pk, model=model):
        if not _model_switched_since(album, str(model)):
            raise ConceptsNotIndexedError()
    order, scores, parts = _order(candidates, query, calibrate=None, min_score=min_score, max_results=max_results)
    hits = _hits(candidates, order, scores, parts, query)
    result = _result(album=album, model=model, query=query, min_score=min_score, max_results=max_results,
                     count=int(len(order)), hits=hits, times=(started, encoded_at, time.perf_counter()))
    return result, len(candidates.image_ids) > 0


def _stored_image_search(*, user: AbstractBaseUser, album: Album, query: SearchQuery,
                         started: float) -> tuple[SearchResult, bool] | None:
    """A stored image alone, in one statement: the access check, its vector and the candidates
    (search.selectors.StoredQuery). None when the query row was not found (not the user's to see,
    not indexed under this model, no vectors at all): the general path then says which."""
    model = _album_model(album)
    dim = model_dim(album_id=album.pk, model=model)
    if dim is None:
        return None
    max_results = _max_results(album, query)
    exclude = (query.image_id,) if query.exclude_query_image else ()
    k = single_part_depth(model, dim, max_results)
    candidates = search_candidates(
        album_id=album.pk, model=model, queries={"image": StoredQuery(image_id=query.image_id, viewer_id=user.pk)},
        k=k, ef_depth=max(k, single_part_ef_depth(max_results, graph_rows=album_graph_rows(album_id=album.pk, model=model))),
        dim=dim,
        exclude_image_ids=exclude, only=query.label,
    )
    if candidates is None:
        return None
    min_score, _ = _limits(album, query, model.spec)
    encoded_at = started  # nothing to encode
    order, scores, parts = _order(candidates, query, calibrate=None, min_score=min_score, max_results=max_results)
    hits = _hits(candidates, order, scores, parts, query)
    result = _result(album=album, model=model, query=query, min_score=min_score, max_results=max_results,
                     count=int(len(order)), hits=hits, times=(started, encoded_at, time.perf_counter()))
    return result, len(candidates.image_ids) > 0


def _hits(candidates: Candidates, order: np.ndarray, scores: np.ndarray, parts: dict[str, np.ndarray],
          query: SearchQuery) -> list[SearchHit]:
    start = (query.page - 1) * query.page_size
    hits = []
    for index in order[start : start + query.page_size].tolist():
        image_id = int(candidates.image_ids[index])
        hits.append(SearchHit(
            image_id=image_id, score=round(float(scores[index]), 4),
            cosines={part: round(float(values[index]), 4) for part, values in sorted(parts.items())},
            **candidates.rows[image_id],
        ))
    return hits


def image_similar(*, user: AbstractBaseUser, image: Image, min_score: float | None, max_results: int | None, page: int,
                  page_size: int) -> SearchResult:
    """More like this: the album's images nearest this one, itself excluded."""
    album = image.album
    return album_search(
        user=user, album=album,
        query=SearchQuery(image_id=image.pk, weights=scoring.Weights(image=1, text=0, negative=0), min_score=min_score,
                          max_results=max_results, page=page, page_size=page_size, exclude_query_image=True),
    )


# A lasso on a large album's map: the mean is taken in PostgreSQL, so the cap is the request's size.
MAX_QUERY_IMAGES = 10_000


class QueryImagesNotIndexedError(ConflictError):
    code = "query_images_not_indexed"

    def __init__(self) -> None:
        super().__init__("None of the chosen images has a vector yet: wait for indexing to finish, or choose others.")


def _check_album_images(album: Album, image_ids: tuple[int, ...]) -> None:
    """Every id an image of this album (the caller is a member): else 404, as for an image_id the
    user cannot see, before any other error."""
    if Image.objects.filter(album=album, pk__in=image_ids).count() != len(set(image_ids)):
        raise ImageNotFoundError()


def _mean_query_vector(album: Album, model: ModelId, image_ids: tuple[int, ...]) -> np.ndarray:
    """The normalized mean of the images' stored vectors under the model (those not indexed yet are
    left out)."""
    mean = album_images_mean_vector(album_id=album.pk, model=model, image_ids=image_ids)
    if mean is None:
        raise QueryImagesNotIndexedError()
    norm = float(np.linalg.norm(mean))
    if norm == 0:
        raise QueryImagesNotIndexedError()
    return (mean / norm).astype(np.float32)


def _query_image_ids(album: Album, query: SearchQuery) -> tuple[int, ...]:
    if query.image_ids:
        return query.image_ids
    if query.image_id is not None:
        return (query.image_id,)
    if query.image_bytes is None:
        return ()
    digest = hashlib.sha256(query.image_bytes).hexdigest()
    return tuple(Image.objects.filter(album=album, sha256=digest).values_list("pk", flat=True))


def _rank(*, album: Album, model: ModelId, vectors: dict[str, np.ndarray], query: SearchQuery, calibrate, exclude,
          max_results: int, min_score: float, linear_text: bool):
    """The album's candidates for the query vectors, scored; `order` ranks those kept."""
    proposers = [vectors[part] for part in ("image", "text") if part in vectors]
    # With calibrated (SigLIP) text the combined score is not linear, and only the parts propose.
    if linear_text and len(vectors) > 1 and (combined := scoring.combined_query(vectors, query.weights)) is not None:
        proposers.append(combined)
    if len(vectors) == 1:  # ranked by the index's own distance (calibration is monotonic)
        k = single_part_depth(model, int(next(iter(vectors.values())).shape[-1]), max_results)
        ef_depth = max(k, single_part_ef_depth(max_results, graph_rows=album_graph_rows(album_id=album.pk, model=model)))
    else:
        k = ef_depth = candidate_count(max_results)
    candidates = search_candidates(
        album_id=album.pk, model=model, queries=vectors, k=k, ef_depth=ef_depth,
        exclude_image_ids=exclude, proposers=proposers, only=query.label,
    )
    order, scores, parts = _order(candidates, query, calibrate=calibrate, min_score=min_score, max_results=max_results)
    return candidates, order, scores, parts


def _order(candidates: Candidates, query: SearchQuery, *, calibrate, min_score: float, max_results: int):
    if not len(candidates.image_ids):
        return np.zeros(0, dtype=np.int64), np.zeros(0), {}
    scores, parts = scoring.combine(candidates.cosines, query.weights, calibrate=calibrate)
    order = scoring.rank(scores, candidates.image_ids, min_score=min_score, max_results=max_results)
    return order, scores, parts


def _region_search_once(*, user: AbstractBaseUser, album: Album, query: SearchQuery) -> tuple[SearchResult, bool]:
    """A box on the query image against every stored region token of the album: images ranked by
    their best-matching region (max-sim), each result naming the cell that matched; also whether
    any region was a candidate."""
    started = time.perf_counter()
    if query.image_id is not None and not image_visible_to(user=user, image_id=query.image_id):
        raise ImageNotFoundError()
    model = _album_model(album)
    if query.image_bytes is None and query.image_id is None:
        raise ApplicationError("A box query needs a query image (image, image_base64 or image_id).", code="box_needs_image")
    if query.text.strip() or query.negative_text.strip():
        raise ApplicationError("A box query matches image regions only: leave text and negative_text empty.",
                               code="box_with_text")
    if model.pooling != REGIONS:
        raise ApplicationError(
            "This album's vectors have no region tokens: set its pooling to 'regions' (a dense backbone) and let it "
            "re-index, then search with a box.",
            code="regions_not_indexed",
        )
    image_bytes = query.image_bytes if query.image_bytes is not None else _stored_query_image(query.image_id)
    encoded = encode_query(model=model, texts={}, image_bytes=image_bytes, ensemble=False, box=list(query.box))
    encoded_at = time.perf_counter()
    min_score, max_results = _limits(album, query, model.spec)
    matches = region_matches(album_id=album.pk, model=model, query=encoded.vectors["region"], limit=max_results,
                             only=query.label)
    keep = np.flatnonzero(matches.cosines >= min_score)
    _, cols = model.region_grid
    start = (query.page - 1) * query.page_size
    hits = []
    for index in keep[start : start + query.page_size]:
        image_id, cell = int(matches.image_ids[index]), int(matches.cells[index])
        cosine = round(float(matches.cosines[index]), 4)
        hits.append(SearchHit(image_id=image_id, score=cosine, cosines={"region": cosine},
                              region={"cell": cell, "row": cell // cols, "col": cell % cols}, **matches.rows[image_id]))
    result = _result(album=album, model=model, query=query, min_score=min_score, max_results=max_results,
                     count=int(len(keep)), hits=hits, times=(started, encoded_at, time.perf_counter()),
                     region_grid=model.region_grid)
    return result, len(matches.image_ids) > 0
