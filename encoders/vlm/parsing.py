"""Reading a VLM's answer: `Class: <label>` and `Explanation: <text>` lines. Pure; no I/O.

The flag is only ever one of the request's classes, compared after stripping quotes, markdown
emphasis, brackets and trailing punctuation — first exactly, then ignoring case. Free text is never
searched for a class name ("it is not dirty" must not become "dirty"). Where the model writes
several class lines (it corrected itself), the last one that names a class wins. `Flag:` is read as
a synonym of `Class:`; a reply that is nothing but one label counts too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

# "Class: x", "**Class:** x", "- Flag: x", "### Explanation: …" — the field name opens the line.
_FIELD_LINE = re.compile(r"^[\s>*_#-]*(class|flag|explanation)[\s*_]*[:：]\s*(.*)$", re.IGNORECASE)
_DECORATION = " \t\"'`*_“”‘’«»<>[](){}"
_TRAILING_PUNCTUATION = ".,;:!?。"


@dataclass(frozen=True)
class ParsedAnswer:
    flag: str | None
    parsed: bool
    explanation: str


def parse_answer(raw: str, classes: Sequence[str]) -> ParsedAnswer:
    class_values: list[str] = []
    explanations: list[list[str]] = []
    current_explanation: list[str] | None = None
    for line in raw.splitlines():
        field = _FIELD_LINE.match(line)
        if field is None:
            if current_explanation is not None:
                current_explanation.append(line)
            continue
        name, value = field.group(1).lower(), field.group(2)
        if name == "explanation":
            current_explanation = [value]
            explanations.append(current_explanation)
        else:
            class_values.append(value)
            current_explanation = None  # an explanation ends where the next field starts

    flag = next((match for value in reversed(class_values) if (match := match_class(value, classes))), None)
    if flag is None and not class_values and not explanations:
        flag = match_class(raw, classes)  # a bare "dirty." with no format at all
    explanation = _clean_explanation(explanations[-1]) if explanations else ""
    return ParsedAnswer(flag=flag, parsed=flag is not None, explanation=explanation)


def match_class(value: str, classes: Sequence[str]) -> str | None:
    """The one class `value` names, or None — also when it could name two (never guess)."""
    wanted = normalize_label(value)
    if not wanted:
        return None
    exact = [label for label in classes if normalize_label(label) == wanted]
    if len(exact) == 1:
        return exact[0]
    folded = [label for label in classes if normalize_label(label).casefold() == wanted.casefold()]
    return folded[0] if len(folded) == 1 else None


def normalize_label(value: str) -> str:
    previous = None
    text = value.strip()
    while text != previous:  # `"dirty".` and `**dirty**.` both come down to dirty
        previous = text
        text = text.strip(_DECORATION).rstrip(_TRAILING_PUNCTUATION)
    return " ".join(text.split())


def _clean_explanation(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in lines).strip()
    return text.strip("*_ ").strip()
