"""Writing one benchmark's results into docs/benchmarks.md without touching the other sections."""

from __future__ import annotations

from pathlib import Path


def replace_marked_section(path: Path, *, start: str, end: str, heading: str, body: str) -> None:
    """Replace the text between the `start` and `end` markers; when they are missing, append the
    section under `heading`. Everything else in the file is kept."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + start + "\n" + body.strip() + "\n" + end + tail
    else:
        text = text.rstrip() + f"\n\n{heading}\n\n{start}\n{body.strip()}\n{end}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
