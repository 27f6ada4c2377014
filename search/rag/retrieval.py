"""Per-class retrieval of support patches in PostgreSQL.

For each class of the set, the k support patches whose best cosine with any query patch is highest
(each support patch once, with the query patch it matched). Exact: a support set is thousands of
patches, not millions, and every pair is scored on the full-precision column (unit vectors, so the
negated inner product is the cosine).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import connection
from pgvector.django import VectorField

_to_db = VectorField().get_prep_value

# MATERIALIZED: inlined, the text → vector cast of every query patch ran again for every support
# patch (bench/quality.py measured 80 s for one 5-shot, 10-class classification; 1.3 s materialized).
_SQL = """
WITH q AS MATERIALIZED (
    SELECT (t.ord - 1)::int AS qi, t.v::vector AS v FROM unnest(%s::text[]) WITH ORDINALITY AS t(v, ord)
)
SELECT c.id, top.patch_id, top.support_image_id, top.image_id, top.x0, top.y0, top.x1, top.y1, top.sim, top.qi
FROM rag_supportclass c
CROSS JOIN LATERAL (
    SELECT p.id AS patch_id, p.support_image_id, si.image_id, p.x0, p.y0, p.x1, p.y1, best.sim, best.qi
    FROM rag_patchembedding p
    JOIN rag_supportimage si ON si.id = p.support_image_id
    CROSS JOIN LATERAL (
        SELECT -(p.vector <#> q.v) AS sim, q.qi FROM q ORDER BY p.vector <#> q.v, q.qi LIMIT 1
    ) best
    WHERE p.support_class_id = c.id AND p.model_key = %s AND si.status = 'ready'
    ORDER BY best.sim DESC, p.id
    LIMIT %s
) top
WHERE c.support_set_id = %s
ORDER BY c.position, c.id, top.sim DESC, top.patch_id
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


def top_patches_per_class(*, support_set_id: int, model_key: str, query_vectors: np.ndarray, k: int) -> list[RetrievedPatch]:
    with connection.cursor() as cursor:
        cursor.execute(_SQL, [[_to_db(v) for v in np.asarray(query_vectors, dtype=np.float32)], model_key, int(k), support_set_id])
        rows = cursor.fetchall()
    return [
        RetrievedPatch(
            class_id=row[0],
            patch_id=row[1],
            support_image_id=row[2],
            image_id=row[3],
            box=(row[4], row[5], row[6], row[7]),
            similarity=float(row[8]),
            query_patch=int(row[9]),
        )
        for row in rows
    ]
