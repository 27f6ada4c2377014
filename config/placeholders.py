"""Values that ship as examples (`.env.example`, the docs, base settings' development key). Anyone who has
read the same file knows them, so a deployment must not run on one: production settings, Flower's
start-up check and `ensure_admin` refuse them."""

from __future__ import annotations

# Exact values that appear in this repository as examples.
KNOWN_PLACEHOLDERS = frozenset({
    "change-me",
    "change-me-to-a-long-random-string",  # .env.example's DJANGO_SECRET_KEY before this change
    "loupe-insecure-development-key-change-me",  # base settings' key for `make run`
    "admin:change-me",  # .env.example's FLOWER_BASIC_AUTH before this change
    "secret",
    "password",
    "changeme",
})
# Any value built around these words is an unfilled example too ("change-me-please", "CHANGEME123").
PLACEHOLDER_MARKERS = ("change-me", "changeme", "change_me", "replace-me", "insecure")


def is_placeholder(value: str | None) -> bool:
    """Empty, one of the shipped example values, or a value that says it must be changed."""
    normalized = (value or "").strip().lower()
    return not normalized or normalized in KNOWN_PLACEHOLDERS or any(m in normalized for m in PLACEHOLDER_MARKERS)
