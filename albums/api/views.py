"""Album, membership and image endpoints: parse input, call one service or selector, serialize."""

from io import BytesIO

from django.conf import settings
from django.core.cache import cache
from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from albums import selectors, services
from albums.imaging import make_thumbnail
from albums.api.serializers import (
    AlbumDetailSerializer,
    AlbumListItemSerializer,
    AlbumSerializer,
    AlbumWriteSerializer,
    ImageSerializer,
    MemberSerializer,
    MemberWriteSerializer,
    UploadResponseSerializer,
)
from albums.errors import ImageFileMissingError
from albums.models import Image
from albums.roles import Role
from albums.storage import image_file_open
from albums.upload_handlers import GuardedUploadMixin
from config.errors import ApplicationError
from config.throttles import RenderRateThrottle, UploadRateThrottle
from config.pagination import LoupePagination, paginate


class AlbumListApi(APIView):
    pagination_class = LoupePagination

    @extend_schema(responses=AlbumListItemSerializer(many=True))
    def get(self, request):
        return paginate(request, selectors.album_list_for_user(user=request.user), AlbumListItemSerializer, view=self)

    @extend_schema(request=AlbumWriteSerializer, responses={201: AlbumSerializer})
    def post(self, request):
        data = AlbumWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        album = services.album_create(owner=request.user, **data.validated_data)
        album = selectors.album_get_for_user(user=request.user, album_id=album.pk)
        return Response(AlbumSerializer(album).data, status=status.HTTP_201_CREATED)


class AlbumDetailApi(APIView):
    @extend_schema(responses=AlbumDetailSerializer)
    def get(self, request, album_id: int):
        album = selectors.album_get_for_user(user=request.user, album_id=album_id)
        return Response(AlbumDetailSerializer(album).data)

    @extend_schema(request=AlbumWriteSerializer, responses=AlbumDetailSerializer)
    def patch(self, request, album_id: int):
        album = selectors.album_get_for_user(user=request.user, album_id=album_id, min_role=Role.OWNER)
        data = AlbumWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        services.album_update(album=album, user=request.user, **data.validated_data)
        album = selectors.album_get_for_user(user=request.user, album_id=album_id)
        return Response(AlbumDetailSerializer(album).data)

    @extend_schema(responses={204: None})
    def delete(self, request, album_id: int):
        album = selectors.album_get_for_user(user=request.user, album_id=album_id, min_role=Role.OWNER)
        services.album_delete(album=album)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlbumMemberListApi(APIView):
    @extend_schema(responses=MemberSerializer(many=True))
    def get(self, request, album_id: int):
        album = selectors.album_get_for_user(user=request.user, album_id=album_id)
        return Response(MemberSerializer(selectors.membership_list(album=album), many=True).data)

    @extend_schema(request=MemberWriteSerializer, responses={201: MemberSerializer})
    def post(self, request, album_id: int):
        album = selectors.album_get_for_user(user=request.user, album_id=album_id, min_role=Role.OWNER)
        data = MemberWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = services.album_member_add(album=album, **data.validated_data)
        return Response(MemberSerializer(membership).data, status=status.HTTP_201_CREATED)


class AlbumMemberDetailApi(APIView):
    @extend_schema(responses={204: None})
    def delete(self, request, album_id: int, user_id: int):
        # Anyone may leave an album; only owners remove others.
        min_role = Role.VIEWER if user_id == request.user.pk else Role.OWNER
        album = selectors.album_get_for_user(user=request.user, album_id=album_id, min_role=min_role)
        services.album_member_remove(album=album, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlbumImageListApi(GuardedUploadMixin, APIView):
    pagination_class = LoupePagination
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [UploadRateThrottle]

    @extend_schema(
        parameters=[OpenApiParameter("status", OpenApiTypes.STR, enum=Image.Status.values)],
        responses=ImageSerializer(many=True),
    )
    def get(self, request, album_id: int):
        album = selectors.album_get_for_user(user=request.user, album_id=album_id)
        status_filter = request.query_params.get("status")
        if status_filter and status_filter not in Image.Status.values:
            raise ApplicationError(
                f"Unknown status {status_filter!r}; use one of {', '.join(Image.Status.values)}.", code="invalid_filter"
            )
        return paginate(request, selectors.image_list(album=album, status=status_filter), ImageSerializer, view=self)

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "ImageUpload", {"files": serializers.ListField(child=serializers.FileField())}
            )
        },
        responses={201: UploadResponseSerializer, 200: UploadResponseSerializer},
    )
    def post(self, request, album_id: int):
        album = selectors.album_get_for_user(user=request.user, album_id=album_id, min_role=Role.EDITOR)
        uploads, oversized = self.uploaded_files(request)
        if not uploads and not oversized:
            raise ApplicationError("No files in the request; send them as multipart field 'files'.", code="no_files")
        summary = services.UploadSummary(tuple(services.image_upload_many(
            album=album, user=request.user, files=[(f.name, f) for f in uploads], oversized=oversized
        )))
        return Response(UploadResponseSerializer(summary).data,
                        status=status.HTTP_201_CREATED if summary.created else status.HTTP_200_OK)


class ImageDetailApi(APIView):
    @extend_schema(responses=ImageSerializer)
    def get(self, request, image_id: int):
        return Response(ImageSerializer(selectors.image_get_for_user(user=request.user, image_id=image_id)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, image_id: int):
        image = selectors.image_get_for_user(user=request.user, image_id=image_id, min_role=Role.EDITOR)
        services.image_delete(image=image)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _private_file_response(fp, *, content_type: str, filename: str | None = None) -> FileResponse:
    response = FileResponse(fp, content_type=content_type, filename=filename or "")
    if filename:
        response["Content-Disposition"] = response["Content-Disposition"].replace("attachment", "inline")
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


class ImageFileApi(APIView):
    @extend_schema(responses={(200, "image/*"): OpenApiTypes.BINARY})
    def get(self, request, image_id: int):
        image = selectors.image_get_for_user(user=request.user, image_id=image_id)
        return _private_file_response(image_file_open(image=image), content_type=image.mime, filename=image.original_name)


def pending_thumbnail_key(image) -> str:
    """By content: the same photo makes the same thumbnail, whichever album holds it."""
    return f"thumbnail:{image.sha256}:{settings.LOUPE_THUMBNAIL_SIZE}"


class ImageThumbnailApi(APIView):
    throttle_classes = [RenderRateThrottle]

    @extend_schema(responses={(200, "image/webp"): OpenApiTypes.BINARY})
    def get(self, request, image_id: int):
        image = selectors.image_get_for_user(user=request.user, image_id=image_id)
        if image.thumbnail:
            try:
                return _private_file_response(image_file_open(image=image, field="thumbnail"), content_type="image/webp")
            except ImageFileMissingError:
                pass  # rendered again from the original below
        # Not made yet (the worker is behind) or lost: render one now rather than show a broken image,
        # and keep it in the shared cache, so a grid that asks again does not decode the photo again.
        # Not stored on the image: an empty thumbnail is how the recovery sweep finds metadata to redo.
        key = pending_thumbnail_key(image)
        with image_file_open(image=image) as fp:  # first: a photo missing from storage is a 404, cached or not
            data = cache.get(key)
            if data is None:
                data = make_thumbnail(fp, size=settings.LOUPE_THUMBNAIL_SIZE)
                cache.set(key, data, timeout=settings.LOUPE_PENDING_THUMBNAIL_SECONDS)
        response = _private_file_response(BytesIO(data), content_type="image/webp")
        response["Cache-Control"] = "private, no-store"
        return response
