"""Album, membership and image endpoints: parse input, call one service or selector, serialize."""

from io import BytesIO

from django.conf import settings
from django.core.cache import cache
from django.http import FileResponse, QueryDict, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from albums import downloads, hooks, selectors, services
from albums.imaging import make_thumbnail
from albums.api.serializers import (
    AlbumDetailSerializer,
    AlbumListItemSerializer,
    AlbumSerializer,
    AlbumWriteSerializer,
    BulkDeleteResponseSerializer,
    CopyResponseSerializer,
    ImageCopySerializer,
    ImageIdsSerializer,
    ImageSerializer,
    MemberSerializer,
    MemberWriteSerializer,
    UploadResponseSerializer,
)
from albums.errors import ImageFileMissingError, ImagesNotFoundError
from albums.models import Image
from albums.roles import Role
from albums.storage import image_file_open
from albums.upload_handlers import GuardedUploadMixin
from config.errors import ApplicationError
from config.throttles import BulkRateThrottle, RenderRateThrottle, UploadRateThrottle
from config.pagination import LoupePagination, paginate
from config.params import parse_id, parse_id_list
from config.request_limits import id_list_body_limit


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
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=Image.Status.values),
            OpenApiParameter("sort", OpenApiTypes.STR, enum=list(selectors.IMAGE_SORTS), default=selectors.DEFAULT_IMAGE_SORT,
                             description="added: upload time; taken: EXIF capture time (images without one last); "
                                         "a leading minus is newest first; ties by id"),
            OpenApiParameter("support_set", OpenApiTypes.INT, description="only images labeled by this support set of the album"),
            OpenApiParameter("label", OpenApiTypes.STR, description="only images labeled with this class"),
            OpenApiParameter("label_state", OpenApiTypes.STR, enum=["predicted", "accepted", "corrected", "rejected"],
                             description="only images with a label in this state"),
            OpenApiParameter("margin_below", OpenApiTypes.FLOAT,
                             description="only images with a label whose margin (top score − second) is below, 0 to 1"),
        ],
        responses=ImageSerializer(many=True),
    )
    def get(self, request, album_id: int):
        album = selectors.album_get_for_user(user=request.user, album_id=album_id)
        status_filter = request.query_params.get("status")
        if status_filter and status_filter not in Image.Status.values:
            raise ApplicationError(
                f"Unknown status {status_filter!r}; use one of {', '.join(Image.Status.values)}.", code="invalid_filter"
            )
        sort = request.query_params.get("sort") or selectors.DEFAULT_IMAGE_SORT
        images = selectors.image_list(album=album, status=status_filter, sort=sort)
        images = hooks.images_labeled(album=album, images=images, wanted=hooks.LabelFilter.from_params(request.query_params))
        return paginate(request, images, ImageSerializer, view=self,
                        context=lambda rows: ImageSerializer.context_for(album=album, images=rows))

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


def _body_field(request, name: str, *, many: bool = False):
    """A field of a JSON object or of a form (repeated, for `many`); None or [] when absent."""
    data = request.data
    if isinstance(data, QueryDict):
        return data.getlist(name) if many else data.get(name)
    return data.get(name) if isinstance(data, dict) else None


def _form_or_json(serializer) -> dict:
    return {media: serializer for media in ("application/json", "application/x-www-form-urlencoded", "multipart/form-data")}


def _image_ids(request) -> list[int]:
    return parse_id_list(_body_field(request, "image_ids", many=True), name="image_ids",
                         maximum=settings.LOUPE_MAX_BULK_IMAGES)


class _BulkImagesApi(APIView):
    """A POST naming up to LOUPE_MAX_BULK_IMAGES images of the album, as JSON or as a form (a plain
    HTML form or FormData: repeated `image_ids` fields; signed in by session, with its CSRF token like
    any session write)."""

    parser_classes = [JSONParser, FormParser, MultiPartParser]
    throttle_classes = [BulkRateThrottle]
    max_body_bytes = staticmethod(id_list_body_limit)


class AlbumImageBulkDeleteApi(_BulkImagesApi):
    @extend_schema(request=_form_or_json(ImageIdsSerializer),
                   responses=BulkDeleteResponseSerializer)
    def post(self, request, album_id: int):
        """Delete these images of the album (editors), as deleting each one does: files, vectors, masks.
        Ids that are not images of this album are listed in `missing` and nothing else happens to them."""
        album = selectors.album_get_for_user(user=request.user, album_id=album_id, min_role=Role.EDITOR)
        result = services.image_delete_many(album=album, image_ids=_image_ids(request))
        return Response({"deleted": result.deleted, "missing": result.missing})


class AlbumImageDownloadApi(_BulkImagesApi):
    @extend_schema(request=_form_or_json(ImageIdsSerializer),
                   responses={(200, "application/zip"): OpenApiTypes.BINARY})
    def post(self, request, album_id: int):
        """The original files of these images as one ZIP, streamed (members stored under their
        original names, repeats numbered: `a.jpg`, `a (2).jpg`). Ids that are not images of the album
        are left out; when none is, 404."""
        album = selectors.album_get_for_user(user=request.user, album_id=album_id)
        images, missing = selectors.image_list_by_ids(album=album, image_ids=_image_ids(request))
        if not images:
            raise ImagesNotFoundError()
        for image in images:  # before the first byte goes out: a missing file is a clear 404, not a cut-off zip
            if not image.file or not image.file.storage.exists(image.file.name):
                raise ImageFileMissingError(image_id=image.pk, name=image.file.name)
        names = downloads.member_names(image.original_name for image in images)
        members = [
            downloads.ZipMember(name=name, size=image.bytes, modified=image.taken_at or image.created_at,
                                open=lambda image=image: image_file_open(image=image))
            for name, image in zip(names, images)
        ]
        response = StreamingHttpResponse(downloads.zip_stream(members), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{downloads.archive_name(album.name, album_id=album.pk)}"'
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        response["X-Loupe-Images"] = str(len(images))
        response["X-Loupe-Missing"] = str(len(missing))
        return response


class AlbumImageCopyApi(_BulkImagesApi):
    @extend_schema(request=_form_or_json(ImageCopySerializer),
                   responses={201: CopyResponseSerializer})
    def post(self, request, album_id: int):
        """Copy these images into another album you can edit (a viewer of this one may copy out). The
        copies are new images of the target, indexed with its encoder; bytes it holds already are skipped."""
        source = selectors.album_get_for_user(user=request.user, album_id=album_id)
        image_ids = _image_ids(request)
        target_id = parse_id(_body_field(request, "target_album_id"), name="target_album_id")
        target = selectors.album_get_for_user(user=request.user, album_id=target_id, min_role=Role.EDITOR)
        result = services.image_copy_many(source=source, target=target, user=request.user, image_ids=image_ids)
        return Response({"copied": len(result.copied), "skipped_duplicates": result.skipped_duplicates,
                         "missing": result.missing}, status=status.HTTP_201_CREATED)


class ImageDetailApi(APIView):
    @extend_schema(responses=ImageSerializer)
    def get(self, request, image_id: int):
        image = selectors.image_get_for_user(user=request.user, image_id=image_id)
        return Response(ImageSerializer(image, context=ImageSerializer.context_for(album=image.album, images=[image])).data)

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
