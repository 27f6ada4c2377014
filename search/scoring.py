"""Score-space combination of query parts. Pure NumPy: no database, no torch.

For an image vector e and a query with an image part v_img, a positive text v_pos and a negative
text v_neg, with weights w_img, w_pos, w_neg:

    cos_img = e · v_img
    cos_pos = calibrate(e · v_pos)
    cos_neg = calibrate(e · v_neg)
    score   = (w_img·cos_img + w_pos·cos_pos) / (w_img + w_pos) − w_neg·cos_neg

Calibration (SigLIP's sigmoid) applies to text cosines only: image-image cosines saturate under it.
A part that is absent or has weight 0 takes no part, in the numerator or the denominator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Calibrate = Callable[[np.ndarray], np.ndarray]

PARTS = ("image", "text", "negative")


class QueryError(ValueError):
    """A query that cannot give a meaningful ranking, with the reason."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Weights:
    image: float = 0.5
    text: float = 0.5
    negative: float = 0.5

    def __post_init__(self) -> None:
        for name in PARTS:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or math.isnan(value) or math.isinf(value) or value < 0:
                raise QueryError(f"Weight {name!r} must be a finite number ≥ 0, not {value!r}.", code="invalid_weight")


def active_parts(present: set[str], weights: Weights) -> set[str]:
    """The parts that count: present in the query and weighted above zero. Refuses queries whose
    scores would say nothing: no positive part at all (a negative alone scores every image ≤ 0)."""
    active = {part for part in present if getattr(weights, part) > 0}
    if not active & {"image", "text"}:
        if "negative" in active:
            raise QueryError(
                "A negative text alone cannot rank images: every score would be ≤ 0. Add a text or an "
                "image to search for, or give it a weight above 0.",
                code="negative_only_query",
            )
        raise QueryError("Nothing to search for: give a text, an image, or both, with a weight above 0.", code="empty_query")
    return active


def combine(
    cosines: dict[str, np.ndarray], weights: Weights, *, calibrate: Calibrate | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Scores for every row, and the per-part values that made them (calibrated for text parts)."""
    active = active_parts(set(cosines), weights)
    calibrate = calibrate or (lambda cos: np.asarray(cos, dtype=np.float32))
    parts: dict[str, np.ndarray] = {}
    for part in active:
        raw = np.asarray(cosines[part], dtype=np.float32)
        parts[part] = raw if part == "image" else np.asarray(calibrate(raw), dtype=np.float32)
    positive_weight = sum(getattr(weights, p) for p in ("image", "text") if p in active)
    n = len(next(iter(parts.values())))
    numerator = np.zeros(n, dtype=np.float64)
    for part in ("image", "text"):
        if part in active:
            numerator += getattr(weights, part) * parts[part].astype(np.float64)
    scores = numerator / positive_weight
    if "negative" in active:
        scores -= weights.negative * parts["negative"].astype(np.float64)
    return scores, parts


def rank(scores: np.ndarray, ids: np.ndarray, *, min_score: float, max_results: int) -> np.ndarray:
    """Indices of rows with score ≥ min_score, best first, at most max_results. Ties go to the
    lower id, so the order is the same however the rows arrived."""
    scores = np.asarray(scores, dtype=np.float64)
    keep = np.flatnonzero(scores >= min_score)
    order = np.lexsort((np.asarray(ids)[keep], -scores[keep]))
    return keep[order][:max_results]


def combined_query(vectors: dict[str, np.ndarray], weights: Weights) -> np.ndarray | None:
    """Without calibration the score is linear in the image vector: score = e · q* with
    q* = (w_img·v_img + w_pos·v_pos)/(w_img + w_pos) − w_neg·v_neg. Its nearest neighbours are the
    exact combined top results, which the parts' own neighbours can miss. Unit-normalized (the
    order by cosine with q*/|q*| is the order by e · q*); None when it degenerates to zero."""
    active = active_parts(set(vectors), weights)
    positive = [p for p in ("image", "text") if p in active]
    q = sum(getattr(weights, p) * np.asarray(vectors[p], dtype=np.float64) for p in positive)
    q = q / sum(getattr(weights, p) for p in positive)
    if "negative" in active:
        q = q - weights.negative * np.asarray(vectors["negative"], dtype=np.float64)
    norm = np.linalg.norm(q)
    return None if norm < 1e-9 else (q / norm).astype(np.float32)


def concept_mass(probabilities: np.ndarray, classes: tuple[int, ...] | list[int]) -> np.ndarray:
    """A word query's `text` part on a classifier-head encoder (encoders/concepts.py): each image's
    probability mass on the matched classes, (n, 1000) → (n,) in [0, 1]. Already a probability, so
    it needs no calibration and sits in the score space beside image cosines as SigLIP's does."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    return probabilities[:, list(classes)].sum(axis=1).astype(np.float32)
