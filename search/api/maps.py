"""The semantic map's endpoints: read an album's map (members), rebuild it (editors)."""

from django.utils.decorators import method_decorator
from django.utils.http import http_date
from django.views.decorators.gzip import gzip_page
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from albums.roles import Role
from albums.selectors import album_get_for_user
from config.params import parse_id
from search import maps
from workers.maps import map_build_start

_JOB_FIELDS = {
    "id": serializers.IntegerField(), "kind": serializers.CharField(), "status": serializers.CharField(),
    "done": serializers.IntegerField(), "total": serializers.IntegerField(), "message": serializers.CharField()}
_JOB = inline_serializer("MapJob", _JOB_FIELDS)

_MAP = inline_serializer("AlbumMap", {
    "album": serializers.IntegerField(),
    "model_id": serializers.CharField(allow_null=True, help_text="the album's current model; the map is its"),
    "state": serializers.ChoiceField(choices=[maps.NONE, maps.BUILDING, maps.READY]),
    "job": inline_serializer("MapLatestJob", _JOB_FIELDS, allow_null=True, help_text="the album's latest map job"),
    "fitted_at": serializers.DateTimeField(allow_null=True),
    "count": serializers.IntegerField(help_text="points returned"),
    "unplaced": serializers.IntegerField(help_text="images with a vector and no point yet"),
    "clusters": serializers.ListField(child=serializers.JSONField(),
                                      help_text="{id, name, terms, size, x, y, medoid_image_ids}"),
    "points": serializers.JSONField(help_text="columns: image_id, x, y (in [-1, 1]), cluster (-1: noise), taken "
                                              "(unix seconds or null)"),
    "labels": serializers.JSONField(required=False, help_text="with ?support_set=: support_set, names, and per "
                                                              "point index (-1: none) and state"),
})


class AlbumMapApi(APIView):
    # A 100k album's columns are ~3 MB of JSON and ~0.7 MB compressed: worth the CPU off loopback.
    # Nothing secret rides along for a compression side channel to read (no tokens in the body).
    @method_decorator(gzip_page)
    @extend_schema(parameters=[OpenApiParameter("support_set", int, description="a support set of this album: its "
                                                                                "labels per point")],
                   responses={200: _MAP, 304: None})
    def get(self, request, album_id: int):
        """The album's semantic map under its current model: every image's place in [-1, 1]², its
        cluster, the clusters' names, as columns. `If-None-Match` with the last ETag answers 304
        while nothing changed."""
        album = album_get_for_user(user=request.user, album_id=album_id)
        raw = request.query_params.get("support_set")
        support_set_id = parse_id(raw, name="support_set") if raw not in (None, "") else None
        state = maps.map_state(user=request.user, album=album, support_set_id=support_set_id)
        # Compression makes the ETag weak (W/"…"), and the browser sends back what it got.
        if request.headers.get("If-None-Match", "").removeprefix("W/") == state.etag:
            response = Response(status=status.HTTP_304_NOT_MODIFIED)
        else:
            response = Response(maps.map_body(state))
        response["ETag"] = state.etag
        response["Cache-Control"] = "private, no-cache"
        if state.map is not None:
            response["Last-Modified"] = http_date(state.map.updated_at.timestamp())
        return response


class AlbumMapRebuildApi(APIView):
    @extend_schema(request=None, responses={202: inline_serializer("MapRebuild", {"job": _JOB})})
    def post(self, request, album_id: int):
        """Fit the album's map again from all its vectors, on a worker: 202 with the job (the map
        job already queued or running, if there is one). 409 when the album has no vectors yet."""
        album = album_get_for_user(user=request.user, album_id=album_id, min_role=Role.EDITOR)
        job, _ = map_build_start(album=album, user=request.user, refit=True)
        return Response({"job": maps.job_summary(job)}, status=status.HTTP_202_ACCEPTED)
