"""The pure parts of the quality benchmark (bench/quality.py): the IDX reader, sampling, the metrics,
the nearest-prototype baseline and the patch classifier's math on hand-built vectors, and the doc
writer. The full run (a whole stack, the real encoder, minutes of CPU) is not started here."""

from __future__ import annotations

import gzip
import io
import json
import struct

import numpy as np
import pytest

from bench import quality


def write_idx(path, array: np.ndarray, type_byte: int = 0x08, *, compress: bool = False) -> None:
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(quality.IDX_DTYPES[type_byte]).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def fake_dataset(root, *, per_class: int = 3, duplicate_of_first: bool = False) -> None:
    """A tiny Fashion-MNIST: images whose pixels encode their index, labels 0..9 in turn."""
    rng = np.random.default_rng(0)
    for split in ("t10k", "train"):
        n = per_class * 10
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        if duplicate_of_first:
            images[10] = images[0]  # same class (index 10 → label 0), byte-identical
        labels = np.arange(n, dtype=np.uint8) % 10
        images_name, labels_name = quality.SPLIT_FILES[split]
        write_idx(root / images_name, images, compress=True)
        write_idx(root / labels_name, labels, compress=True)


# --- IDX -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_images_and_labels(tmp_path, compress):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 1], dtype=np.uint8)
    write_idx(tmp_path / "images.gz" if compress else tmp_path / "images", images, compress=compress)
    write_idx(tmp_path / "labels.gz" if compress else tmp_path / "labels", labels, compress=compress)

    read_images = quality.read_idx(tmp_path / ("images.gz" if compress else "images"))
    read_labels = quality.read_idx(tmp_path / ("labels.gz" if compress else "labels"))

    assert read_images.shape == (2, 3, 4) and read_images.dtype == np.uint8
    np.testing.assert_array_equal(read_images, images)
    np.testing.assert_array_equal(read_labels, labels)


def test_read_idx_big_endian_int32(tmp_path):
    values = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    write_idx(tmp_path / "ints", values, type_byte=0x0C)
    np.testing.assert_array_equal(quality.read_idx(tmp_path / "ints"), values)


def test_read_idx_rejects_bad_magic_and_short_data(tmp_path):
    (tmp_path / "png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    with pytest.raises(ValueError, match="not an IDX file"):
        quality.read_idx(tmp_path / "png")
    write_idx(tmp_path / "short", np.zeros((4, 2), dtype=np.uint8))
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match=r"header says \(4, 2\)"):
        quality.read_idx(tmp_path / "short")


def test_missing_dataset_names_the_package_and_exits_non_zero(tmp_path, capsys):
    with pytest.raises(quality.DatasetMissingError, match="apt-get install dataset-fashion-mnist"):
        quality.load_split(tmp_path, "t10k")
    assert quality.main(["--dataset", str(tmp_path), "--no-doc"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err


# --- sampling --------------------------------------------------------------------------------------


def test_draw_per_class_is_seeded_balanced_and_skips_identical_files(tmp_path):
    fake_dataset(tmp_path, per_class=3, duplicate_of_first=True)
    split = quality.load_split(tmp_path, "t10k")

    first = quality.draw_per_class(split, "t10k", per_class=2, rng=np.random.default_rng(5))
    again = quality.draw_per_class(split, "t10k", per_class=2, rng=np.random.default_rng(5))

    assert [s.index for s in first] == [s.index for s in again]
    assert [s.label for s in first] == [c for c in range(10) for _ in range(2)]
    assert all(split.labels[s.index] == s.label for s in first)
    assert len({s.png for s in first}) == len(first)
    # Class 0 has three images but two are the same bytes: only two distinct ones exist.
    with pytest.raises(ValueError, match="class 0 has only 2 distinct images"):
        quality.draw_per_class(split, "t10k", per_class=3, rng=np.random.default_rng(5))


def test_png_bytes_decode_to_the_same_pixels_the_worker_sees():
    pixels = np.random.default_rng(1).integers(0, 256, size=(28, 28), dtype=np.uint8)
    sample = quality.Sample("t10k", 0, 3, quality.png_bytes(pixels))
    rgb = np.asarray(quality.decode(sample))
    assert rgb.shape == (28, 28, 3)
    for channel in range(3):
        np.testing.assert_array_equal(rgb[:, :, channel], pixels)
    assert sample.name == "t10k-00000.png"


def test_first_per_class_nests_shot_counts():
    samples = [quality.Sample("train", i, i % 2, bytes([i])) for i in range(8)]  # labels 0,1,0,1,…
    one, three = quality.first_per_class(samples, 1), quality.first_per_class(samples, 3)
    assert [s.index for s in one] == [0, 1]
    assert [s.index for s in three] == [0, 1, 2, 3, 4, 5]
    assert set(one) <= set(three)


# --- metrics ----------------------------------------------------------------------------------------


def test_precision_recall_and_accuracy_by_hand():
    # Query labels 0 and 1; 3 of 4 and 1 of 4 neighbours share them.
    assert quality.precision_at_k([0, 1], [[0, 0, 2, 0], [1, 3, 3, 3]]) == pytest.approx((0.75 + 0.25) / 2)
    assert quality.recall_at_k([[1, 2, 3], [4, 5, 9]], [[3, 2, 1], [4, 5, 6]]) == pytest.approx((1 + 2 / 3) / 2)
    assert quality.accuracy(["a", "b", "c", "c"], ["a", "b", "b", "b"]) == 0.5
    with pytest.raises(ValueError):
        quality.accuracy([1], [1, 2])


def test_exact_neighbours_leave_the_query_out_and_break_ties_to_the_lower_index():
    vectors = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.1], [2.0, 0.0]])
    neighbours = quality.exact_neighbours(vectors, 2)
    # Row 0 equals rows 1 and 4 exactly (cosine 1): the lower index first, never itself.
    assert neighbours[0].tolist() == [1, 4]
    assert neighbours[4].tolist() == [0, 1]
    assert neighbours[2].tolist() == [3, 0]  # row 3 leans towards row 2 a little more than the others do


