"""Labeling an album with a support set (search/rag/labeling.py): start a job, list and review its
labels, add reviewed images to the set, export. Viewers read labels; editors run jobs and review.
Every object is reached through its album's membership: anything else is the same 404 as a missing id.
"""

from __future__ import annotations

import csv
import io
import json

from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.text import slugify
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from albums import downloads
from albums.roles import Role
from albums.storage import image_file_open
from config.errors import ApplicationError
from config.pagination import LoupePagination, paginate
from config.params import parse_id
from config.throttles import BulkRateThrottle, UploadRateThrottle
from search.rag import labeling, selectors
from search.rag.api.serializers import SupportAddResponseSerializer
from search.rag.models import Label
from search.rag.services import SupportAddSummary
from workers.api.views import JobSerializer


class LabelJobRequestSerializer(serializers.Serializer):
    scope = serializers.ChoiceField(choices=[labeling.SCOPE_ALBUM, labeling.SCOPE_IMAGES], default=labeling.SCOPE_ALBUM,
                                    help_text="the whole album, or the images listed (a selection or a search result)")
    image_ids = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False,
                                      max_length=labeling.MAX_SCOPE_IDS)
    margin_threshold = serializers.FloatField(required=False, allow_null=True, min_value=0, max_value=1, default=None,
                                              help_text="ask the vision-language model (LOUPE_VLM) only where the "
                                                        "retrieval margin is below this; null: never")
    relabel = serializers.BooleanField(default=False, help_text="predict again the labels not yet reviewed")

    def validate(self, attrs):
        if attrs["scope"] == labeling.SCOPE_IMAGES and not attrs.get("image_ids"):
            raise serializers.ValidationError({"image_ids": "scope 'images' needs image_ids."})
        return attrs


class LabelSerializer(serializers.ModelSerializer):
    class_label = serializers.CharField(source="label", help_text="the class now: predicted, or as corrected")
    file_name = serializers.CharField(source="image.original_name")
    thumbnail_url = serializers.SerializerMethodField()
    file_url = serializers.SerializerMethodField()
    evidence = serializers.SerializerMethodField()

    class Meta:
        model = Label
        fields = ["id", "image", "file_name", "support_set", "support_class", "class_label", "predicted_label", "scores",
                  "margin", "source", "explanation", "state", "evidence", "job", "thumbnail_url", "file_url",
                  "created_at", "updated_at"]
        read_only_fields = fields

    def get_thumbnail_url(self, label) -> str:
        return reverse("api:image-thumbnail", args=[label.image_id])

    def get_file_url(self, label) -> str:
        return reverse("api:image-file", args=[label.image_id])

    def get_evidence(self, label) -> list[dict]:
        """Per class, its best-matching support patch, with a crop URL."""
        return [
            {**item, "crop_url": f"{reverse('api:support-image-crop', args=[item['support_image_id']])}"
                                 f"?box={','.join(str(v) for v in item['box'])}"}
            for item in label.evidence
        ]


class LabelPatchSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=["accepted", "rejected", "predicted"], required=False)
    class_label = serializers.CharField(required=False, max_length=100,
                                        help_text="the right class: the label becomes corrected (accepted if it is the prediction)")

    def validate(self, attrs):
        if ("state" in attrs) == ("class_label" in attrs):
            raise serializers.ValidationError("Send either a state or a class_label.")
        return attrs


def _margin(raw) -> float | None:
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApplicationError("margin_below must be a number.", code="invalid_filter") from None
    if value != value:  # NaN
        raise ApplicationError("margin_below must be a number.", code="invalid_filter")
    return value


def _filtered(request, support_set):
    params = request.query_params
    for name in ("class", "state"):
        value = params.get(name) or ""
        if "\x00" in value or len(value) > 100:
            raise ApplicationError(f"{name} is not a class label or a state.", code="invalid_filter")
    job_id = parse_id(params["job"], name="job", code="invalid_filter") if params.get("job") else None
    return labeling.labels_filtered(support_set=support_set, class_label=params.get("class") or None,
                                    state=params.get("state") or None, margin_below=_margin(params.get("margin_below")),
                                    job_id=job_id)


FILTERS = [
    OpenApiParameter("class", str, description="class label"),
    OpenApiParameter("state", str, enum=Label.State.values),
    OpenApiParameter("margin_below", float, description="only labels whose margin (top score − second) is below"),
    OpenApiParameter("job", int, description="only the images in the scope of this labeling job of the set (the whole "
                                             "album, or the selection or search result it was started for)"),
]


class LabelJobApi(APIView):
    throttle_classes = [BulkRateThrottle]  # every image of the album read and encoded

    @extend_schema(request=LabelJobRequestSerializer, responses={202: JobSerializer, 200: JobSerializer})
    def post(self, request, support_set_id: int):
        """Label the album (or the images listed) with this set: a job, 202; or the set's job already
        queued or running, 200. Progress and cancel: /api/v1/jobs/{id}/."""
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id,
                                                         min_role=Role.EDITOR)
        body = LabelJobRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        v = body.validated_data
        job, created = labeling.label_job_start(
            support_set=support_set, user=request.user,
            image_ids=v.get("image_ids") if v["scope"] == labeling.SCOPE_IMAGES else None,
            margin_threshold=v.get("margin_threshold"), relabel=v["relabel"])
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class LabelListApi(APIView):
    pagination_class = LoupePagination

    @extend_schema(parameters=FILTERS, responses=LabelSerializer(many=True))
    def get(self, request, support_set_id: int):
        """The set's labels, lowest margin first (the least certain: the ones to review)."""
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id)
        return paginate(request, _filtered(request, support_set), LabelSerializer, view=self)


