"""Search endpoints: combined search, more-like-this, near-duplicates."""

import base64
import binascii
import io
import json

from django.conf import settings
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from albums.hooks import LabelState
from albums.imaging import ImageRejected, probe_image
from albums.api.serializers import ImageLabelSerializer
from albums.models import ImageMask
from albums.roles import Role
from albums.selectors import album_get_for_user, image_get_for_user
from config.cpu_slots import SearchSlotsMixin
from config.errors import ApplicationError, NotFoundError, PayloadTooLargeError
from config.heap import release_serializer
from config.request_limits import carries_query_image, query_image_body_limit
from config.serializer_fields import Base64Field
from config.throttles import RenderRateThrottle, SearchRateThrottle
from encoders.pooling import MASKED
from config.params import MAX_ID
from search import duplicates, masks, scoring, services
from search.hooks import LabelRestriction, label_restriction
from search.query_encoding import query_admission
from workers.api.views import JobSerializer

MAX_QUERY_TEXT = 1000


def within_search_depth(value: int | None) -> None:
    """How many results one search may rank: every one is a candidate fetched and scored."""
    if value is not None and value > settings.LOUPE_MAX_SEARCH_RESULTS:
        raise serializers.ValidationError(f"At most {settings.LOUPE_MAX_SEARCH_RESULTS} results per search.")


class SearchLabelSerializer(serializers.Serializer):
    support_set = serializers.IntegerField(min_value=1, max_value=MAX_ID, help_text="a support set of this album")
    label = serializers.CharField(max_length=100, help_text="one of its classes")
    states = serializers.ListField(child=serializers.ChoiceField(choices=LabelState.choices), required=False, min_length=1,
                                   help_text="default: predicted, accepted, corrected (not rejected)")


@extend_schema_field(SearchLabelSerializer)
class SearchLabelField(serializers.Field):
    """A SearchLabelSerializer object; a multipart form (the search page's) sends it as one JSON text."""

    def to_internal_value(self, data):
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError("Not JSON: send {\"support_set\": id, \"label\": \"…\"}.") from None
        body = SearchLabelSerializer(data=data)
        body.is_valid(raise_exception=True)
        return body.validated_data

    def to_representation(self, value):
        return value


class SearchRequestSerializer(serializers.Serializer):
    text = serializers.CharField(required=False, allow_blank=True, max_length=MAX_QUERY_TEXT, default="")
    negative_text = serializers.CharField(required=False, allow_blank=True, max_length=MAX_QUERY_TEXT, default="")
    image = serializers.FileField(required=False, help_text="a query image (multipart)")
    image_base64 = Base64Field(required=False, help_text="a query image, base64-encoded")
    image_id = serializers.IntegerField(required=False, min_value=1, help_text="an image you can see, as the query image")
    image_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1, max_value=2**63 - 1), required=False, min_length=1,
        max_length=services.MAX_QUERY_IMAGES,
        help_text="images of this album (a selection on the map): the normalized mean of their vectors is the query "
        "image; they are left out of the results unless exclude_query_image is false")
    image_weight = serializers.FloatField(required=False, default=0.5, min_value=0, max_value=100)
    text_weight = serializers.FloatField(required=False, default=0.5, min_value=0, max_value=100)
    negative_weight = serializers.FloatField(required=False, default=0.5, min_value=0, max_value=100)
    min_score = serializers.FloatField(required=False, allow_null=True, min_value=-100, max_value=100, default=None)
    max_results = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None,
                                           validators=[within_search_depth])
    use_query_optimization = serializers.BooleanField(required=False, allow_null=True, default=None)
    exclude_query_image = serializers.BooleanField(
        required=False, allow_null=True, default=None,
        help_text="leave the query image itself out: by image_id, or, for an uploaded image, the album's images "
        "with the same content. Default: false, but true for image_ids")
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)
    box = serializers.ListField(
        child=serializers.FloatField(min_value=0.0, max_value=1.0), min_length=4, max_length=4, required=False,
        help_text="[x0, y0, x1, y1], fractions of the query image's width and height: match this region against the "
        "album's region tokens (albums with pooling 'regions')",
    )
    label = SearchLabelField(required=False, help_text="only images a support set labeled with this class")

    def to_internal_value(self, data):
        # Multipart forms carry the box as one "x0,y0,x1,y1" string.
        if hasattr(data, "getlist") and isinstance(data.get("box"), str):
            data = data.copy()
            data.setlist("box", [part.strip() for part in data.get("box").split(",")])
        return super().to_internal_value(data)

    def validate(self, attrs):
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in sorted(unknown)})
        given = [name for name in ("image", "image_base64", "image_id", "image_ids") if attrs.get(name) not in (None, "")]
        if len(given) > 1:
            raise serializers.ValidationError({"image": [f"Give one query image, not {' and '.join(given)}."]})
        box = attrs.get("box")
        if box is not None and attrs.get("image_ids"):
            raise serializers.ValidationError({"box": ["A box is matched on one query image, not on image_ids."]})
        if box is not None and not (box[0] < box[2] and box[1] < box[3]):
            raise serializers.ValidationError({"box": ["A box is [x0, y0, x1, y1] with x0 < x1 and y0 < y1."]})
        return attrs


