"""Class scores from patch matches.

Each patch of the query image is matched with its most similar support patch of each class. A
class's raw score is the **mean over the query patches** of those best cosines (the late-interaction
"max-sim" of ColBERT, averaged), and the scores shown are a softmax over the classes at a
temperature T:

    raw_c = (1/Q) Σ_q max_{p ∈ c} cos(q, p)        p_c = exp(raw_c / T) / Σ_c' exp(raw_c' / T)

Every class is scored on the same Q terms, so a class cannot win by the number of its examples the
way the RAG Vision Engine's sum over a shared top-k lets it (there, a class with three times the
examples fills three times the slots). More examples still give a class more patches to match — the
nature of nearest-neighbour evidence, not a count. T is in cosine units: at the default 0.05, a class
whose mean is 0.05 higher has e ≈ 2.7 times the odds.

Why the mean over query patches and not the mean of the k best support patches (the first version):
on Fashion-MNIST with EfficientNet-Lite0 the k best pairs were ~90 % black background for every
class, and 20-shot accuracy was 0.548 against 0.737 for a nearest-prototype baseline; averaging
every query patch's best match scores 0.780 (docs/benchmarks.md, "Quality"). The k best support
patches per class remain the evidence shown.

Background query patches are left out of the mean (the foreground mask of search/rag/patches.py:
near-uniform patches; none are left out when every patch is uniform). On the RAG Vision Engine's
demo — cars cut out on black — half the query is black, and black matched black in every class
equally, which only pulled the classes together; on Fashion-MNIST (items on black) leaving them out
scores 0.491 / 0.716 / 0.780 at 1 / 5 / 20 shots against 0.480 / 0.713 / 0.780 with every patch
(1,000 test images, EfficientNet-Lite0 tokens at 224 px / 32 px; docs/encoders.md, "Compatibility").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def class_means(best: Mapping[str, Sequence[float]], *, keep: Sequence[bool] | None = None) -> dict[str, float]:
    """Per class, the mean of the query patches' best cosines, over the patches `keep` marks (all of
    them when it is None or marks none)."""
    mask = None if keep is None else np.asarray(keep, dtype=bool)
    if mask is not None and not mask.any():
        mask = None
    return {
        label: float(np.mean(np.asarray(sims)[mask] if mask is not None else sims))
        for label, sims in best.items()
        if len(sims)
    }


def softmax_scores(means: Mapping[str, float], *, temperature: float) -> dict[str, float]:
    if temperature <= 0:
        raise ValueError("The score temperature must be positive.")
    if not means:
        return {}
    labels = list(means)
    logits = np.array([means[label] for label in labels], dtype=np.float64) / temperature
    weights = np.exp(logits - logits.max())  # shifted: exp of large logits would overflow
    probabilities = weights / weights.sum()
    return {label: float(p) for label, p in zip(labels, probabilities, strict=True)}


def retrieval_decision(scores: Mapping[str, float]) -> str | None:
    """The top class; ties go to the class listed first, so the answer does not depend on chance."""
    return max(scores, key=lambda label: scores[label]) if scores else None
