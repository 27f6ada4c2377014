"""The RAG Vision Engine's endpoints, so its clients work against Loupe with only their base URL changed.

    POST /api/support/upload/image   className, classes (JSON list), index, file — multipart
    POST /api/ragvision/invocations  encodedImage, systemPrompt, userPrompt, kRetrieval, flagKey, … — JSON
    GET  /api/ragvision/healthcheck  201 {"status": "ok"}, to anyone, as the engine answers

What differs from the reference, on purpose (docs/encoders.md, "Compatibility"):
- Authentication: a Loupe API token (`Authorization: Token`), a session, or — here only — HTTP Basic
  with the token as the password, which is what a client that builds every URL from one base URL can
  carry (`http://alice:<token>@host`); never the account password (albums/tokens.py). Real HTTP status
  codes; the body keeps the reference's shape (`success`, `error`, and on errors also `imageId`,
  `flagKey` and `elapsedTimeMs`, as the engine's failures carry them).
- Each caller has a support set of their own (`supportSetId` picks one; otherwise the caller's
  "RAG Vision" set, created by the first upload, patched as the engine does: each patch embedded as
  an image of its own). `index == 0` starts the chosen set over: every
  class and example image of it is deleted (the album's images stay), then `classes` are created
  and the file is added — in one transaction, so a rejected file leaves the set as it was. A set
  named by `supportSetId` may be shared: writing to it, a reset included, needs the editor role on
  its album (a viewer gets 403 `role_required`, as from every write endpoint), and a set the caller
  cannot see is a 404 like a missing one. Never a folder shared by everyone, as in the reference.
- `flag`: with a `flagKey`, the published contract — the prompts go to the vision-language model
  verbatim, its `<flagKey>: True|False` is the boolean `flag`; without a model the set's
  `flag_true_label` decides, and with none the flag is null. Without a `flagKey`, the chosen class
  label (what the engine's code returns for a one-word answer). `decision` always carries Loupe's
  class, `decisionSource` where the answer came from; `classScores` are normalized (search/rag/scoring.py).
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
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from albums.models import Album
from albums.roles import Role
from albums.services import album_create
from albums.tokens import ApiTokenAuthentication, ApiTokenBasicAuthentication
from albums.upload_handlers import GuardedUploadMixin
from config.errors import ApplicationError, PayloadTooLargeError
from config.params import parse_id
from config.request_limits import declared_length
from config.throttles import SearchRateThrottle, UploadRateThrottle
from search.api.views import query_image_bytes
from search.rag import selectors, services
from search.rag.classify import ClassifyParams, classify
from search.rag.errors import SupportSetNotFoundError
from search.rag.models import MAX_RESOLUTION, MIN_PATCH_SIZE, MIN_RESOLUTION, PatchSource, SupportClass, SupportSet

COMPAT_ALBUM_NAME = "RAG Vision"
COMPAT_SET_NAME = "RAG Vision (compatible API)"


# HTTP Basic (with a token for its password) only here, after the token header so that a 401 still
# asks for a token (WWW-Authenticate) like the rest of the API.
COMPAT_AUTHENTICATION = [
    ApiTokenAuthentication, ApiTokenBasicAuthentication,
    *(c for c in api_settings.DEFAULT_AUTHENTICATION_CLASSES if c is not ApiTokenAuthentication),
]


class CompatApi(APIView):
    """Errors keep the reference's body (`success: false`, `error`, plus the `imageId`, `flagKey`
    and `elapsedTimeMs` its failures carry) with Loupe's `code` and `details`, and a real status."""

    authentication_classes = COMPAT_AUTHENTICATION

    def dispatch(self, request, *args, **kwargs):
        self.started = time.perf_counter()
        self.echo = self.initial_echo()  # what an error body repeats; the endpoint adds what the request said
        return super().dispatch(request, *args, **kwargs)

    def initial_echo(self) -> dict:
        return {"imageId": None, "flagKey": None}

    def elapsed_ms(self) -> int:
        return int((time.perf_counter() - self.started) * 1000)

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        data = response.data if isinstance(response.data, dict) else {}
        message = data.get("message") or str(exc)
        response.data = {
            "success": False, "error": message, "code": data.get("code", "error"), "details": data.get("extra", {}),
            **self.echo, "elapsedTimeMs": self.elapsed_ms(),
        }
        return response


