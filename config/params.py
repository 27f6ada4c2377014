"""Integers and ids out of query strings, form fields and JSON values, parsed one way everywhere.

`str.isdigit()` and `int()` disagree: "²".isdigit() is True and int("²") raises, while int(" 7"),
int("1_0") and int("٣") succeed. Here an integer is ASCII digits with an optional minus sign (or a
JSON integer, never a boolean), inside the bounds given; anything else is a 400 `ApplicationError`
naming the parameter, in the one error shape (config/errors.py).
"""

from __future__ import annotations

import re

from config.errors import ApplicationError

MAX_ID = 2**63 - 1  # PostgreSQL bigint: no row has a larger primary key
_INTEGER = re.compile(r"-?[0-9]{1,30}")  # fullmatch: no spaces, underscores, signs twice or non-ASCII digits


def _shown(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_int(raw: object, *, name: str, minimum: int | None = None, maximum: int | None = None,
              code: str = "invalid", expected: str | None = None) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        value: int | None = raw
    elif isinstance(raw, str) and _INTEGER.fullmatch(raw):
        value = int(raw)
    else:
        value = None
    if value is None or (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if expected is None:
            expected = "an integer" + ("" if minimum is None else f" from {minimum}") + ("" if maximum is None else f" to {maximum}")
        raise ApplicationError(f"{name} must be {expected}; got {_shown(raw)}.", code=code, extra={"parameter": name})
    return value


def parse_id(raw: object, *, name: str, code: str = "invalid") -> int:
    """A primary key: a positive integer that fits a bigint."""
    return parse_int(raw, name=name, minimum=1, maximum=MAX_ID, code=code, expected="an id (a positive integer)")


def parse_id_list(raw: object, *, name: str, maximum: int) -> list[int]:
    """A non-empty list of ids (a JSON array, or a form's repeated field) of at most `maximum` items,
    each one as `parse_id` takes it; repeats are dropped, the first order kept."""
    if not isinstance(raw, list) or not raw:
        raise ApplicationError(f"{name} must be a non-empty list of ids; got {_shown(raw)}.", code="invalid",
                               extra={"parameter": name})
    if len(raw) > maximum:
        raise ApplicationError(f"{name} takes at most {maximum} ids per request; got {len(raw)}. Send them in parts.",
                               code="too_many_ids", extra={"parameter": name, "max_items": maximum})
    return list(dict.fromkeys(parse_id(value, name=f"{name}[{i}]") for i, value in enumerate(raw)))
