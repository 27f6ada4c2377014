"""bench/photomap_indexing.py's arithmetic: the ratio it reports and the agreement of the two sides'
vectors. (Running it needs PhotoMapAI's wheel from the package index; the Loupe side is the
indexing job the worker tests cover.)"""

import numpy as np

from bench.photomap_indexing import GOAL, agreement, render


def _result(*, loupe_s: float, loop_s: float) -> dict:
    return {
        "date": "2026-12-06", "machine": "2 CPU cores", "command": "python -m bench.photomap_indexing",
        "commit": "abc1234", "images": 200, "mean_kb": 600.0, "repeat": 2,
        "photomap_params": {"batch": 8, "workers": 4},
        "photomap": {"total_s": loop_s + 1.0, "loop_s": loop_s, "load_s": 0.8, "umap_s": 0.2},
        "loupe": {"total_s": loupe_s, "model_id": "open-clip:ViT-B-32/random@sha256:0+dtype=bf16", "chunks": 1},
        "agreement": {"min": 0.9999, "mean": 0.99995}, "load_before": "0.1", "load_after": "0.2",
        "elapsed_s": 90.0, "note": "a note",
    }


def test_the_ratio_is_taken_against_photomaps_loop_alone_and_judged_against_the_goal():
    met = render(_result(loupe_s=4.0, loop_s=12.0))  # 50 vs 16.7 images/s (15.4 with load and UMAP)
    assert "**3.00**" in met and "— **met**" in met and "| 50.0 |" in met and met.rstrip().endswith("a note")
    assert "(3.00× against its loop alone, 3.25× against the run as it makes it)" in met
    short = render(_result(loupe_s=10.0, loop_s=12.0))  # 1.20x
    assert 1.2 < GOAL and "**1.20**" in short and "**not met**" in short


def test_agreement_is_the_cosine_of_each_images_two_vectors():
    a = np.array([[1.0, 0.0], [0.0, 2.0]])
    b = np.array([[1.0, 1.0], [0.0, 3.0]])
    got = agreement(a, b)
    assert np.isclose(got["min"], np.sqrt(0.5)) and np.isclose(got["mean"], (np.sqrt(0.5) + 1) / 2)