class LabelDetailApi(APIView):
    @extend_schema(responses=LabelSerializer)
    def get(self, request, label_id: int):
        return Response(LabelSerializer(selectors.label_get_for_user(user=request.user, label_id=label_id)).data)

    @extend_schema(request=LabelPatchSerializer, responses=LabelSerializer)
    def patch(self, request, label_id: int):
        """Review: accept or reject the prediction, or correct the class."""
        label = selectors.label_get_for_user(user=request.user, label_id=label_id, min_role=Role.EDITOR)
        body = LabelPatchSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        label = labeling.label_review(label=label, user=request.user, state=body.validated_data.get("state"),
                                      class_label=body.validated_data.get("class_label"))
        return Response(LabelSerializer(label).data)


class LabelAddToSetApi(APIView):
    throttle_classes = [UploadRateThrottle]  # an example added: its patches are embedded

    @extend_schema(request=None, responses={201: SupportAddResponseSerializer, 200: SupportAddResponseSerializer})
    def post(self, request, label_id: int):
        """The labeled image becomes an example of its class (accepted or corrected labels only). Its
        patches join the set's cached support matrix incrementally; nothing is rebuilt."""
        label = selectors.label_get_for_user(user=request.user, label_id=label_id, min_role=Role.EDITOR)
        summary = SupportAddSummary(tuple(labeling.label_add_to_set(label=label, user=request.user)))
        return Response(SupportAddResponseSerializer(summary).data,
                        status=status.HTTP_201_CREATED if summary.added else status.HTTP_200_OK)


EXPORT_FORMATS = ("csv", "json", "zip")
CSV_FIELDS = ["image_id", "file_name", "sha256", "class", "predicted_class", "state", "margin", "source", "scores"]


class LabelExportApi(APIView):
    throttle_classes = [BulkRateThrottle]

    def perform_content_negotiation(self, request, force=False):
        # `format` names the export, not one of DRF's renderers (errors still answer JSON).
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        parameters=[OpenApiParameter("format", str, enum=list(EXPORT_FORMATS), description="csv (default), json, or "
                                     "zip: the accepted and corrected images in one folder per class (ImageFolder)"),
                    *FILTERS],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/json"): OpenApiTypes.OBJECT,
                   (200, "application/zip"): OpenApiTypes.BINARY},
    )
    def get(self, request, support_set_id: int):
        support_set = selectors.support_set_get_for_user(user=request.user, support_set_id=support_set_id)
        kind = request.query_params.get("format") or "csv"
        if kind not in EXPORT_FORMATS:
            raise ApplicationError(f"format must be one of {', '.join(EXPORT_FORMATS)}.", code="invalid_format")
        labels = _filtered(request, support_set)
        stem = slugify(support_set.name) or f"support-set-{support_set.pk}"
        if kind == "zip":
            return self._zip(labels, stem)
        rows = labeling.export_rows(labels)
        if kind == "json":
            response = HttpResponse(json.dumps({"support_set": support_set.pk, "classes": list(
                support_set.classes.order_by("position", "id").values_list("label", flat=True)), "labels": rows}),
                content_type="application/json")
        else:
            out = io.StringIO()
            writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
            writer.writeheader()
            for row in rows:
                writer.writerow({**{k: row[k] for k in CSV_FIELDS if k != "scores"},
                                 "scores": json.dumps(row["scores"], sort_keys=True)})
            response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{stem}-labels.{kind}"'
        response["Cache-Control"] = "private, no-store"
        return response

    def _zip(self, labels, stem: str) -> StreamingHttpResponse:
        chosen = list(labels.filter(state__in=[Label.State.ACCEPTED, Label.State.CORRECTED]).order_by("label", "image_id"))
        members, by_class = [], {}
        for label in chosen:
            by_class.setdefault(label.label, []).append(label)
        for class_label, items in by_class.items():
            # The class's own name as the folder (ImageFolder reads it back), made safe as one path part.
            folder = class_label.replace("/", "_").replace("\\", "_").strip().lstrip(".") or "class"
            names = downloads.member_names(item.image.original_name for item in items)
            members += [
                downloads.ZipMember(name=f"{folder}/{name}", size=item.image.bytes,
                                    modified=item.image.taken_at or item.image.created_at,
                                    open=lambda image=item.image: image_file_open(image=image))
                for name, item in zip(names, items, strict=True)
            ]
        response = StreamingHttpResponse(downloads.zip_stream(members), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{stem}-labels.zip"'
        response["Cache-Control"] = "private, no-store"
        response["X-Content-Type-Options"] = "nosniff"
        response["X-Loupe-Images"] = str(len(members))
        return response
