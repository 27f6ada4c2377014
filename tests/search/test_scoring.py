import math

import numpy as np
import pytest

from search import scoring
from search.scoring import QueryError, Weights, active_parts, combine, rank


def test_image_and_text_average_by_weight_and_negative_subtracts():
    cos = {"image": np.array([0.9, 0.1]), "text": np.array([0.2, 0.8]), "negative": np.array([0.5, 0.0])}
    scores, parts = combine(cos, Weights(image=1.0, text=3.0, negative=0.4))
    expected0 = (1.0 * 0.9 + 3.0 * 0.2) / 4.0 - 0.4 * 0.5
    expected1 = (1.0 * 0.1 + 3.0 * 0.8) / 4.0 - 0.0
    assert scores == pytest.approx([expected0, expected1])
    assert set(parts) == {"image", "text", "negative"}


def test_calibration_applies_to_text_parts_only():
    def calibrate(x):
        return 1 / (1 + np.exp(-(x * 10 - 5)))

    cos = {"image": np.array([0.5]), "text": np.array([0.5]), "negative": np.array([0.3])}
    scores, parts = combine(cos, Weights(1, 1, 1), calibrate=calibrate)
    assert parts["image"][0] == pytest.approx(0.5)
    assert parts["text"][0] == pytest.approx(0.5)  # sigmoid(0)
    assert parts["negative"][0] == pytest.approx(1 / (1 + math.exp(2)))
    assert scores[0] == pytest.approx((0.5 + 0.5) / 2 - 1 / (1 + math.exp(2)))


def test_weight_zero_disables_a_part_entirely():
    cos = {"image": np.array([0.9, 0.1]), "text": np.array([0.1, 0.9])}
    scores, parts = combine(cos, Weights(image=0, text=0.5, negative=0.5))
    assert scores == pytest.approx([0.1, 0.9])
    assert set(parts) == {"text"}


@pytest.mark.parametrize("present", [{"negative"}, set()])
def test_queries_without_a_positive_part_are_refused_with_a_reason(present):
    with pytest.raises(QueryError) as caught:
        active_parts(present, Weights())
    assert caught.value.code == ("negative_only_query" if present else "empty_query")
    assert "≤ 0" in caught.value.message or "Nothing to search" in caught.value.message


def test_positive_parts_with_zero_weight_leave_a_negative_only_query():
    with pytest.raises(QueryError) as caught:
        active_parts({"text", "negative"}, Weights(text=0))
    assert caught.value.code == "negative_only_query"


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf")])
def test_weights_must_be_finite_and_non_negative(bad):
    with pytest.raises(QueryError):
        Weights(image=bad)


def test_rank_filters_by_min_score_orders_and_breaks_ties_by_id():
    scores = np.array([0.5, 0.9, 0.5, 0.1, 0.7])
    ids = np.array([30, 10, 20, 40, 50])
    order = rank(scores, ids, min_score=0.2, max_results=10)
    assert ids[order].tolist() == [10, 50, 20, 30]
    assert ids[rank(scores, ids, min_score=0.2, max_results=2)].tolist() == [10, 50]
    assert rank(scores, ids, min_score=0.95, max_results=10).tolist() == []


def test_concept_mass_is_the_probability_on_the_matched_classes():
    probabilities = np.zeros((2, 1000), dtype=np.float32)
    probabilities[0, [281, 282]] = [0.4, 0.3]
    probabilities[0, 967] = 0.3
    probabilities[1, 967] = 1.0
    np.testing.assert_allclose(scoring.concept_mass(probabilities, (281, 282, 285)), [0.7, 0.0], atol=1e-6)
    # as the text part it combines like a calibrated SigLIP text score: a weighted mean with the image part
    scores, parts = scoring.combine({"image": np.array([0.2, 0.9]), "text": scoring.concept_mass(probabilities, (967,))},
                                    scoring.Weights(image=1, text=3))
    np.testing.assert_allclose(scores, [(0.2 + 3 * 0.3) / 4, (0.9 + 3 * 1.0) / 4], atol=1e-6)