def test_nearest_prototype_uses_the_class_mean_not_the_closest_example():
    # Class 0: two examples far apart whose mean points along x; class 1: one example.
    support = np.array([[1.0, 1.0], [1.0, -1.0], [0.3, 1.0]])
    labels = [0, 0, 1]
    query = np.array([[0.6, 0.8]])
    # Its closest example is class 0's [1, 1] (cosine 0.99 vs 0.94), but class 0's prototype is
    # [1, 0] (cosine 0.6), so the prototype baseline says class 1.
    assert quality.nearest_neighbour(support, labels, query).tolist() == [0]
    assert quality.nearest_prototype(support, labels, query).tolist() == [1]
    along_x = np.array([[1.0, 0.05]])
    assert quality.nearest_prototype(support, labels, along_x).tolist() == [0]


def test_patch_class_means_take_each_support_patch_at_its_best_query_patch():
    query = np.array([[1.0, 0.0], [0.0, 1.0]])
    class_patches = {
        0: np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]),  # best cosines 1, 1, 0
        1: np.array([[1.0, 1.0]]),  # one patch: cosine 0.7071 with either query patch
    }
    means = quality.patch_class_means(query, class_patches, k=2)
    assert means[0] == pytest.approx(1.0)  # the top 2 of (1, 1, 0)
    assert means[1] == pytest.approx(np.sqrt(0.5))  # fewer patches than k: averaged over what it has
    assert quality.patch_class_means(query, class_patches, k=3)[0] == pytest.approx(2 / 3)
    assert quality.top_label(means) == 0


def test_softmax_keeps_the_order_and_ties_go_to_the_first_class():
    scores = quality.softmax({3: 0.50, 1: 0.55, 2: 0.50}, temperature=0.05)
    assert sum(scores.values()) == pytest.approx(1.0)
    assert scores[1] / scores[3] == pytest.approx(np.e)  # 0.05 higher at T = 0.05
    assert quality.top_label({3: 0.5, 2: 0.5}) == 3


def test_vectorized_patch_math_equals_the_per_query_reference():
    rng = np.random.default_rng(3)
    queries = quality.l2_normalize(rng.standard_normal((7, 5, 16)))
    support = quality.l2_normalize(rng.standard_normal((12, 16)))
    keep = rng.random((7, 5)) > 0.5
    keep[0] = False  # nothing kept: every patch counts
    best, best_kept = quality.best_cosines(support, queries, (None, keep), chunk=3)
    for i in range(7):
        for k in (1, 4, 50):
            assert quality.top_k_means(best, k)[i] == pytest.approx(quality.patch_class_means(queries[i], {0: support}, k=k)[0], abs=1e-6)
        kept = queries[i][keep[i]] if keep[i].any() else queries[i]
        assert quality.top_k_means(best_kept, 4)[i] == pytest.approx(quality.patch_class_means(kept, {0: support}, k=4)[0], abs=1e-6)


