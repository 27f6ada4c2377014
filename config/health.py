"""Health: each component answers for itself, so "degraded" says which part is down."""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView


def _timed(check) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        result = {"ok": True, **check()}
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


def _workers() -> dict[str, Any]:
    from config.celery import app

    replies = app.control.inspect(timeout=1.0).ping() or {}
    if not replies:
        raise RuntimeError("no Celery worker answered a ping within 1 s")
    return {"workers": sorted(replies)}


def health_report() -> dict[str, Any]:
    components = {"database": _timed(_database), "redis": _timed(_redis)}
    # Workers are reached through the broker: without Redis the ping can only time out.
    components["workers"] = _timed(_workers) if components["redis"]["ok"] else {"ok": False, "error": "Redis is down"}
    down = [name for name, c in components.items() if not c["ok"]]
    return {"status": "degraded" if down else "ok", "down": down, "components": components}


class HealthApi(APIView):
    permission_classes = [AllowAny]
    authentication_classes: list = []

    @extend_schema(responses=dict)
    def get(self, request):
        report = health_report()
        return Response(report, status=503 if report["down"] else 200)
