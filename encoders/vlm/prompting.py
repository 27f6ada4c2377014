"""The prompt, rendered once for every backend from the template files in `prompts/`.

A conversation is a system prompt plus one user turn of interleaved parts: the query image
(introduced by `query.txt`), each evidence crop introduced by its class and similarity
(`evidence.txt`), then the scores, the question and the answer format (`user.txt`). Backends
translate the parts into their own message format (Hugging Face chat messages, OpenAI content parts)
and never add words of their own, so both see the same prompt.

Templates are `string.Template` files; `LOUPE_VLM_PROMPTS_DIR` may hold replacements for any of
them (a file missing there falls back to the packaged one). They are read on every request, so an
edit applies without a restart. Placeholders, available in every template and in the caller's own
system and user prompts:

    $classes        the class labels, quoted, comma-separated: "clean", "dirty"
    $class_scores   one line per class that has a score: - "dirty": 0.620
    $question       the caller's user prompt, else question.txt
    $evidence_count how many evidence crops follow the query
    $number, $label, $similarity   evidence.txt only: 1-based position, class, cosine (2 decimals)

Unknown placeholders are left as written (`safe_substitute`), so a `$` in a prompt is harmless.

A request with a flag key (the RAG Vision Engine's contract) uses none of this: its system prompt
and user prompt go exactly as the caller wrote them, the images first, in the engine's order (the
query, then the evidence crops class by class), and no template, placeholder or word of Loupe's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from django.conf import settings
from PIL import Image

if TYPE_CHECKING:
    from encoders.vlm.base import VlmRequest

PACKAGED_PROMPTS_DIR = Path(__file__).resolve().parent / "prompts"
TEMPLATE_NAMES = ("system.txt", "question.txt", "query.txt", "evidence.txt", "user.txt")


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    image: Image.Image
    role: str  # "query" or "evidence", for backends and tests that care which is which


@dataclass(frozen=True)
class Conversation:
    system: str
    parts: tuple[TextPart | ImagePart, ...]

    @property
    def images(self) -> list[Image.Image]:
        return [part.image for part in self.parts if isinstance(part, ImagePart)]

    def text_with_placeholders(self, placeholder: str = "<image>") -> str:
        """The user turn as one string, each image replaced by `placeholder` (for logs and tests)."""
        return "".join(part.text if isinstance(part, TextPart) else placeholder for part in self.parts)


def build_conversation(request: VlmRequest) -> Conversation:
    if request.flag_key is not None:
        return verbatim_conversation(request)
    values = {
        "classes": ", ".join(_quoted(label) for label in request.classes),
        "class_scores": _score_lines(request),
        "evidence_count": str(len(request.evidence)),
    }
    question = request.user_prompt.strip() or load_template("question.txt")
    values["question"] = _render(question, values)
    system = _render(request.system_prompt.strip() or load_template("system.txt"), values)

    parts: list[TextPart | ImagePart] = [TextPart(_render(load_template("query.txt"), values) + "\n")]
    parts.append(ImagePart(request.query, "query"))
    evidence_template = load_template("evidence.txt")
    for number, evidence in enumerate(request.evidence, start=1):
        line = _render(
            evidence_template,
            {**values, "number": str(number), "label": evidence.label, "similarity": f"{evidence.similarity:.2f}"},
        )
        parts.append(TextPart(f"\n{line}\n"))
        parts.append(ImagePart(evidence.image, "evidence"))
    parts.append(TextPart("\n" + _render(load_template("user.txt"), values)))
    return Conversation(system=system, parts=tuple(parts))


def verbatim_conversation(request: VlmRequest) -> Conversation:
    images = [ImagePart(request.query, "query"), *(ImagePart(e.image, "evidence") for e in request.evidence)]
    return Conversation(system=request.system_prompt, parts=(*images, TextPart(request.user_prompt)))


def load_template(name: str) -> str:
    if name not in TEMPLATE_NAMES:
        raise ValueError(f"No prompt template {name!r}; templates: {', '.join(TEMPLATE_NAMES)}.")
    override = _override_dir()
    path = override / name if override and (override / name).is_file() else PACKAGED_PROMPTS_DIR / name
    return path.read_text(encoding="utf-8").strip("\n")


def _override_dir() -> Path | None:
    configured = getattr(settings, "LOUPE_VLM_PROMPTS_DIR", "")
    return Path(configured) if configured else None


def _render(template: str, values: dict[str, str]) -> str:
    return Template(template).safe_substitute(values)


def _quoted(label: str) -> str:
    return f'"{label}"'


def _score_lines(request: VlmRequest) -> str:
    lines = [
        f"- {_quoted(label)}: {float(request.class_scores[label]):.3f}"
        for label in request.classes
        if label in request.class_scores
    ]
    return "\n".join(lines) if lines else "- (no retrieval scores)"
