"""Health: each component answers for itself, so "degraded" says which part is down.

Anyone (a load balancer, a stranger) gets the status and the HTTP code only. The details (versions,
worker host names, error text) go to staff users and to a monitor sending LOUPE_HEALTH_TOKEN as
X-Health-Token; recognising a user needs the database, the token does not.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import redis
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError, connection
from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.celery import app
from search.query_encoding import query_encoding_mode
from workers.heartbeat import live_workers


class ComponentDown(RuntimeError):
    """A component answered, and what it said is an outage; `details` still goes in the report."""

    def __init__(self, message: str, details: dict[str, Any]):
        super().__init__(message)
        self.details = details


def _timed(check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
    except ComponentDown as exc:
        result = {"ok": False, "error": str(exc), **exc.details}
    except Exception as exc:  # noqa: BLE001 — any failure of a component is what health reports
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:500]}
    result["ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def _database() -> dict[str, Any]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('server_version'), (SELECT extversion FROM pg_extension WHERE extname = 'vector')")
        server_version, pgvector = cursor.fetchone()
    if pgvector is None:
        raise RuntimeError("the pgvector extension is not installed in this database (run migrations)")
    return {"postgres": server_version, "pgvector": pgvector}


def _redis() -> dict[str, Any]:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        client.ping()
        return {"version": client.info("server").get("redis_version")}
    finally:
        client.close()


def required_queues() -> set[str]:
    """Queues this configuration sends work to. `query` only when something is sent there: query
    encoding on a worker, or classification with a vision-language model (which never runs in the
    web unless LOUPE_QUERY_ENCODING is `web`)."""
    required = {"default", "encode"}
    vlm_on_worker = bool(settings.LOUPE_VLM) and settings.LOUPE_QUERY_ENCODING != "web"
    if query_encoding_mode() == "worker" or vlm_on_worker:
        required.add("query")
    return required


def _workers() -> dict[str, Any]:
    workers = live_workers()
    queues = {queue.name: sorted(name for name, beat in workers.items() if queue.name in beat["queues"])
              for queue in app.conf.task_queues}
    required = required_queues()
    unserved = [name for name, consumers in queues.items() if not consumers and name in required]
    if unserved:
        # Work on an unserved queue waits forever: that is an outage even if other workers are up.
        raise ComponentDown(f"no live worker consumes queue(s) {', '.join(unserved)}",
                            {"workers": sorted(workers), "queues": queues})
    return {"workers": sorted(workers), "queues": queues}


def health_report() -> dict[str, Any]:
    components = {"database": _timed(_database), "redis": _timed(_redis)}
    # Workers are reached through the broker: without Redis the ping can only time out.
    components["workers"] = _timed(_workers) if components["redis"]["ok"] else {"ok": False, "error": "Redis is down"}
    down = [name for name, c in components.items() if not c["ok"]]
    return {"status": "degraded" if down else "ok", "down": down, "components": components}


class _HealthView(APIView):
    """Answers everyone; who the caller is only decides how much the answer says."""

    permission_classes = [AllowAny]

    def perform_authentication(self, request):
        pass  # lazily, in sees_details: health must answer while the user table cannot

    def sees_details(self, request) -> bool:
        token = settings.LOUPE_HEALTH_TOKEN
        if token and hmac.compare_digest(request.headers.get("X-Health-Token", "").encode(), token.encode()):
            return True
        try:
            return bool(request.user and request.user.is_staff)
        except (APIException, DatabaseError):
            # A bad token, or the database down: an anonymous caller, who still gets the status.
            request.user = AnonymousUser()
            return False


class HealthApi(_HealthView):
    @extend_schema(responses=dict)
    def get(self, request):
        report = health_report()
        code = 503 if report["down"] else 200
        return Response(report if self.sees_details(request) else {"status": report["status"]}, status=code)


class WebHealthApi(_HealthView):
    """The web process alone: it answers and reaches its database. For a load balancer, which should
    not take every web process out of rotation because the workers or Redis are down."""

    @extend_schema(responses=dict)
    def get(self, request):
        database = _timed(_database)
        report = {"status": "ok" if database["ok"] else "down", "components": {"database": database}}
        body = report if self.sees_details(request) else {"status": report["status"]}
        return Response(body, status=200 if database["ok"] else 503)