def test_patch_class_scores_and_the_blank_variants():
    background, shape = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    box = (0, 0, 1, 1)
    query = quality.PatchSet(np.array([background, shape]), [box, box], np.array([True, False]))
    support = [
        (0, quality.PatchSet(np.array([background, background]), [box, box], np.array([True, True]))),
        (1, quality.PatchSet(quality.l2_normalize([background, [0.0, 0.9, 0.1]]), [box, box], np.array([True, False]))),
    ]  # unit rows, as image_patches gives them
    scores = quality.patch_class_scores([query], support, k=1, ks=(2,))
    # k=1: both classes have a background patch at cosine 1 with the query's background: a tie, first class.
    assert scores.means["k=1"][0].tolist() == pytest.approx([1.0, 1.0])
    # k=2: class 1's second patch is the shape (0.9939), class 0's second is background again (1.0).
    assert scores.means["k=2"][0].tolist() == pytest.approx([1.0, (1.0 + 0.9 / np.sqrt(0.82)) / 2])
    # Background left out of the query: class 0's patches now meet only the shape (cosine 0).
    assert np.argmax(scores.means[f"k=1, {quality.BLANK_QUERY_OUT}"][0]) == 1
    assert scores.means[f"k=1, {quality.BLANK_BOTH_OUT}"][0].tolist() == pytest.approx([0.0, 0.9 / np.sqrt(0.82)])
    assert scores.blank_evidence_share == 1.0  # the k=1 evidence of both classes is background
    # The product's score: each query patch's best cosine in the class, averaged over the query's patches.
    # Class 0: background 1.0, shape 0.0 → 0.5; class 1: background 1.0, shape 0.9/√0.82 → higher: class 1 wins.
    shape_cos = 0.9 / np.sqrt(0.82)
    assert scores.means[quality.PRODUCT][0].tolist() == pytest.approx([0.5, (1.0 + shape_cos) / 2])
    assert scores.means[f"{quality.PRODUCT}, {quality.BLANK_QUERY_OUT}"][0].tolist() == pytest.approx([0.0, shape_cos])
    assert scores.means[f"{quality.PRODUCT}, {quality.EVERY_QUERY_PATCH}"][0].tolist() == pytest.approx([0.5, (1.0 + shape_cos) / 2])
    # With the product's foreground mask (near-uniform patches out), only the shape counts.
    masked = quality.PatchSet(query.vectors, query.boxes, query.blank, np.array([False, True]))
    product = quality.patch_class_scores([masked], support, k=1, ks=(2,))
    assert product.means[quality.PRODUCT][0].tolist() == pytest.approx([0.0, shape_cos])
    assert product.means[f"{quality.PRODUCT}, {quality.EVERY_QUERY_PATCH}"][0].tolist() == pytest.approx([0.5, (1.0 + shape_cos) / 2])


def test_query_best_means_is_the_products_score():
    from search.rag import scoring

    rng = np.random.default_rng(3)
    queries = quality.l2_normalize(rng.normal(size=(4, 6, 5))).astype(np.float32)
    support = quality.l2_normalize(rng.normal(size=(9, 5))).astype(np.float32)
    keep = rng.random((4, 6)) > 0.4
    keep[2] = False  # nothing kept: every patch counts, in both
    for i in range(4):
        best = (queries[i] @ support.T).max(axis=1)
        expected = scoring.class_means({"c": best})["c"]
        assert quality.query_best_means(support, queries, chunk=3)[i] == pytest.approx(expected, abs=1e-6)
        kept = scoring.class_means({"c": best}, keep=keep[i])["c"]
        assert quality.query_best_means(support, queries, keep, chunk=3)[i] == pytest.approx(kept, abs=1e-6)


def test_is_blank_reads_the_box_in_original_pixels():
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[10:14, 10:14] = 200
    assert quality.is_blank(pixels, (0, 0, 4, 4))
    assert not quality.is_blank(pixels, (8, 8, 12, 12))


# --- the doc section ------------------------------------------------------------------------------


