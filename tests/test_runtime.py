"""The embedded PostgreSQL's settings that search performance relies on (config/runtime.py)."""

from __future__ import annotations

import os

import pytest
from django.db import connection

from config import runtime


def _bytes(value: str) -> int:
    number, unit = int(value[:-2]), value[-2:].upper()
    return number * {"KB": 2**10, "MB": 2**20, "GB": 2**30, "TB": 2**40}[unit]


def test_shared_buffers_is_a_quarter_of_memory_at_most_8_gb_unless_configured(monkeypatch):
    monkeypatch.delenv("LOUPE_POSTGRES_SHARED_BUFFERS", raising=False)
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert _bytes(runtime.shared_buffers_setting()) == max(128 * 2**20, min(8 * 2**30, total // 4 // 2**20 * 2**20))
    monkeypatch.setenv("LOUPE_POSTGRES_SHARED_BUFFERS", "512MB")
    assert runtime.shared_buffers_setting() == "512MB"


@pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="a server of its own, not the embedded one")
def test_the_embedded_server_runs_with_it(db):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_size_bytes(current_setting('shared_buffers'))")
        (size,) = cursor.fetchone()
    assert size == _bytes(runtime.shared_buffers_setting())  # set by start_postgres, applied by its restart
