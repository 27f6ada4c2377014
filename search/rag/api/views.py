"""Support sets, classes, example images and classification: parse, call one service, serialize.

Every object is reached through the album membership of the caller (search/rag/selectors.py):
viewers read and classify, editors change, and anyone else gets the same 404 as a missing id.
"""

from io import BytesIO

from django.http import HttpResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from albums.roles import Role
from albums.selectors import album_get_for_user, image_get_for_user
from albums.storage import image_file_open
from albums.upload_handlers import GuardedUploadMixin
from config.errors import ApplicationError
from config.pagination import LoupePagination, paginate
from config.params import parse_id, parse_int
from config.request_limits import query_image_body_limit
from config.throttles import RenderRateThrottle, SearchRateThrottle, UploadRateThrottle
from search.api.views import query_image_bytes
from search.rag import selectors, services
from search.rag.api.serializers import (
    ClassifyRequestSerializer,
    SupportAddResponseSerializer,
    SupportClassSerializer,
    SupportClassWriteSerializer,
    SupportImageSerializer,
    SupportSetDetailSerializer,
    SupportSetListItemSerializer,
    SupportSetWriteSerializer,
)
from search.rag.classify import classify
from search.rag.crops import crop_patch


def _detail(support_set) -> dict:
    context = {
        "classes": selectors.support_classes_with_images(support_set=support_set),
        "status": selectors.support_set_status(support_set=support_set),
    }
    return SupportSetDetailSerializer(support_set, context=context).data


def _valid(serializer_class, data, **kwargs):
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class SupportSetListApi(APIView):
    pagination_class = LoupePagination

    @extend_schema(parameters=[OpenApiParameter("album", int)], responses=SupportSetListItemSerializer(many=True))
    def get(self, request):
        album_id = request.query_params.get("album")
        if album_id is not None:
            album_id = parse_id(album_id, name="album", code="invalid_filter")
            album_get_for_user(user=request.user, album_id=album_id)  # 404 for albums you cannot see
        sets = selectors.support_set_list_for_user(user=request.user, album_id=album_id)
        return paginate(request, sets, SupportSetListItemSerializer, view=self)

    @extend_schema(request=SupportSetWriteSerializer, responses={201: SupportSetDetailSerializer})
    def post(self, request):
        data = _valid(SupportSetWriteSerializer, request.data)
        if "album" not in data or "name" not in data:
            raise ApplicationError("A support set needs an album and a name.", code="invalid")
        album = album_get_for_user(user=request.user, album_id=data.pop("album"), min_role=Role.EDITOR)
        support_set = services.support_set_create(album=album, user=request.user, **data)
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set.pk)
        return Response(_detail(support_set), status=status.HTTP_201_CREATED)


class SupportSetDetailApi(APIView):
    @extend_schema(responses=SupportSetDetailSerializer)
    def get(self, request, support_set_id: int):
        return Response(_detail(selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id)))

    @extend_schema(request=SupportSetWriteSerializer, responses=SupportSetDetailSerializer)
    def patch(self, request, support_set_id: int):
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id, min_role=Role.EDITOR)
        data = _valid(SupportSetWriteSerializer, request.data)
        if "album" in data:
            raise ApplicationError("A support set cannot move to another album.", code="invalid")
        services.support_set_update(support_set=support_set, **data)
        return Response(_detail(selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id)))

    @extend_schema(responses={204: None})
    def delete(self, request, support_set_id: int):
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id, min_role=Role.EDITOR)
        services.support_set_delete(support_set=support_set)
        return Response(status=status.HTTP_204_NO_CONTENT)


class SupportClassListApi(APIView):
    @extend_schema(responses=SupportClassSerializer(many=True))
    def get(self, request, support_set_id: int):
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id)
        classes = selectors.support_classes_with_images(support_set=support_set)
        return Response(SupportClassSerializer(classes, many=True).data)

    @extend_schema(request=SupportClassWriteSerializer, responses={201: SupportClassSerializer})
    def post(self, request, support_set_id: int):
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id, min_role=Role.EDITOR)
        data = _valid(SupportClassWriteSerializer, request.data)
        support_class = services.support_class_create(support_set=support_set, label=data.get("label", ""))
        return Response(SupportClassSerializer(support_class).data, status=status.HTTP_201_CREATED)


class SupportClassDetailApi(APIView):
    @extend_schema(responses=SupportClassSerializer)
    def get(self, request, class_id: int):
        return Response(SupportClassSerializer(selectors.support_class_get_for_user(user=request.user, class_id=class_id)).data)

    @extend_schema(request=SupportClassWriteSerializer, responses=SupportClassSerializer)
    def patch(self, request, class_id: int):
        support_class = selectors.support_class_get_for_user(user=request.user, class_id=class_id, min_role=Role.EDITOR)
        data = _valid(SupportClassWriteSerializer, request.data)
        services.support_class_update(support_class=support_class, **data)
        return Response(SupportClassSerializer(support_class).data)

    @extend_schema(responses={204: None})
    def delete(self, request, class_id: int):
        support_class = selectors.support_class_get_for_user(user=request.user, class_id=class_id, min_role=Role.EDITOR)
        services.support_class_delete(support_class=support_class)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _image_ids(request) -> list[int]:
    """Ids from repeated form fields or a JSON list, each item an id or a string of ids split on commas
    and spaces ("3, 4 5"); null, objects, booleans and non-ASCII digits are a 400."""
    if hasattr(request.data, "getlist"):
        raw = request.data.getlist("image_ids")
    elif isinstance(request.data, dict):
        raw = request.data.get("image_ids", [])
    else:
        raise ApplicationError("The body must be a JSON object with 'image_ids', or a multipart form.", code="invalid")
    if not isinstance(raw, list):
        raw = [raw]
    parts = [part for value in raw for part in (value.replace(",", " ").split() if isinstance(value, str) else [value])]
    return [parse_id(part, name="image_ids") for part in parts]