class SearchResultSerializer(serializers.Serializer):
    image_id = serializers.IntegerField()
    score = serializers.FloatField()
    cosines = serializers.DictField(child=serializers.FloatField())
    original_name = serializers.CharField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    taken_at = serializers.DateTimeField(allow_null=True)
    thumbnail_url = serializers.CharField()
    file_url = serializers.CharField()
    region = serializers.DictField(child=serializers.IntegerField(), required=False,
                                   help_text="box queries: the stored region (cell, row, col) that matched best")
    labels = ImageLabelSerializer(many=True, help_text="the labels the album's support sets gave it")


class SearchResponseSerializer(serializers.Serializer):
    model_id = serializers.CharField()
    rebuilding = serializers.BooleanField()
    min_score = serializers.FloatField()
    max_results = serializers.IntegerField()
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    page_size = serializers.IntegerField()
    results = SearchResultSerializer(many=True)
    timings_ms = serializers.DictField(child=serializers.FloatField())
    region_grid = serializers.DictField(child=serializers.IntegerField(), required=False)


def query_image_bytes(data: dict, *, verify_data: bool = True) -> bytes | None:
    """The query image's bytes, checked as uploads are. `verify_data=False` checks the header only,
    for callers whose next step decodes the image and reports damaged data itself (search)."""
    limit = settings.LOUPE_MAX_QUERY_BYTES
    if data.get("image") is not None:
        if data["image"].size > limit:
            raise _query_image_too_large(limit)
        raw = data["image"].read()
    elif data.get("image_base64"):
        text = data["image_base64"]
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        if len(text) // 4 * 3 > limit + 2:  # refused before decoding: base64 is 4 characters per 3 bytes
            raise _query_image_too_large(limit)
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ApplicationError("image_base64 is not valid base64.", code="invalid_base64") from None
    else:
        return None
    try:
        probe_image(io.BytesIO(raw), decode=verify_data)
    except ImageRejected as exc:
        raise ApplicationError(f"The query image cannot be used: {exc.reason}", code=exc.code) from None
    if len(raw) > limit:
        raise _query_image_too_large(limit)
    return raw


def _query_image_too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"The query image is larger than {limit} bytes.", code="query_image_too_large",
                                extra={"max_bytes": limit})


_ID_PLACEHOLDER = 987654321


def _url_template(name: str) -> str:
    """The URL of `name` for any image id, reversed once: reversing 100 URLs per page cost ~2 ms."""
    return reverse(name, args=[_ID_PLACEHOLDER]).replace(str(_ID_PLACEHOLDER), "{}")


def _label_restriction(album, wanted: dict | None) -> LabelRestriction | None:
    if wanted is None:
        return None
    return label_restriction(album_id=album.pk, support_set_id=wanted["support_set"], label=wanted["label"],
                             states=tuple(wanted.get("states") or ()))


