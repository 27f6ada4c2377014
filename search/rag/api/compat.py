"""The RAG Vision Engine's two endpoints, so its clients work against Loupe unchanged but for a token.

    POST /api/support/upload/image   className, classes (JSON list), index, file — multipart
    POST /api/ragvision/invocations  encodedImage, systemPrompt, userPrompt, kRetrieval, … — JSON

What differs from the reference, on purpose:
- Authentication (a Loupe API token or a session) and real HTTP status codes; the body keeps the
  reference's shape (`success`, `error`, …) on errors too.
- Each caller has a support set of their own (`supportSetId` picks one; otherwise the caller's
  "RAG Vision" set, created by the first upload). `index == 0` starts the chosen set over: every
  class and example image of it is deleted (the album's images stay), then `classes` are created
  and the file is added — in one transaction, so a rejected file leaves the set as it was. A set
  named by `supportSetId` may be shared: writing to it, a reset included, needs the editor role on
  its album (a viewer gets 403 `role_required`, as from every write endpoint), and a set the caller
  cannot see is a 404 like a missing one. Never a folder shared by everyone, as in the reference.
- `flag` is the chosen class label (the reference returns a True/False for its one flag key), or
  null when the model's answer names no class; `classScores` are normalized (search/rag/scoring.py).
- Patch vectors are kept: `supportRes`/`supportPatchSize` that differ from the set's re-patch the set
  once (editors only), not on every request.
"""

from __future__ import annotations

import json
import time
import uuid

from django.conf import settings
from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from albums.models import Album
from albums.roles import Role
from albums.services import album_create
from albums.upload_handlers import GuardedUploadMixin
from config.errors import ApplicationError, PayloadTooLargeError
from config.params import parse_id
from config.request_limits import declared_length
from config.throttles import SearchRateThrottle, UploadRateThrottle
from search.api.views import query_image_bytes
from search.rag import selectors, services
from search.rag.classify import ClassifyParams, classify
from search.rag.errors import SupportSetNotFoundError
from search.rag.models import MAX_RESOLUTION, MIN_PATCH_SIZE, MIN_RESOLUTION, SupportClass, SupportSet

COMPAT_ALBUM_NAME = "RAG Vision"
COMPAT_SET_NAME = "RAG Vision (compatible API)"


class CompatErrorsMixin:
    """Errors keep the reference's body (`success: false`, `error`) and a real status code."""

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        data = response.data if isinstance(response.data, dict) else {}
        message = data.get("message") or str(exc)
        response.data = {"success": False, "error": message, "code": data.get("code", "error"), "details": data.get("extra", {})}
        return response


def _own_compat_set(user, *, create: bool) -> SupportSet:
    found = (
        SupportSet.objects.filter(name=COMPAT_SET_NAME, album__owner=user, album__memberships__user=user)
        .order_by("id")
        .first()
    )
    if found is None and create:
        album = Album.objects.filter(owner=user, name=COMPAT_ALBUM_NAME).order_by("id").first()
        album = album or album_create(owner=user, name=COMPAT_ALBUM_NAME, description="Support images sent through the RAG Vision compatible API.")
        found = services.support_set_create(album=album, user=user, name=COMPAT_SET_NAME)
    if found is None:
        raise SupportSetNotFoundError()
    return found


def _support_set(request, raw_id, *, min_role: str, create: bool) -> SupportSet:
    if raw_id in (None, ""):
        own = _own_compat_set(request.user, create=create)
        return selectors.support_set_get_for_user(user=request.user, support_set_id=own.pk, min_role=min_role)
    set_id = parse_id(raw_id, name="supportSetId")
    return selectors.support_set_get_for_user(user=request.user, support_set_id=set_id, min_role=min_role)


