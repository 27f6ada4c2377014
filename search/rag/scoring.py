"""Class scores from retrieved support patches.

For every class, the k support patches most similar to any patch of the query are retrieved (each
support patch counted once, at its best query patch). A class's raw score is the **mean** of those k
cosines, and the scores shown are a softmax of the raw scores over the classes at a temperature T:

    p_c = exp(mean_c / T) / Σ_c' exp(mean_c' / T)

Every class contributes the same number of patches, so a class with more example images cannot win
by count — which is what the RAG Vision Engine's sum over a shared top-k does: there, a class with
three times the examples fills three times the slots. T is in cosine units: at the default 0.05, a
class whose mean cosine is 0.05 higher has e ≈ 2.7 times the odds. A class with fewer than k patches
is averaged over the patches it has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def class_means(top_k: Mapping[str, Sequence[float]]) -> dict[str, float]:
    return {label: float(np.mean(sims)) for label, sims in top_k.items() if len(sims)}


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
