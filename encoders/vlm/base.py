"""The request, the answer, and the one interface every VLM backend implements.

No torch here: the web tier builds requests and reads answers. A backend only turns a rendered
conversation into text (`generate`); rendering the prompt and parsing the answer happen here,
once, so every backend sees the same prompt and is held to the same answer format.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from numbers import Integral, Real

from PIL import Image

from encoders.vlm.errors import VlmRequestError
from encoders.vlm.parsing import parse_answer, parse_flag
from encoders.vlm.prompting import Conversation, build_conversation


@dataclass(frozen=True)
class Evidence:
    """One retrieved support patch, already cropped by the caller."""

    label: str  # its class
    image: Image.Image  # the crop (RGB)
    similarity: float  # cosine with the query patch it matched


@dataclass(frozen=True)
class VlmRequest:
    query: Image.Image  # RGB query image
    classes: tuple[str, ...]  # all class labels of the support set, in display order
    evidence: tuple[Evidence, ...]  # at most max_patches_per_class per class, best first within a class
    class_scores: dict[str, float]  # normalized retrieval scores (sum to 1)
    system_prompt: str = ""  # "" → prompts/system.txt
    user_prompt: str = ""  # "" → prompts/question.txt
    temperature: float = 0.2  # 0 → greedy decoding
    top_p: float = 0.9
    max_new_tokens: int = 200
    # The RAG Vision Engine's contract: the caller's prompts go verbatim (prompting.py) and the
    # answer is `<flag_key>: True|False`, read into VlmAnswer.flag_value. None: Loupe's class prompt.
    flag_key: str | None = None

    def __post_init__(self):
        # Checked here rather than in each backend, so a bad request fails the same way (400) before
        # a model loads or a byte goes over the network.
        classes = tuple(self.classes)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "evidence", tuple(self.evidence))
        if not classes or any(not isinstance(c, str) or not c.strip() for c in classes):
            raise VlmRequestError("A VLM request needs at least one class, and every class a non-empty label.")
        if len(set(classes)) != len(classes):
            raise VlmRequestError(f"Class labels must be distinct; got {list(classes)}.")
        unknown = sorted({e.label for e in self.evidence} - set(classes))
        if unknown:
            raise VlmRequestError(f"Evidence labelled {unknown} names no class of {list(classes)}.")
        extra_scores = sorted(set(self.class_scores) - set(classes))
        if extra_scores:
            raise VlmRequestError(f"Class scores for {extra_scores} name no class of {list(classes)}.")
        if not _finite(self.temperature) or self.temperature < 0:
            raise VlmRequestError(f"temperature must be a number >= 0; got {self.temperature!r}.")
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise VlmRequestError(f"top_p must be in (0, 1]; got {self.top_p!r}.")
        if (
            isinstance(self.max_new_tokens, bool)
            or not isinstance(self.max_new_tokens, Integral)
            or self.max_new_tokens < 1
        ):
            raise VlmRequestError(f"max_new_tokens must be an integer >= 1; got {self.max_new_tokens!r}.")
        if self.flag_key is not None and not (isinstance(self.flag_key, str) and self.flag_key.strip()):
            raise VlmRequestError("A flag key must be a non-empty string.")
        if not all(_finite(e.similarity) for e in self.evidence) or not all(map(_finite, self.class_scores.values())):
            raise VlmRequestError("Evidence similarities and class scores must be finite numbers.")
        # NumPy scalars pass the checks above; plain Python numbers are what JSON and generate() take.
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        object.__setattr__(self, "max_new_tokens", int(self.max_new_tokens))
        images = [self.query, *(e.image for e in self.evidence)]
        if not all(isinstance(image, Image.Image) for image in images):
            raise VlmRequestError("The query and every evidence crop must be PIL images.")

    @property
    def images(self) -> list[Image.Image]:
        """In prompt order: the query, then the evidence crops."""
        return [self.query, *(e.image for e in self.evidence)]


@dataclass(frozen=True)
class VlmAnswer:
    flag: str | None  # one of request.classes, or None when the answer could not be parsed (or a flag key was asked)
    parsed: bool
    explanation: str  # the model's explanation ("" when none)
    raw: str  # the raw generated text (the transcript)
    model: str  # the VLM spec that answered
    flag_value: bool | None = None  # with a flag key: the model's True/False, None when it wrote none


class VisionLanguageModel(ABC):
    spec: str

    def answer(self, request: VlmRequest) -> VlmAnswer:
        raw = self.generate(build_conversation(request), request)
        if request.flag_key is not None:
            read = parse_flag(raw, request.flag_key)
            return VlmAnswer(
                flag=None, parsed=read.parsed, explanation=read.explanation, raw=raw, model=self.spec, flag_value=read.value
            )
        parsed = parse_answer(raw, request.classes)
        return VlmAnswer(
            flag=parsed.flag, parsed=parsed.parsed, explanation=parsed.explanation, raw=raw, model=self.spec
        )

    @abstractmethod
    def generate(self, conversation: Conversation, request: VlmRequest) -> str:
        """The text the model generated for `conversation`, honouring the request's temperature,
        top_p and max_new_tokens; only new text, never the prompt."""


def _finite(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