def test_write_doc_replaces_only_its_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Search\n\n<!-- search:start -->\nS\n<!-- search:end -->\n")
    quality.write_doc("first body", doc)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n## Search\n\n<!-- search:start -->\nS\n<!-- search:end -->\n")
    assert f"{quality.HEADING}\n\n{quality.START}\nfirst body\n{quality.END}\n" in text

    doc.write_text(text + "\n## Later\n\nkept\n")
    quality.write_doc("second body", doc)
    text = doc.read_text()
    assert "first body" not in text and "second body" in text
    assert text.count(quality.HEADING) == 1
    assert text.endswith("## Later\n\nkept\n") and "<!-- search:start -->\nS\n" in text


def test_load_split_reads_a_generated_dataset(tmp_path):
    fake_dataset(tmp_path, per_class=2)
    split = quality.load_split(tmp_path, "train")
    assert split.images.shape == (20, 28, 28)
    assert split.labels.tolist() == [i % 10 for i in range(20)]
    # The PNG of an image decodes back to it.
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(io.BytesIO(quality.png_bytes(split.images[4])))), split.images[4])


# --- the report -------------------------------------------------------------------------------------


def fake_results(*, patch_at_20: float, prototype_at_20: float, recall: float = 1.0) -> quality.Results:
    search = {"queries": 1000, "service_p@10": 0.66, "direct_p@10": 0.66, "stored_exact_p@10": 0.66,
              "service_recall@10_vs_direct_exact": recall, "service_recall@10_vs_stored_exact": recall,
              "short_result_lists": 0, "max_abs_vector_diff_stored_vs_direct": 3e-7,
              "similar_latency_ms_p50": 40.0, "similar_latency_ms_p95": 80.0}

    def shot(shots: int, patch: float, prototype: float) -> dict:
        return {"shots": shots, "service_queries": 100, "direct_queries": 1000, "service_accuracy": patch,
                "direct_patch_accuracy_same_queries": patch, "prototype_accuracy_same_queries": prototype,
                "service_direct_agreement": 1.0, "max_abs_raw_score_diff": 5e-7, "service_blank_evidence_share": 0.9,
                "classify_latency_ms_p50": 1500.0, "classify_timings_ms_median": {"retrieval": 1400.0},
                "direct_patch_accuracy": patch, "prototype_accuracy": prototype,
                "variants": {"patch k=1": 0.4, "patch k=20": 0.5, f"patch k=5, {quality.BLANK_QUERY_OUT}": 0.5,
                             f"patch k=5, {quality.BLANK_BOTH_OUT}": 0.58, "global 1-NN": 0.6,
                             "prototype of patch means": 0.74},
                "direct_blank_evidence_share": 0.9, "top2_margin_median": 0.003}

    return quality.Results(
        sizes=quality.Sizes(album_per_class=100, queries=100, search_queries=1000, shots=(1, 20), k=5, seed=0, threads=2),
        started="2026-11-25 23:00 UTC", machine="test machine", source="commit abc", model_id="dense:x@sha256:1",
        patch_source="tokens", temperature=0.05, wall_s={"total": 600.0}, search=search,
        fewshot=[shot(1, 0.4, 0.45), shot(20, patch_at_20, prototype_at_20)])


def test_render_says_why_when_the_patch_classifier_loses():
    text = quality.render(fake_results(patch_at_20=0.54, prototype_at_20=0.735), command="python -m bench.quality")
    assert "| class precision@10, 1000 queries | 0.660 | 0.660 |" in text
    assert "At 20 shots the patch classifier (max-sim) does not beat the nearest-prototype baseline: 0.540 vs 0.735" in text
    assert "90% of the top-5 evidence patches" in text
    assert "softmax odds of 1.06:1 at T = 0.05" in text  # exp(0.003 / 0.05)
    assert "nothing lost beyond ANN recall" in text


def test_render_reports_a_win_and_ann_loss_without_excuses():
    text = quality.render(fake_results(patch_at_20=0.80, prototype_at_20=0.74, recall=0.98),
                          command="python -m bench.quality")
    assert "beats the nearest-prototype baseline: 0.800 vs 0.740 on all 1000 album images (+0.060" in text
    assert "Why, first" not in text
    assert "what is lost is ANN recall (2.0% of neighbours)" in text


def test_render_only_round_trips_through_json(tmp_path):
    results = fake_results(patch_at_20=0.54, prototype_at_20=0.735)
    path = tmp_path / "quality.json"
    path.write_text(json.dumps(results.as_dict()))
    again = quality.results_from_json(path)
    assert quality.render(again, command="c") == quality.render(results, command="c")
