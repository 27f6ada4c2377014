"""Class-score math: a mean over a fixed k per class, then a softmax at a temperature."""

import math

import numpy as np
import pytest

from search.rag import scoring


def test_scores_are_a_softmax_of_class_means():
    means = scoring.class_means({"clean": [0.9, 0.7], "dirty": [0.6, 0.6]})
    assert means == pytest.approx({"clean": 0.8, "dirty": 0.6})
    scores = scoring.softmax_scores(means, temperature=0.1)
    expected_clean = math.exp(8) / (math.exp(8) + math.exp(6))
    assert scores["clean"] == pytest.approx(expected_clean)
    assert scores["dirty"] == pytest.approx(1 - expected_clean)
    assert sum(scores.values()) == pytest.approx(1.0)


def test_a_class_with_more_examples_does_not_win_by_count():
    # Both classes' best k patches are equally similar; "many" merely has ten times the patches.
    few = {"few": [0.8, 0.8, 0.8]}
    many_top_k = sorted([0.8] * 3 + [0.5] * 27, reverse=True)[:3]
    scores = scoring.softmax_scores(scoring.class_means({**few, "many": many_top_k}), temperature=0.05)
    assert scores["few"] == pytest.approx(scores["many"]) == pytest.approx(0.5)
    # The reference's rule, a sum over a shared top-k, would have given "many" the larger share.


def test_lower_temperature_sharpens_and_higher_flattens():
    means = {"a": 0.70, "b": 0.65}
    sharp = scoring.softmax_scores(means, temperature=0.01)["a"]
    flat = scoring.softmax_scores(means, temperature=1.0)["a"]
    assert sharp > 0.99 and 0.5 < flat < 0.52


def test_large_logits_do_not_overflow():
    scores = scoring.softmax_scores({"a": 1.0, "b": -1.0}, temperature=0.001)
    assert scores == pytest.approx({"a": 1.0, "b": 0.0})
    assert all(np.isfinite(v) for v in scores.values())


def test_temperature_must_be_positive_and_empty_input_gives_nothing():
    with pytest.raises(ValueError):
        scoring.softmax_scores({"a": 0.5}, temperature=0)
    assert scoring.softmax_scores({}, temperature=0.05) == {}
    assert scoring.class_means({"a": []}) == {}


def test_decision_is_the_top_class_and_ties_go_to_the_first_listed():
    assert scoring.retrieval_decision({"a": 0.2, "b": 0.8}) == "b"
    assert scoring.retrieval_decision({"x": 0.5, "y": 0.5}) == "x"
    assert scoring.retrieval_decision({}) is None


def test_background_query_patches_are_left_out_of_the_means():
    # Two background patches match both classes perfectly; the object's patch decides.
    best = {"clean": [1.0, 1.0, 0.2], "dirty": [1.0, 1.0, 0.6]}
    keep = [False, False, True]
    assert scoring.class_means(best, keep=keep) == pytest.approx({"clean": 0.2, "dirty": 0.6})
    assert scoring.class_means(best) == pytest.approx({"clean": 2.2 / 3, "dirty": 2.6 / 3})
    # A query with nothing but background still gets scores: every patch counts then.
    assert scoring.class_means(best, keep=[False] * 3) == scoring.class_means(best)