def search_body(result: services.SearchResult) -> dict:
    """The response body of a search (SearchResponseSerializer's shape, fields in this order), read
    straight off the service's result: a page of 50 through DRF serializer fields cost more than the
    rest of the view."""
    thumbnail, file = _url_template("api:image-thumbnail"), _url_template("api:image-file")
    results = []
    for hit in result.hits:
        row = {"image_id": hit.image_id, "score": hit.score, "cosines": hit.cosines}
        if hit.region is not None:
            row["region"] = hit.region
        row.update(original_name=hit.original_name, width=hit.width, height=hit.height, taken_at=hit.taken_at,
                   thumbnail_url=thumbnail.format(hit.image_id), file_url=file.format(hit.image_id),
                   labels=hit.labels)
        results.append(row)
    body = {"model_id": result.model_id, "rebuilding": result.rebuilding, "min_score": result.min_score,
            "max_results": result.max_results, "count": result.count, "page": result.page, "page_size": result.page_size}
    if result.region_grid is not None:
        body["region_grid"] = {"rows": result.region_grid[0], "cols": result.region_grid[1]}
    body["results"] = results
    body["timings_ms"] = result.timings_ms
    return body


class AlbumSearchApi(SearchSlotsMixin, APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [SearchRateThrottle]
    max_body_bytes = staticmethod(query_image_body_limit)

    @extend_schema(request=SearchRequestSerializer, responses=SearchResponseSerializer)
    def post(self, request, album_id: int):
        """Search by text, by image, or both, minus a negative text; scores combine in score space."""
        album = album_get_for_user(user=request.user, album_id=album_id)
        if carries_query_image(request):
            # Refused before the body is parsed: under a burst, refusals must cost next to nothing
            # (parsing a 600 KB base64 photo to then refuse it halved the throughput of the rest).
            # The unread body is drained after the response (config.request_limits), for keep-alive.
            query_admission().refuse_if_full()
        data = SearchRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        release_serializer(data)
        try:
            weights = scoring.Weights(image=v["image_weight"], text=v["text_weight"], negative=v["negative_weight"])
            query = services.SearchQuery(
                text=v["text"], negative_text=v["negative_text"], image_bytes=query_image_bytes(v, verify_data=False),
                image_id=v.get("image_id"), image_ids=tuple(dict.fromkeys(v.get("image_ids") or ())), weights=weights, min_score=v["min_score"], max_results=v["max_results"],
                use_query_optimization=v["use_query_optimization"], page=v["page"], page_size=v["page_size"],
                exclude_query_image=(bool(v.get("image_ids")) if v["exclude_query_image"] is None
                                     else v["exclude_query_image"]),
                box=tuple(v["box"]) if v.get("box") is not None else None,
                label=_label_restriction(album, v.get("label")),
            )
            result = services.album_search(user=request.user, album=album, query=query)  # checks image_id's access
        except scoring.QueryError as exc:
            raise ApplicationError(exc.message, code=exc.code) from None
        return Response(search_body(result))


class ImageSimilarApi(SearchSlotsMixin, APIView):
    throttle_classes = [SearchRateThrottle]

    @extend_schema(
        parameters=[OpenApiParameter("min_score", float), OpenApiParameter("max_results", int),
                    OpenApiParameter("page", int), OpenApiParameter("page_size", int)],
        responses=SearchResponseSerializer,
    )
    def get(self, request, image_id: int):
        image = image_get_for_user(user=request.user, image_id=image_id)
        params = _SimilarParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        release_serializer(params)
        result = services.image_similar(user=request.user, image=image, **params.validated_data)
        return Response(search_body(result))


class _SimilarParams(serializers.Serializer):
    min_score = serializers.FloatField(required=False, allow_null=True, min_value=-100, max_value=100, default=None)
    max_results = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None,
                                           validators=[within_search_depth])
    page = serializers.IntegerField(required=False, min_value=1, default=1)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=500, default=50)


class _DuplicateParams(serializers.Serializer):
    threshold = serializers.FloatField(required=False, default=0.95, min_value=duplicates.THRESHOLD_MIN, max_value=1.0)