class RagVisionHealthcheckCompatApi(APIView):
    """The engine's liveness probe, answered as the engine does (its monitors expect 201). It says the
    web process answers, nothing more: /api/v1/health/ checks the database, Redis and the workers."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(responses={201: inline_serializer("RagVisionHealthcheck", {"status": serializers.CharField()})})
    def get(self, request):
        return Response({"status": "ok"}, status=status.HTTP_201_CREATED)


def _own_compat_set(user, *, create: bool) -> SupportSet:
    found = (
        SupportSet.objects.filter(name=COMPAT_SET_NAME, album__owner=user, album__memberships__user=user)
        .order_by("id")
        .first()
    )
    if found is None and create:
        album = Album.objects.filter(owner=user, name=COMPAT_ALBUM_NAME).order_by("id").first()
        album = album or album_create(owner=user, name=COMPAT_ALBUM_NAME, description="Support images sent through the RAG Vision compatible API.")
        # Each patch embedded as an image of its own, as the engine embeds its patches: at the
        # engine's 224 px / 32 px, a token grid is 7×7 tokens that each see half the image, and
        # tells car shapes apart rather than mud from paint (its demo answers clean with tokens).
        found = services.support_set_create(album=album, user=user, name=COMPAT_SET_NAME, patch_source=PatchSource.CROPS)
    if found is None:
        raise SupportSetNotFoundError()
    return found


def _support_set(request, raw_id, *, min_role: str, create: bool) -> SupportSet:
    if raw_id in (None, ""):
        own = _own_compat_set(request.user, create=create)
        return selectors.support_set_get_for_user(user=request.user, support_set_id=own.pk, min_role=min_role)
    set_id = parse_id(raw_id, name="supportSetId")
    return selectors.support_set_get_for_user(user=request.user, support_set_id=set_id, min_role=min_role)


class SupportUploadCompatApi(GuardedUploadMixin, CompatApi):
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
    # Not trimmed: with a flagKey they reach the model exactly as sent.
    systemPrompt = serializers.CharField(allow_blank=True, max_length=8000, required=False, default="", trim_whitespace=False)
    userPrompt = serializers.CharField(allow_blank=True, max_length=8000, required=False, default="", trim_whitespace=False)
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


class RagVisionInvocationCompatApi(CompatApi):
    parser_classes = [JSONParser]
    throttle_classes = [SearchRateThrottle]

    def initial_echo(self) -> dict:
        return {"imageId": uuid.uuid4().hex, "flagKey": None}  # the engine names every request, failed ones too

    @extend_schema(
        request=InvocationSerializer,
        responses=inline_serializer("RagVisionInvocationResult", {
            "success": serializers.BooleanField(), "imageId": serializers.CharField(),
            "flagKey": serializers.CharField(allow_null=True),
            "flag": serializers.JSONField(help_text="with flagKey: true, false or null (the engine's published contract); "
                                                    "without: the chosen class label, or null"),
            "decision": serializers.CharField(allow_null=True, help_text="Loupe's class decision"),
            "explanation": serializers.CharField(), "classScores": serializers.DictField(child=serializers.FloatField()),
            "rawResponse": serializers.CharField(), "elapsedTimeMs": serializers.IntegerField(),
            "error": serializers.CharField(allow_null=True),
            "decisionSource": serializers.ChoiceField(choices=["vlm", "retrieval"]),
            "supportSetId": serializers.IntegerField(), "evidence": serializers.ListField(child=serializers.DictField())}),
    )
    def post(self, request):
        if declared_length(request) > settings.LOUPE_RAG_MAX_REQUEST_BYTES:  # its own error shape, so not the middleware's
            raise PayloadTooLargeError(
                f"The request is larger than {settings.LOUPE_RAG_MAX_REQUEST_BYTES} bytes.", code="request_too_large"
            )
        self.echo = _echo(request.data)
        data = InvocationSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        flag_key = (v["flagKey"] or "").strip() or None
        self.echo = {"imageId": v["imageId"] or self.echo["imageId"], "flagKey": v["flagKey"]}
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
            flag_key=flag_key,
        )
        result = classify(support_set=support_set, image_bytes=image_bytes, params=params)
        decision = result["decision"]
        vlm_error = decision.get("vlm_error")
        body = {
            "success": vlm_error is None,
            **self.echo,
            "flag": decision["flag_value"] if flag_key else decision["flag"],
            "decision": decision["flag"],
            "explanation": decision["explanation"],
            "classScores": result["class_scores"],
            "rawResponse": decision["raw_response"],
            "elapsedTimeMs": self.elapsed_ms(),
            "error": vlm_error["message"] if vlm_error else None,
            "decisionSource": decision["source"],
            "supportSetId": support_set.pk,
            "evidence": result["evidence"],
        }
        # The retrieval answer is in the body either way; the status says the model did not answer.
        return Response(body, status=status.HTTP_503_SERVICE_UNAVAILABLE if vlm_error else status.HTTP_200_OK)


def _echo(data) -> dict:
    """imageId and flagKey as sent, for an error body before (or without) a valid request; an
    imageId is made up when none came, as the engine does."""
    data = data if isinstance(data, dict) else {}
    image_id, flag_key = data.get("imageId"), data.get("flagKey")
    return {
        "imageId": image_id if isinstance(image_id, str) and 0 < len(image_id) <= 200 else uuid.uuid4().hex,
        "flagKey": flag_key if isinstance(flag_key, str) and len(flag_key) <= 200 else None,
    }
