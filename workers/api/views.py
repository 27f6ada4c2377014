from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from albums.selectors import album_get_for_user
from config.pagination import paginate
from workers.models import IndexJob
from workers.selectors import job_get_for_user, job_list_for_album


class JobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)

    class Meta:
        model = IndexJob
        fields = [
            "id", "album", "kind", "status", "generation", "model_id", "total", "done", "failed", "progress",
            "message", "created_at", "started_at", "finished_at", "heartbeat_at",
        ]


class JobDetailApi(APIView):
    @extend_schema(responses=JobSerializer)
    def get(self, request, job_id: int):
        return Response(JobSerializer(job_get_for_user(user=request.user, job_id=job_id)).data)


class AlbumJobListApi(APIView):
    @extend_schema(responses=JobSerializer(many=True))
    def get(self, request, album_id: int):
        album = album_get_for_user(user=request.user, album_id=album_id)
        return paginate(request, job_list_for_album(album=album), JobSerializer, view=self)
