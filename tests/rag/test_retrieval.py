"""Patch matching (search/rag/retrieval.py) against a brute-force computation on hand-built vectors,
and the per-process support matrix kept right as examples come and go."""

from __future__ import annotations

import numpy as np
import pytest

from albums import services as album_services
from albums.models import Image
from search.rag import retrieval
from search.rag.models import PatchEmbedding, SupportClass, SupportImage, SupportSet

pytestmark = pytest.mark.django_db

KEY, OTHER_KEY, DIM, CELLS = "model@x|tokens:64/32", "model@y|tokens:64/32", 8, 4


@pytest.fixture(autouse=True)
def empty_cache():
    retrieval.cache.clear()
    yield
    retrieval.cache.clear()


@pytest.fixture
def support(alice):
    album = album_services.album_create(owner=alice, name="patches")
    support_set = SupportSet.objects.create(album=album, name="s", encoder_spec="dense:efficientnet-lite0")
    classes = {label: SupportClass.objects.create(support_set=support_set, label=label, position=i)
               for i, label in enumerate(("a", "b", "c"))}
    return album, support_set, classes


def unit_rows(rng, n):
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


_serial = iter(range(10_000))


def add_example(album, support_set, support_class, vectors, *, status="ready", key=KEY) -> SupportImage:
    n = next(_serial)
    image = Image.objects.create(album=album, file=f"{n}.png", original_name=f"{n}.png", sha256=f"{n:064d}", bytes=1,
                                 mime="image/png", width=64, height=64, status="indexed")
    example = SupportImage.objects.create(support_set=support_set, support_class=support_class, image=image,
                                          status=status, patch_count=len(vectors))
    PatchEmbedding.objects.bulk_create(
        PatchEmbedding(support_image=example, support_class=support_class, model_key=key, row=i // 2, col=i % 2,
                       x0=0, y0=0, x1=32, y1=32, dim=DIM, vector=v)
        for i, v in enumerate(vectors)
    )
    return example


def brute_force(support_set, queries, k):
    """The definition, in float64: every ready patch under KEY against every query patch."""
    rows = list(PatchEmbedding.objects.filter(support_image__support_set=support_set, support_image__status="ready",
                                              model_key=KEY).order_by("pk").values_list("pk", "support_class_id", "vector"))
    best, evidence = {}, {}
    for class_id in sorted({r[1] for r in rows}):
        mine = [r for r in rows if r[1] == class_id]
        sims = np.array([[float(np.dot(np.asarray(v, dtype=np.float64), q)) for q in queries] for _, _, v in mine])
        best[class_id] = sims.max(axis=0)
        per_patch = [(-sims[i].max(), pk, int(sims[i].argmax())) for i, (pk, _, _) in enumerate(mine)]
        evidence[class_id] = [(pk, qi, -neg) for neg, pk, qi in sorted(per_patch)[:k]]
    return best, evidence


def check_against_brute_force(support_set, queries, k=3):
    matches = retrieval.match_patches(support_set_id=support_set.pk, model_key=KEY, query_vectors=queries, k=k)
    best, evidence = brute_force(support_set, queries.astype(np.float64), k)
    assert sorted(matches.best_per_query) == sorted(best)
    for class_id, values in best.items():
        np.testing.assert_allclose(matches.best_per_query[class_id], values, atol=1e-6)
    got = {}
    for item in matches.evidence:
        got.setdefault(item.class_id, []).append((item.patch_id, item.query_patch, item.similarity))
    assert sorted(got) == sorted(evidence)
    for class_id, expected in evidence.items():
        assert [g[:2] for g in got[class_id]] == [e[:2] for e in expected]
        np.testing.assert_allclose([g[2] for g in got[class_id]], [e[2] for e in expected], atol=1e-6)
    return matches


def test_matches_the_brute_force_definition_and_ignores_other_keys_and_unready_examples(support):
    album, support_set, classes = support
    rng = np.random.default_rng(1)
    for label, count in (("a", 3), ("b", 1), ("c", 2)):
        for _ in range(count):
            add_example(album, support_set, classes[label], unit_rows(rng, CELLS))
    foreign = add_example(album, support_set, classes["a"], unit_rows(rng, CELLS), key=OTHER_KEY)
    pending = add_example(album, support_set, classes["b"], unit_rows(rng, CELLS), status="pending")
    queries = unit_rows(rng, 5)
    matches = check_against_brute_force(support_set, queries)
    ignored = set(PatchEmbedding.objects.filter(support_image__in=[foreign, pending]).values_list("pk", flat=True))
    assert ignored and not ignored & {item.patch_id for item in matches.evidence}
    first = matches.evidence[0]
    assert first.box == (0, 0, 32, 32) and first.image_id == SupportImage.objects.get(patches=first.patch_id).image_id