class SupportClassImageListApi(GuardedUploadMixin, APIView):
    pagination_class = LoupePagination
    parser_classes = [MultiPartParser, FormParser, JSONParser]
    throttle_classes = [UploadRateThrottle]

    @extend_schema(responses=SupportImageSerializer(many=True))
    def get(self, request, class_id: int):
        support_class = selectors.support_class_get_for_user(user=request.user, class_id=class_id)
        images = support_class.images.select_related("image").order_by("created_at", "id")
        return paginate(request, images, SupportImageSerializer, view=self)

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "SupportImageAdd",
                {"files": serializers.ListField(child=serializers.FileField(), required=False),
                 "image_ids": serializers.ListField(child=serializers.IntegerField(), required=False)},
            )
        },
        responses={201: SupportAddResponseSerializer, 200: SupportAddResponseSerializer},
    )
    def post(self, request, class_id: int):
        """Add examples: upload files (they also go into the album) and/or pick album images by id."""
        support_class = selectors.support_class_get_for_user(user=request.user, class_id=class_id, min_role=Role.EDITOR)
        uploads, oversized = self.uploaded_files(request) if request.content_type.startswith("multipart/") else ([], [])
        image_ids = _image_ids(request)
        if not uploads and not oversized and not image_ids:
            raise ApplicationError("Nothing to add: send files (multipart field 'files') or 'image_ids'.", code="no_files")
        summary = services.SupportAddSummary(tuple(services.support_images_add(
            support_class=support_class,
            user=request.user,
            files=[(f.name, f) for f in uploads],
            image_ids=image_ids,
            oversized=oversized,
        )))
        return Response(SupportAddResponseSerializer(summary).data,
                        status=status.HTTP_201_CREATED if summary.added else status.HTTP_200_OK)


class SupportImageDetailApi(APIView):
    @extend_schema(responses=SupportImageSerializer)
    def get(self, request, support_image_id: int):
        found = selectors.support_image_get_for_user(user=request.user, support_image_id=support_image_id)
        return Response(SupportImageSerializer(found).data)

    @extend_schema(responses={204: None})
    def delete(self, request, support_image_id: int):
        found = selectors.support_image_get_for_user(user=request.user, support_image_id=support_image_id, min_role=Role.EDITOR)
        services.support_image_remove(support_image=found)
        return Response(status=status.HTTP_204_NO_CONTENT)


CROP_SIZE_DEFAULT, CROP_SIZE_MAX = 256, 1024


class SupportImageCropApi(APIView):
    throttle_classes = [RenderRateThrottle]  # each crop decodes the support photo

    @extend_schema(
        parameters=[
            OpenApiParameter("box", str, required=True, description="x0,y0,x1,y1 in the original image's upright pixels"),
            OpenApiParameter("size", int, description=f"longest side of the crop returned (16–{CROP_SIZE_MAX}, "
                                                      f"default {CROP_SIZE_DEFAULT}); never upscaled"),
        ],
        responses={(200, "image/webp"): OpenApiTypes.BINARY},
    )
    def get(self, request, support_image_id: int):
        """A patch of a support image (evidence), as WebP, at most `size` pixels a side."""

        found = selectors.support_image_get_for_user(user=request.user, support_image_id=support_image_id)
        size = parse_int(request.query_params.get("size", CROP_SIZE_DEFAULT), name="size", minimum=16,
                         maximum=CROP_SIZE_MAX, code="invalid_size")
        with image_file_open(image=found.image) as fp:
            picture = crop_patch(fp, request.query_params.get("box", ""), size=size)
        out = BytesIO()
        picture.save(out, format="WEBP", quality=90)
        response = HttpResponse(out.getvalue(), content_type="image/webp")
        response["Cache-Control"] = "private, max-age=3600"
        response["X-Content-Type-Options"] = "nosniff"
        return response


class SupportSetClassifyApi(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [SearchRateThrottle]  # a query encoding and a retrieval, like a search
    max_body_bytes = staticmethod(query_image_body_limit)

    @extend_schema(request=ClassifyRequestSerializer, responses=OpenApiTypes.OBJECT)
    def post(self, request, support_set_id: int):
        """Classify a query image: normalized class scores, labeled evidence, and the decision."""
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id)
        request_data = ClassifyRequestSerializer(data=request.data)
        request_data.is_valid(raise_exception=True)
        v = request_data.validated_data
        if v.get("image_id") is not None:
            image = image_get_for_user(user=request.user, image_id=v["image_id"])
            with image_file_open(image=image) as fp:
                image_bytes = fp.read()
        else:
            image_bytes = query_image_bytes(v)
        body = classify(support_set=support_set, image_bytes=image_bytes, params=request_data.params())
        return Response(_with_crop_urls(body))


def _with_crop_urls(body: dict) -> dict:
    for item in body["evidence"]:
        box = ",".join(str(v) for v in item["box"])
        item["crop_url"] = f"{reverse('api:support-image-crop', args=[item['support_image_id']])}?box={box}"
        item["file_url"] = reverse("api:image-file", args=[item["image_id"]])
    return body