class SupportUploadCompatApi(CompatErrorsMixin, GuardedUploadMixin, APIView):
    parser_classes = [MultiPartParser, FormParser]
    throttle_classes = [UploadRateThrottle]

    @extend_schema(
        request={"multipart/form-data": inline_serializer("RagVisionSupportUpload", {
            "className": serializers.CharField(), "classes": serializers.CharField(help_text="JSON list of class names"),
            "index": serializers.IntegerField(help_text="0 starts the set over: its classes and examples are deleted first (editor role)"), "file": serializers.FileField(),
            "supportSetId": serializers.IntegerField(required=False)})},
        responses=inline_serializer("RagVisionSupportUploadResult", {
            "success": serializers.BooleanField(), "className": serializers.CharField(), "index": serializers.IntegerField(),
            "filename": serializers.CharField(), "supportSetId": serializers.IntegerField(),
            "supportImageId": serializers.IntegerField(), "imageId": serializers.IntegerField()}),
    )
    def post(self, request):
        try:
            index = int(request.data.get("index", ""))
        except (TypeError, ValueError):
            raise ApplicationError(f"Invalid index: {request.data.get('index')!r}; send an integer.", code="invalid") from None
        try:
            classes = json.loads(request.data.get("classes", ""))
        except (TypeError, ValueError):
            classes = None
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c.strip() for c in classes):
            raise ApplicationError("Invalid 'classes': send a JSON list of class names.", code="invalid")
        classes = [c.strip() for c in classes]
        class_name = (request.data.get("className") or "").strip()
        if class_name not in classes:
            raise ApplicationError(f"Image assigned to unknown class {class_name!r}; classes are {classes}.", code="invalid")
        uploads, oversized = self.uploaded_files(request)
        if oversized:
            raise PayloadTooLargeError(
                f"The file is larger than the {settings.LOUPE_MAX_UPLOAD_BYTES}-byte limit.", code="file_too_large"
            )
        if len(uploads) != 1:
            raise ApplicationError("Send exactly one image as multipart field 'file'.", code="no_files")
        support_set = _support_set(request, request.data.get("supportSetId") or request.query_params.get("supportSetId"),
                                   min_role=Role.EDITOR, create=True)
        with transaction.atomic():
            if index == 0:  # the reference's "start over", of the set chosen above (editors only)
                SupportClass.objects.filter(support_set=support_set).delete()
            existing = {c.label: c for c in SupportClass.objects.filter(support_set=support_set)}
            for label in classes:
                if label not in existing:
                    existing[label] = services.support_class_create(support_set=support_set, label=label)
            [result] = services.support_images_add(
                support_class=existing[class_name], user=request.user, files=[(uploads[0].name, uploads[0])]
            )
            if result.status == "rejected":  # inside the transaction: a reset with a bad file is undone
                raise ApplicationError(result.reason, code=result.code or "rejected")
        return Response(
            {
                "success": True,
                "className": class_name,
                "index": index,
                "filename": result.name,
                "supportSetId": support_set.pk,
                "supportImageId": result.support_image_id,
                "imageId": result.image_id,
            }
        )


class InvocationSerializer(serializers.Serializer):
    encodedImage = serializers.CharField()
    systemPrompt = serializers.CharField(allow_blank=True, max_length=8000, required=False, default="")
    userPrompt = serializers.CharField(allow_blank=True, max_length=8000, required=False, default="")
    kRetrieval = serializers.IntegerField(min_value=1, max_value=200, required=False, default=4)
    maxPatchesPerClass = serializers.IntegerField(min_value=0, max_value=20, required=False, default=3)
    maxNewTokens = serializers.IntegerField(min_value=1, max_value=4096, required=False, default=200)
    inputResolution = serializers.IntegerField(min_value=MIN_RESOLUTION, max_value=MAX_RESOLUTION, required=False, allow_null=True, default=None)
    supportRes = serializers.IntegerField(min_value=MIN_RESOLUTION, max_value=MAX_RESOLUTION, required=False, allow_null=True, default=None)
    supportPatchSize = serializers.IntegerField(min_value=MIN_PATCH_SIZE, max_value=MAX_RESOLUTION, required=False, allow_null=True, default=None)
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, default=0.2)
    topP = serializers.FloatField(min_value=0.01, max_value=1, required=False, default=0.9)
    flagKey = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=200, default=None)
    imageId = serializers.CharField(required=False, allow_blank=True, allow_null=True, max_length=200, default=None)
    supportSetId = serializers.IntegerField(required=False, allow_null=True, min_value=1, default=None)
    supportClipLocalDir = serializers.CharField(required=False, allow_blank=True, allow_null=True, default=None,
                                                help_text="accepted and ignored: the set's encoder decides")


