from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from albums.roles import Role
from albums.selectors import album_get_for_user
from config.errors import PermissionDeniedError
from config.pagination import LoupePagination, paginate
from workers import indexing
from workers.models import IndexJob
from workers.selectors import job_get_for_user, job_list_for_album
from workers.services import album_retry_failed, folder_import_start


class JobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)
    rate = serializers.FloatField(read_only=True, allow_null=True, help_text="images per second")
    eta_seconds = serializers.FloatField(read_only=True, allow_null=True)
    stale = serializers.BooleanField(source="is_stale", read_only=True,
                                     help_text="active, but no sign of life for LOUPE_JOB_STALE_SECONDS")

    class Meta:
        model = IndexJob
        fields = [
            "id", "album", "kind", "status", "generation", "model_id", "total", "done", "failed", "progress", "rate",
            "eta_seconds", "stale", "message", "created_at", "started_at", "finished_at", "heartbeat_at",
            "params", "result", "dismissed_at",
        ]


class FailedRebuildSerializer(serializers.Serializer):
    """A rebuild that failed: the album still searches its old vectors until a rebuild succeeds."""

    job_id = serializers.IntegerField(source="pk")
    encoder_spec = serializers.SerializerMethodField(help_text="the encoder the album was to be rebuilt for")
    message = serializers.CharField(help_text="why it failed")
    finished_at = serializers.DateTimeField(allow_null=True)

    def get_encoder_spec(self, job: IndexJob) -> str:
        # Rebuilds record their encoder (workers.indexing.index_job_start); older rows had the album's.
        return (job.params or {}).get("encoder_spec") or self.context["album"].encoder_spec


class JobDetailApi(APIView):
    @extend_schema(responses=JobSerializer)
    def get(self, request, job_id: int):
        return Response(JobSerializer(job_get_for_user(user=request.user, job_id=job_id)).data)


class JobCancelApi(APIView):
    @extend_schema(request=None, responses=JobSerializer)
    def post(self, request, job_id: int):
        job = job_get_for_user(user=request.user, job_id=job_id, min_role=Role.EDITOR)
        job = indexing.index_job_cancel(job=job, reason=f"Cancelled by {request.user.username}.")
        return Response(JobSerializer(job).data)


class AlbumJobListApi(APIView):
    pagination_class = LoupePagination

    @extend_schema(responses=JobSerializer(many=True))
    def get(self, request, album_id: int):
        album = album_get_for_user(user=request.user, album_id=album_id)
        return paginate(request, job_list_for_album(album=album), JobSerializer, view=self)


class AlbumIndexApi(APIView):
    @extend_schema(request=None, responses={202: JobSerializer, 200: JobSerializer})
    def post(self, request, album_id: int):
        """Index the album's images that have no vector yet. 202 with a new job, or 200 with the job
        already running (which new images join)."""
        album = album_get_for_user(user=request.user, album_id=album_id, min_role=Role.EDITOR)
        job, created = indexing.index_job_start(album=album, user=request.user, countdown=0)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class RetryFailedSerializer(serializers.Serializer):  # reads a workers.services.RetryOutcome
    retried = serializers.IntegerField()
    job_id = serializers.IntegerField(allow_null=True)


class AlbumRetryFailedApi(APIView):
    @extend_schema(request=None, responses=RetryFailedSerializer)
    def post(self, request, album_id: int):
        """Set the album's failed images back to pending and index them again."""
        album = album_get_for_user(user=request.user, album_id=album_id, min_role=Role.EDITOR)
        return Response(RetryFailedSerializer(album_retry_failed(album=album, user=request.user)).data)


class AlbumRebuildFailureDismissApi(APIView):
    @extend_schema(request=None, responses=inline_serializer("RebuildFailureDismissed", {
        "dismissed_job_id": serializers.IntegerField(allow_null=True, help_text="null: there was no failed rebuild to dismiss")}))
    def post(self, request, album_id: int):
        """Stop showing the album's failed rebuild (`index.last_failed_rebuild` of the album)."""
        album = album_get_for_user(user=request.user, album_id=album_id, min_role=Role.EDITOR)
        return Response({"dismissed_job_id": indexing.rebuild_failure_dismiss(album=album)})


class FolderImportSerializer(serializers.Serializer):
    path = serializers.CharField(max_length=4096)


class AlbumFolderImportApi(APIView):
    @extend_schema(request=FolderImportSerializer, responses={202: JobSerializer})
    def post(self, request, album_id: int):
        """Staff only: import a server folder inside LOUPE_IMPORT_ROOTS into the album, in the background."""
        album = album_get_for_user(user=request.user, album_id=album_id, min_role=Role.EDITOR)
        if not request.user.is_staff:
            raise PermissionDeniedError("Importing server folders is for staff accounts.", code="staff_required")
        data = FolderImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        job = folder_import_start(album=album, user=request.user, path=data.validated_data["path"])
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
