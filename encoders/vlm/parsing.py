"""Reading a VLM's answer: `Class: <label>` and `Explanation: <text>` lines. Pure; no I/O.

The flag is only ever one of the request's classes, compared after stripping quotes, markdown
emphasis, brackets and trailing punctuation — first exactly, then ignoring case. Free text is never
searched for a class name ("it is not dirty" must not become "dirty"). Where the model writes
several class lines (it corrected itself), the last one that names a class wins. `Flag:` is read as
a synonym of `Class:`; a reply that is nothing but one label counts too.

With a flag key (the RAG Vision Engine's contract, `parse_flag`) the answer is a boolean instead:
`<key>: True|False` or `<key> = True|False`, any case, with or without an explanation after it.
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


@dataclass(frozen=True)
class ParsedFlag:
    value: bool | None
    parsed: bool
    explanation: str


_TRAILER = " \t.,;:!?-–—()[]*_"


def parse_flag(raw: str, key: str) -> ParsedFlag:
    """`VisibleDirtyFlag: True`, `visibledirtyflag = false — mud on the door`, `**VisibleDirtyFlag**: TRUE`.

    The key must stand as a word (`NotVisibleDirtyFlag` is another key); where the model writes it
    more than once, the last one counts, as in the engine. The explanation is the last
    `Explanation:` field when there is one, else what follows the value on its line.
    """
    flag_line = re.compile(
        rf"(?<!\w){re.escape(key.strip())}(?!\w)[\s*_`\"']*[:：=]\s*[*_`\"']*(true|false)(?!\w)(.*)$", re.IGNORECASE
    )
    value, after = None, ""
    explanations: list[list[str]] = []
    current: list[str] | None = None
    for line in raw.splitlines():
        flag = flag_line.search(line)
        field = _FIELD_LINE.match(line)
        if flag:
            value, after = flag.group(1).lower() == "true", flag.group(2)
            current = None
        elif field and field.group(1).lower() == "explanation":
            current = [field.group(2)]
            explanations.append(current)
        elif field:
            current = None
        elif current is not None:
            current.append(line)
    explanation = _clean_explanation(explanations[-1]) if explanations else after.strip(_TRAILER)
    return ParsedFlag(value=value, parsed=value is not None, explanation=explanation)
