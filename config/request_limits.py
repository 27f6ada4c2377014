"""Request bodies: refused by their declared size before a byte is read, and never left half-read
on a kept-alive connection.

A view that takes a file or base64 names its limit with a `max_body_bytes` callable (read per
request, so settings apply). A body declared over it is answered 413 at once: the server does not
wait for 2 GiB it is going to refuse. Uploads of many files have no such total; their per-file
guard (albums.upload_handlers) stops reading each file at its limit instead.

After any response that went out before its body was read (401, 404, 413, 429 ...), the rest of
the body is read off the connection, up to LOUPE_DRAIN_MAX_BYTES. gunicorn itself drains only
64 KiB before it closes a kept-alive connection, and a client still sending then meets a reset:
measured, 55 of 200 requests on one `requests.Session` alternating refused and accepted 300 KB
uploads failed that way. A body larger than the bound is left to the server, which closes.
"""

from __future__ import annotations

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import JsonResponse

from config.errors import error_body

FORM_OVERHEAD_BYTES = 64 * 1024  # the multipart or JSON around a file: names, boundaries, other fields


def query_image_body_limit() -> int:
    """A query image sent as multipart, or as base64 in JSON (4/3 its size), with its form."""
    return settings.LOUPE_MAX_QUERY_BYTES * 4 // 3 + FORM_OVERHEAD_BYTES


def id_list_body_limit() -> int:
    """A list of up to LOUPE_MAX_BULK_IMAGES ids as JSON (≤ 21 bytes an id), a urlencoded form's
    repeated `image_ids=…&` (≤ 30) or multipart's (a part each: a boundary of up to 70 bytes and its
    headers, ≤ 190), with a few more fields and a CSRF token."""
    return settings.LOUPE_MAX_BULK_IMAGES * 192 + 16 * 1024


def declared_length(request) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


# A text or image_id search is a few hundred bytes, one of 1,000 image ids ~12 KB: a search body past
# this carries a query image, whose cost is the query worker's (admission and slots read it so).
QUERY_IMAGE_MIN_BODY_BYTES = 32 * 1024


def carries_query_image(request) -> bool:
    return declared_length(request) > QUERY_IMAGE_MIN_BODY_BYTES


def _view_limit(view_func) -> int | None:
    view_class = getattr(view_func, "cls", None) or getattr(view_func, "view_class", None)
    limit = getattr(view_class, "max_body_bytes", None) or getattr(view_func, "max_body_bytes", None)
    return limit() if callable(limit) else limit


def too_large_response(limit: int) -> JsonResponse:
    return JsonResponse(error_body(f"The request body is larger than this endpoint takes ({limit} bytes).",
                                   "request_too_large", {"max_bytes": limit}), status=413)


def _drain(request) -> None:
    stream = getattr(request, "_stream", None)
    if not isinstance(stream, LimitedStream):
        return  # read already (request.body replaced it) or never a body
    remaining = stream.limit - stream._pos
    if 0 < remaining <= settings.LOUPE_DRAIN_MAX_BYTES:
        while stream.read(256 * 1024):
            pass


class RequestBodyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            _drain(request)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        limit = _view_limit(view_func)
        if limit is not None and declared_length(request) > limit:
            return too_large_response(limit)
        return None
