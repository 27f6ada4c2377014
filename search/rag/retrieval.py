"""Per-class patch matching in PostgreSQL.

Every query patch is compared with every support patch of the set (exact, on the full-precision
column; unit vectors, so the negated inner product is the cosine) in one statement, which returns:

- per class and query patch, the best cosine with any of the class's support patches — what the
  class score averages (search/rag/scoring.py);
- per class, the k support patches with the highest cosine to any query patch, each with the query
  patch it matched — the evidence shown and sent to a vision-language model.

A support set is thousands of patches, not millions: an exact pass is cheap and never misses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection
from pgvector.django import VectorField

from search.rag.models import PatchEmbedding

_to_db = VectorField().get_prep_value

# MATERIALIZED: inlined, the text → vector cast of every query patch ran again for every support
# patch (bench/quality.py measured 80 s for one 5-shot, 10-class classification; 1.3 s materialized).
_SQL = """
WITH q AS MATERIALIZED (
    SELECT (t.ord - 1)::int AS qi, t.v::vector AS v FROM unnest(%(queries)s::text[]) WITH ORDINALITY AS t(v, ord)
),
pairs AS MATERIALIZED (
    SELECT p.support_class_id AS class_id, p.id AS patch_id, q.qi, -(p.vector <#> q.v) AS sim
    FROM rag_patchembedding p
    JOIN rag_supportimage si ON si.id = p.support_image_id AND si.status = 'ready'
    CROSS JOIN q
    WHERE si.support_set_id = %(set)s AND p.model_key = %(key)s
),
per_query AS (
    SELECT class_id, qi, max(sim) AS sim FROM pairs GROUP BY class_id, qi
),
per_patch AS (
    SELECT DISTINCT ON (patch_id) class_id, patch_id, qi, sim FROM pairs ORDER BY patch_id, sim DESC, qi
),
ranked AS (
    SELECT class_id, patch_id, qi, sim, row_number() OVER (PARTITION BY class_id ORDER BY sim DESC, patch_id) AS rank
    FROM per_patch
)
SELECT 'best', class_id, qi, sim, NULL::bigint FROM per_query
UNION ALL
SELECT 'evidence', class_id, qi, sim, patch_id FROM ranked WHERE rank <= %(k)s
"""


@dataclass(frozen=True)
class RetrievedPatch:
    class_id: int
    patch_id: int
    support_image_id: int
    image_id: int
    box: tuple[int, int, int, int]
    similarity: float
    query_patch: int  # index into the query's patch list


@dataclass(frozen=True)
class PatchMatches:
    best_per_query: dict[int, np.ndarray]  # class id → (query patches,) best cosine in that class
    evidence: list[RetrievedPatch]  # per class, best first


def match_patches(*, support_set_id: int, model_key: str, query_vectors: np.ndarray, k: int) -> PatchMatches:
    queries = np.asarray(query_vectors, dtype=np.float32)
    with connection.cursor() as cursor:
        cursor.execute(_SQL, {"queries": [_to_db(v) for v in queries], "key": model_key, "k": int(k), "set": support_set_id})
        rows = cursor.fetchall()
    best: dict[int, np.ndarray] = {}
    chosen: list[tuple[int, int, int, float]] = []
    for kind, class_id, qi, sim, patch_id in rows:
        if kind == "best":
            best.setdefault(class_id, np.full(len(queries), np.nan, dtype=np.float64))[qi] = sim
        else:
            chosen.append((class_id, patch_id, qi, float(sim)))
    details = {
        row["pk"]: row
        for row in PatchEmbedding.objects.filter(pk__in=[c[1] for c in chosen]).values(
            "pk", "support_image_id", "support_image__image_id", "x0", "y0", "x1", "y1"
        )
    }
    chosen.sort(key=lambda c: (c[0], -c[3], c[1]))
    evidence = [
        RetrievedPatch(
            class_id=class_id,
            patch_id=patch_id,
            support_image_id=details[patch_id]["support_image_id"],
            image_id=details[patch_id]["support_image__image_id"],
            box=(details[patch_id]["x0"], details[patch_id]["y0"], details[patch_id]["x1"], details[patch_id]["y1"]),
            similarity=sim,
            query_patch=qi,
        )
        for class_id, patch_id, qi, sim in chosen
    ]
    return PatchMatches(best_per_query=best, evidence=evidence)