def _align_patch_settings(request, support_set: SupportSet, v: dict) -> SupportSet:
    wanted = {
        "support_resolution": v["supportRes"] or support_set.support_resolution,
        "patch_size": v["supportPatchSize"] or support_set.patch_size,
    }
    if all(getattr(support_set, field) == value for field, value in wanted.items()):
        return support_set
    if wanted["patch_size"] > wanted["support_resolution"]:
        raise ApplicationError("supportPatchSize must not exceed supportRes.", code="invalid")
    if support_set.role == Role.VIEWER:
        raise ApplicationError(
            f"This support set is patched at {support_set.support_resolution}/{support_set.patch_size}; "
            "changing it needs the editor role. Omit supportRes/supportPatchSize to use the set's.",
            code="support_settings_mismatch",
        ).with_status(status.HTTP_409_CONFLICT)
    services.support_set_update(support_set=support_set, **wanted)
    return selectors.support_set_get_for_user(user=request.user, support_set_id=support_set.pk)


class RagVisionInvocationCompatApi(CompatErrorsMixin, APIView):
    parser_classes = [JSONParser]
    throttle_classes = [SearchRateThrottle]

    @extend_schema(
        request=InvocationSerializer,
        responses=inline_serializer("RagVisionInvocationResult", {
            "success": serializers.BooleanField(), "imageId": serializers.CharField(),
            "flagKey": serializers.CharField(allow_null=True), "flag": serializers.CharField(allow_null=True),
            "explanation": serializers.CharField(), "classScores": serializers.DictField(child=serializers.FloatField()),
            "rawResponse": serializers.CharField(), "elapsedTimeMs": serializers.IntegerField(),
            "error": serializers.CharField(allow_null=True), "decisionSource": serializers.CharField(),
            "supportSetId": serializers.IntegerField(), "evidence": serializers.ListField(child=serializers.DictField())}),
    )
    def post(self, request):
        started = time.perf_counter()
        if declared_length(request) > settings.LOUPE_RAG_MAX_REQUEST_BYTES:  # its own error shape, so not the middleware's
            raise PayloadTooLargeError(
                f"The request is larger than {settings.LOUPE_RAG_MAX_REQUEST_BYTES} bytes.", code="request_too_large"
            )
        data = InvocationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        support_set = _support_set(request, v["supportSetId"], min_role=Role.VIEWER, create=False)
        support_set = _align_patch_settings(request, support_set, v)
        image_bytes = query_image_bytes({"image_base64": v["encodedImage"]})
        params = ClassifyParams(
            k=v["kRetrieval"],
            max_patches_per_class=v["maxPatchesPerClass"],
            input_resolution=v["inputResolution"],
            system_prompt=v["systemPrompt"],
            user_prompt=v["userPrompt"],
            temperature=v["temperature"],
            top_p=v["topP"],
            max_new_tokens=v["maxNewTokens"],
        )
        result = classify(support_set=support_set, image_bytes=image_bytes, params=params)
        decision = result["decision"]
        vlm_error = decision.get("vlm_error")
        body = {
            "success": vlm_error is None,
            "imageId": v["imageId"] or uuid.uuid4().hex,
            "flagKey": v["flagKey"],
            "flag": decision["flag"],
            "explanation": decision["explanation"],
            "classScores": result["class_scores"],
            "rawResponse": decision["raw_response"],
            "elapsedTimeMs": int((time.perf_counter() - started) * 1000),
            "error": vlm_error["message"] if vlm_error else None,
            "decisionSource": decision["source"],
            "supportSetId": support_set.pk,
            "evidence": result["evidence"],
        }
        # The retrieval answer is in the body either way; the status says the model did not answer.
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE if vlm_error else status.HTTP_200_OK)
