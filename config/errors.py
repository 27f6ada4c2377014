"""One JSON shape for every API error: {"message": ..., "code": ..., "extra": {...}}.

Services raise `ApplicationError` subclasses; DRF and Django exceptions are mapped onto the
same shape here, so clients branch on `code`, never on the message text.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from encoders.errors import EncoderError, EncoderWeightsMissing

logger = logging.getLogger(__name__)


class ApplicationError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST
    code = "invalid"

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.extra = extra or {}
        if code:
            self.code = code

    def with_status(self, status_code: int) -> ApplicationError:
        self.status_code = status_code
        return self


class NotFoundError(ApplicationError):
    status_code = status.HTTP_404_NOT_FOUND
    code = "not_found"


class PermissionDeniedError(ApplicationError):
    status_code = status.HTTP_403_FORBIDDEN
    code = "permission_denied"


class ConflictError(ApplicationError):
    status_code = status.HTTP_409_CONFLICT
    code = "conflict"


class PayloadTooLargeError(ApplicationError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    code = "payload_too_large"


class UnsupportedMediaError(ApplicationError):
    status_code = status.HTTP_415_UNSUPPORTED_MEDIA_TYPE
    code = "unsupported_media_type"


class ServiceUnavailableError(ApplicationError):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    code = "service_unavailable"


_DRF_CODES = {
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "throttled",
    exceptions.ParseError: "parse_error",
    exceptions.ValidationError: "invalid",
}


def error_body(message: str, code: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"message": message, "code": code, "extra": extra or {}}


def encoder_error_status(exc: Exception) -> int | None:
    if not isinstance(exc, EncoderError):
        return None
    # Some know their own status: a VLM endpoint that is down (503) or answers garbage (502).
    if explicit := getattr(exc, "http_status", None):
        return explicit
    # Missing weights are the server's problem, not the request's: 503 until an operator adds them.
    return status.HTTP_503_SERVICE_UNAVAILABLE if isinstance(exc, EncoderWeightsMissing) else status.HTTP_400_BAD_REQUEST


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, ApplicationError):
        retry_after = exc.extra.get("retry_after_seconds") if isinstance(exc.extra, dict) else None
        headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else None
        return Response(error_body(exc.message, exc.code, exc.extra), status=exc.status_code, headers=headers)
    if (encoder_status := encoder_error_status(exc)) is not None:
        return Response(error_body(exc.message, exc.code, exc.extra), status=encoder_status)
    if isinstance(exc, (OperationalError, InterfaceError)):
        # The database is unreachable (restarting, failing over): a 503 the client may retry, in the
        # one shape, rather than a bare 500; the detail goes to the log (bench/faults.py measured it).
        logger.warning("database unavailable: %s", exc)
        return Response(error_body("The database is unavailable; try again shortly.", "database_unavailable"),
                        status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "5"})
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)

    response = exception_handler(exc, context)
    if response is None:
        return None  # unknown exceptions stay 500 and are logged by Django
    code = next((c for cls, c in _DRF_CODES.items() if isinstance(exc, cls)), "error")
    if isinstance(exc, exceptions.ValidationError):
        message = "Invalid input."
        fields = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        extra = {"fields": fields}
    else:
        message = str(getattr(exc, "detail", exc))
        extra = {}
        if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
            extra["retry_after_seconds"] = int(exc.wait)
    response.data = error_body(message, code, extra)
    return response