def test_an_exact_copy_of_a_query_patch_is_the_top_evidence_with_cosine_one(support):
    album, support_set, classes = support
    rng = np.random.default_rng(2)
    queries = unit_rows(rng, 5)
    add_example(album, support_set, classes["a"], unit_rows(rng, CELLS))
    planted = add_example(album, support_set, classes["b"], np.vstack([unit_rows(rng, 3), queries[3:4]]))
    matches = retrieval.match_patches(support_set_id=support_set.pk, model_key=KEY, query_vectors=queries, k=2)
    top_b = [item for item in matches.evidence if item.class_id == classes["b"].pk][0]
    assert top_b.support_image_id == planted.pk and top_b.query_patch == 3
    assert top_b.similarity == pytest.approx(1.0, abs=1e-6)
    assert matches.best_per_query[classes["b"].pk][3] == pytest.approx(1.0, abs=1e-6)


def test_the_held_matrix_follows_added_removed_and_failed_examples_fetching_only_new_vectors(support, monkeypatch):
    album, support_set, classes = support
    rng = np.random.default_rng(3)
    queries = unit_rows(rng, 4)
    examples = [add_example(album, support_set, classes[label], unit_rows(rng, CELLS)) for label in "aabc"]
    fetched = []
    real_fetch = retrieval._fetch_vectors
    monkeypatch.setattr(retrieval, "_fetch_vectors", lambda ids: fetched.append(sorted(ids.tolist())) or real_fetch(ids))

    check_against_brute_force(support_set, queries)
    assert len(fetched[0]) == 4 * CELLS  # cold: every vector
    check_against_brute_force(support_set, queries)
    assert len(fetched) == 1  # warm: none

    added = add_example(album, support_set, classes["c"], unit_rows(rng, CELLS))
    check_against_brute_force(support_set, queries)
    assert fetched[-1] == sorted(added.patches.values_list("pk", flat=True))  # only the new example's

    examples[0].delete()
    SupportImage.objects.filter(pk=examples[3].pk).update(status="failed")
    matches = check_against_brute_force(support_set, queries)
    assert len(fetched) == 2  # removals need no fetch
    assert not {examples[0].pk, examples[3].pk} & {item.support_image_id for item in matches.evidence}

    # Class "c" lost its only ready example from before; the added one still answers for it.
    assert classes["c"].pk in matches.best_per_query


def test_a_set_bigger_than_the_cache_budget_is_matched_all_the_same(support, settings):
    settings.LOUPE_RAG_CACHE_MB = 0
    album, support_set, classes = support
    rng = np.random.default_rng(4)
    for label in "abc":
        add_example(album, support_set, classes[label], unit_rows(rng, CELLS))
    check_against_brute_force(support_set, unit_rows(rng, 3))
    assert retrieval.cache.get((support_set.pk, KEY)) is None


def test_no_ready_patches_match_nothing_and_a_dimension_mismatch_is_an_error(support):
    album, support_set, classes = support
    rng = np.random.default_rng(5)
    empty = retrieval.match_patches(support_set_id=support_set.pk, model_key=KEY, query_vectors=unit_rows(rng, 2), k=3)
    assert empty.best_per_query == {} and empty.evidence == []
    add_example(album, support_set, classes["a"], unit_rows(rng, CELLS))
    with pytest.raises(ValueError, match="3 dims"):
        retrieval.match_patches(support_set_id=support_set.pk, model_key=KEY, query_vectors=np.ones((2, 3)), k=3)


def test_evidence_matches_only_the_kept_query_patches_and_every_patch_keeps_its_best(support):
    album, support_set, classes = support
    rng = np.random.default_rng(5)
    queries = unit_rows(rng, 4)
    # Class a holds an exact copy of query patch 0 (the background, say) and one of patch 2.
    add_example(album, support_set, classes["a"], np.vstack([queries[0:1], queries[2:3], unit_rows(rng, 2)]))
    keep = np.array([False, True, True, True])
    everything = retrieval.match_patches(support_set_id=support_set.pk, model_key=KEY, query_vectors=queries, k=4)
    kept = retrieval.match_patches(support_set_id=support_set.pk, model_key=KEY, query_vectors=queries, k=4, query_keep=keep)
    copies = {(item.query_patch, round(item.similarity, 4)) for item in everything.evidence[:2]}
    assert copies == {(0, 1.0), (2, 1.0)}
    assert {item.query_patch for item in kept.evidence} <= {1, 2, 3}
    assert kept.evidence[0].query_patch == 2 and kept.evidence[0].similarity == pytest.approx(1.0)
    np.testing.assert_allclose(kept.best_per_query[classes["a"].pk], everything.best_per_query[classes["a"].pk])
    # Nothing kept: every query patch may be matched, as without a mask.
    none = retrieval.match_patches(support_set_id=support_set.pk, model_key=KEY, query_vectors=queries, k=4,
                                   query_keep=np.zeros(4, dtype=bool))
    assert [(i.patch_id, i.query_patch) for i in none.evidence] == [(i.patch_id, i.query_patch) for i in everything.evidence]