_DUPLICATE_GROUPS = inline_serializer("DuplicateGroups", {
    "threshold": serializers.FloatField(),
    "count": serializers.IntegerField(help_text="groups in this answer"),
    "total": serializers.IntegerField(help_text="groups found; the largest come back first"),
    "truncated": serializers.BooleanField(),
    "pairs": serializers.IntegerField(help_text="image pairs at or above the threshold"),
    "groups": serializers.ListField(child=serializers.JSONField())})


class AlbumDuplicatesApi(APIView):
    throttle_classes = [SearchRateThrottle]  # all pairs of the album's vectors: costlier than a search

    @extend_schema(parameters=[OpenApiParameter("threshold", float, description="cosine, 0.8 to 1, default 0.95")],
                   responses=_DUPLICATE_GROUPS)
    def get(self, request, album_id: int):
        """Near-duplicate groups, answered now for albums of up to LOUPE_DUPLICATES_INLINE_MAX images;
        a larger album is a 409 `album_too_large` with `extra.scan: true`: POST here to scan it on a worker."""
        album = album_get_for_user(user=request.user, album_id=album_id)
        params = _DuplicateParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        return Response(duplicates.album_duplicates(album=album, threshold=params.validated_data["threshold"]).as_body())

    @extend_schema(request=_DuplicateParams, responses={202: JobSerializer, 200: JobSerializer})
    def post(self, request, album_id: int):
        """Scan the album for near-duplicates on a worker: 202 with a new job, or 200 with the scan at
        this threshold already under way. Poll `/api/v1/jobs/{id}/`; its `result` holds the groups."""
        album = album_get_for_user(user=request.user, album_id=album_id)
        params = _DuplicateParams(data=request.data)
        params.is_valid(raise_exception=True)
        job, created = duplicates.duplicate_scan_start(album=album, user=request.user,
                                                       threshold=params.validated_data["threshold"])
        return Response(JobSerializer(job).data, status=202 if created else 200)


class MaskNotFoundError(NotFoundError):
    code = "mask_not_found"


class _MaskUpload(serializers.Serializer):
    mask = serializers.FileField(help_text="white (or opaque) = foreground; any size, the image's upright orientation")


class ImageMaskApi(APIView):
    """An image's uploaded foreground mask, used by albums with `masked` pooling (it wins over the
    image's alpha channel). Setting or removing it re-embeds the image."""

    parser_classes = [MultiPartParser, FormParser]
    max_body_bytes = staticmethod(query_image_body_limit)
    throttle_classes = [RenderRateThrottle]

    @extend_schema(responses={(200, "image/png"): OpenApiTypes.BINARY})
    def get(self, request, image_id: int):
        image = image_get_for_user(user=request.user, image_id=image_id)
        mask = ImageMask.objects.filter(image=image).exclude(file="").first()
        if mask is None:
            raise MaskNotFoundError("This image has no uploaded mask.")
        try:
            fp = mask.file.open("rb")
        except FileNotFoundError:
            raise MaskNotFoundError("This image's mask file is missing from storage; upload the mask again.") from None
        response = FileResponse(fp, content_type="image/png")
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response

    @extend_schema(request=_MaskUpload, responses={200: None})
    def put(self, request, image_id: int):
        image = image_get_for_user(user=request.user, image_id=image_id, min_role=Role.EDITOR)
        data = _MaskUpload(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["mask"]
        if upload.size > settings.LOUPE_MAX_QUERY_BYTES:
            raise PayloadTooLargeError(f"The mask is larger than {settings.LOUPE_MAX_QUERY_BYTES} bytes.",
                                       code="mask_too_large", extra={"max_bytes": settings.LOUPE_MAX_QUERY_BYTES})
        mask = masks.image_mask_set(image=image, data=upload.read())
        return Response({"image_id": image.pk, "updated_at": mask.updated_at, "reindexing": image.album.pooling == MASKED})

    @extend_schema(responses={204: None})
    def delete(self, request, image_id: int):
        image = image_get_for_user(user=request.user, image_id=image_id, min_role=Role.EDITOR)
        masks.image_mask_delete(image=image)
        return Response(status=204)
