"""Keep the cyclic garbage collector's pauses out of request latency.

A search request leaves a few hundred objects in reference cycles (DRF's serializer fields point at
their serializer, its request at its view), and only the collector frees them. Each of its full
collections walked every object of the process as well: Django, NumPy, psycopg, and in a query
worker torch and the loaded model. Under 16 clients those collections held the GIL for 0.1-0.7 s
(measured in the web processes), and they were the tail of the latency (docs/benchmarks.md, "Under
load"). Objects a process keeps for its whole life (modules, URL patterns, a loaded model) are moved
out of the collector's sight once they exist (`gc.freeze`); collections then walk only what the
requests made, and the requests' own cycles are unlinked when their response is done
(`RequestCyclesMiddleware`, `release_serializer`), so reference counting frees them at once.
"""

from __future__ import annotations

import gc
import threading

_lock = threading.Lock()


def freeze_long_lived() -> None:
    """Collect what is garbage now, then freeze every object still alive: the process keeps them."""
    with _lock:
        gc.collect()
        gc.freeze()


# --- cycles a request leaves -----------------------------------------------------------------------
# What remains for the collector after the freeze is the requests' own cycles: ~330 objects per
# search (tests/test_heap.py counts them). Under 16 clients, requests in flight when a young
# collection runs are promoted with their cycles, and later full collections walk them with the GIL
# held. Unlinking the cycles once the response exists lets reference counting free them at once.

# Attributes the middleware stack puts on a request that point back at it: the lazy user (a closure
# over the request), `auser` (a partial of it), django-htmx's details and the message storage.
_REQUEST_BACKLINKS = ("user", "auser", "_cached_user", "htmx", "_messages")


class RequestCyclesMiddleware:
    """Outermost middleware: once a response is made (and rendered), unlink the request's cycles —
    DRF's view (which holds its request, and the request its view in `parser_context`) and the
    request's back-links above. Streaming responses are left alone: their content is produced later,
    possibly from the request."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if getattr(response, "streaming", False):
            return response
        context = getattr(response, "renderer_context", None)
        if isinstance(context, dict):
            view, drf_request = context.get("view"), context.get("request")
            if view is not None:
                view.__dict__.clear()  # request, response, args, headers: the view is done
            if drf_request is not None:
                drf_request.parser_context = None  # it holds the request itself (DRF's own cycle)
            response.renderer_context = None  # rendered already (the handler renders before middleware sees it)
            # A serializer's output (ReturnDict/ReturnList) links back to its serializer.
            serializer = getattr(getattr(response, "data", None), "serializer", None)
            if serializer is not None:
                release_serializer(serializer)
                response.data.serializer = None
        for name in _REQUEST_BACKLINKS:
            request.__dict__.pop(name, None)
        return response


def release_serializer(serializer) -> None:
    """Unlink a serializer that has done its work from its bound fields: `fields` holds the
    serializer (and each field its `parent`), a ListField or ListSerializer its child and the child
    it, nested serializers likewise."""
    serializer.parent = None
    child = getattr(serializer, "child", None)
    if child is not None:
        release_serializer(child)
    fields = serializer.__dict__.pop("fields", None)
    for field in (fields or {}).values():
        release_serializer(field)
