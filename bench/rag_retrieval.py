"""Vision-RAG patch matching, measured: `python -m bench.rag_retrieval` (`--quick` for a smoke run).

Support sets of 10 classes at 1, 5 and 20 shots, 49 patches (7×7) per example, 1,280 dims (the
EfficientNet-Lite0 token grid the quality benchmark uses), synthetic unit vectors clustered per
class, stored in rag_patchembedding as the worker stores them. Each classification matches 49
query patches. In the same run, on the same rows and queries:

- baseline: the single SQL statement classification used before (every pair compared in
  PostgreSQL, then grouped and ranked there);
- Loupe cold: search/rag/retrieval.py with its per-process support matrix empty (every vector
  fetched with vector_send, then one matrix product);
- Loupe warm: the same with the matrix held (only the patch-id list is read).

Reports p50/p95 per method, the ratio to the baseline, and the agreement of the two answers (the
largest difference of any per-class best cosine; identical evidence patches).

Also the evidence crops the classify page shows (`GET /api/v1/support-images/{id}/crop`): on a 12 MP
JPEG, a 7×7-grid patch box shown at 256 px, the full decode + crop used before against
search/rag/crops.py (JPEG decoded at a reduced DCT scale), with the pixel difference of the two. It starts its own
embedded PostgreSQL in a temporary directory. Results go between the rag-retrieval markers of
docs/benchmarks.md unless --quick/--no-doc.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import sys
import time
from pathlib import Path

import numpy as np
from django.contrib.auth import get_user_model
from django.db import connection
from pgvector.django import VectorField
from PIL import Image

from bench.doc_sections import replace_marked_section
from bench.search import temporary_django
from encoders.images import open_rgb
from search.rag.crops import crop_patch

REPO = Path(__file__).resolve().parent.parent
DOC_PATH = REPO / "docs" / "benchmarks.md"
START, END = "<!-- rag-retrieval:start -->", "<!-- rag-retrieval:end -->"
DIM, CELLS, CLASSES, K = 1280, 49, 10, 5
KEY = "dense:bench@sha256:000000000000|tokens:224/32"

# The statement search/rag/retrieval.py ran before the support matrix (kept here as the baseline).
BASELINE_SQL = """
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


def log(message: str) -> None:
    print(f"[{datetime.datetime.now():%H:%M:%S}] {message}", flush=True)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def build_set(owner, rng: np.random.Generator, shots: int) -> int:
    # imports models: only once temporary_django() has set Django up
    from albums import services as album_services
    from albums.models import Image
    from search.rag.models import PatchEmbedding, SupportClass, SupportImage, SupportSet

    album = album_services.album_create(owner=owner, name=f"rag bench {shots} shots")
    support_set = SupportSet.objects.create(album=album, name="bench", encoder_spec="dense:efficientnet-lite0")
    for c in range(CLASSES):
        centre = rng.standard_normal(DIM)
        support_class = SupportClass.objects.create(support_set=support_set, label=f"class {c}", position=c)
        for s in range(shots):
            image = Image.objects.create(album=album, file=f"{c}-{s}.png", original_name=f"{c}-{s}.png",
                                         sha256=f"{shots:04d}{c:04d}{s:056d}", bytes=1, mime="image/png",
                                         width=224, height=224, status="indexed")
            example = SupportImage.objects.create(support_set=support_set, support_class=support_class, image=image,
                                                  status="ready", patch_count=CELLS)
            vectors = unit(centre + 2.0 * rng.standard_normal((CELLS, DIM)))
            PatchEmbedding.objects.bulk_create(
                PatchEmbedding(support_image=example, support_class=support_class, model_key=KEY, row=i // 7, col=i % 7,
                               x0=32 * (i % 7), y0=32 * (i // 7), x1=32 * (i % 7) + 32, y1=32 * (i // 7) + 32,
                               dim=DIM, vector=v)
                for i, v in enumerate(vectors)
            )
    return support_set.pk


def baseline(set_id: int, queries: np.ndarray):
    to_db = VectorField().get_prep_value
    with connection.cursor() as cursor:
        cursor.execute(BASELINE_SQL, {"queries": [to_db(v) for v in queries], "key": KEY, "k": K, "set": set_id})
        rows = cursor.fetchall()
    best: dict[int, np.ndarray] = {}
    evidence: dict[int, list[int]] = {}
    for kind, class_id, qi, sim, patch_id in sorted(rows, key=lambda r: (r[0], r[1], -r[3], r[4] or 0)):
        if kind == "best":
            best.setdefault(class_id, np.zeros(len(queries)))[qi] = sim
        else:
            evidence.setdefault(class_id, []).append(patch_id)
    return best, evidence


def loupe(set_id: int, queries: np.ndarray, *, cold: bool):
    from search.rag import retrieval  # imports models: only once temporary_django() has set Django up

    if cold:
        retrieval.cache.clear()
    matches = retrieval.match_patches(support_set_id=set_id, model_key=KEY, query_vectors=queries, k=K)
    evidence: dict[int, list[int]] = {}
    for item in matches.evidence:
        evidence.setdefault(item.class_id, []).append(item.patch_id)
    return matches.best_per_query, evidence


def timed(fn, *args, **kwargs):
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, (time.perf_counter() - started) * 1000


def run(args) -> list[dict]:
    rng = np.random.default_rng(0)
    owner = get_user_model().objects.create_user("bench", password="x")
    results = []
    for shots in args.shots:
        set_id = build_set(owner, rng, shots)
        log(f"{shots} shots: {CLASSES * shots * CELLS:,} support patches stored")
        times = {"baseline": [], "cold": [], "warm": []}
        max_diff, same_evidence = 0.0, True
        loupe(set_id, unit(rng.standard_normal((CELLS, DIM))), cold=True)  # first touch of the rows
        for _ in range(args.repeats):
            queries = unit(rng.standard_normal((CELLS, DIM)))
            (base_best, base_evidence), t_base = timed(baseline, set_id, queries)
            (_, _), t_cold = timed(loupe, set_id, queries, cold=True)
            (best, evidence), t_warm = timed(loupe, set_id, queries, cold=False)
            times["baseline"].append(t_base)
            times["cold"].append(t_cold)
            times["warm"].append(t_warm)
            max_diff = max(max_diff, max(float(np.abs(best[c] - base_best[c]).max()) for c in base_best))
            same_evidence &= evidence == base_evidence
        row = {"shots": shots, "patches": CLASSES * shots * CELLS, "max_diff": max_diff, "same_evidence": same_evidence}
        for method, values in times.items():
            row[f"{method}_p50"] = float(np.percentile(values, 50))
            row[f"{method}_p95"] = float(np.percentile(values, 95))
        results.append(row)
        log(f"{shots} shots: baseline p50 {row['baseline_p50']:.0f} ms, cold {row['cold_p50']:.0f} ms, "
            f"warm {row['warm_p50']:.1f} ms; max |Δ best cosine| {max_diff:.1e}; same evidence {same_evidence}")
    return results


def crop_timings(repeats: int) -> dict:

    rng = np.random.default_rng(1)
    # A smooth picture with texture, like a photo: JPEG's cost depends on content, not only size.
    small = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    picture = Image.fromarray(small).resize((4000, 3000), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    picture.save(out, format="JPEG", quality=90)
    data = out.getvalue()
    box = (1714, 1286, 2285, 1714)  # the middle cell of a 7×7 grid
    size = 256

    def before():
        crop = open_rgb(io.BytesIO(data)).crop(box)
        crop.thumbnail((size, size), Image.Resampling.LANCZOS)
        return crop

    def after():
        return crop_patch(io.BytesIO(data), ",".join(map(str, box)), size=size)

    times = {"before": [], "after": []}
    for _ in range(repeats):
        for name, fn in (("before", before), ("after", after)):
            started = time.perf_counter()
            result = fn()
            times[name].append((time.perf_counter() - started) * 1000)
    a, b = np.asarray(before(), dtype=np.int16), np.asarray(after().resize(before().size), dtype=np.int16)
    return {"bytes": len(data), "before_p50": float(np.median(times["before"])), "after_p50": float(np.median(times["after"])),
            "size": result.size, "mean_abs_diff": float(np.abs(a - b).mean())}


def render(results: list[dict], repeats: int, crops: dict | None = None) -> str:
    load = os.getloadavg()[0]
    lines = [
        f"Measured {datetime.date.today():%Y-%m-%d} by `python -m bench.rag_retrieval` on this 2-core box (load avg "
        f"{load:.1f}), its own embedded PostgreSQL 18 + pgvector 0.8. {CLASSES} classes, {CELLS} patches per example "
        f"and per query, {DIM} dims, k = {K}; {repeats} classifications per row, a new random query each. Baseline: "
        "the single SQL statement used before; Loupe: `search/rag/retrieval.py` (cold: support matrix fetched "
        "with `vector_send`; warm: held in the process, only the patch-id list read).",
        "",
        "| shots | support patches | baseline p50 / p95 ms | Loupe cold p50 / p95 ms | Loupe warm p50 / p95 ms "
        "| baseline ÷ cold (p50) | baseline ÷ warm (p50) | max \\|Δ best cosine\\| | same evidence |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['shots']} | {r['patches']:,} | {r['baseline_p50']:.0f} / {r['baseline_p95']:.0f} "
            f"| {r['cold_p50']:.0f} / {r['cold_p95']:.0f} | {r['warm_p50']:.1f} / {r['warm_p95']:.1f} "
            f"| {r['baseline_p50'] / r['cold_p50']:.1f}× | {r['baseline_p50'] / r['warm_p50']:.0f}× "
            f"| {r['max_diff']:.1e} | {'yes' if r['same_evidence'] else 'no'} |"
        )
    if crops:
        lines += [
            "",
            f"Evidence crop of a 4000×3000 JPEG ({crops['bytes'] / 1e6:.1f} MB), a 571×428 patch box shown at 256 px "
            f"({crops['size'][0]}×{crops['size'][1]}), p50 of {repeats}: full decode + crop {crops['before_p50']:.0f} ms, "
            f"`search/rag/crops.py` {crops['after_p50']:.0f} ms ({crops['before_p50'] / crops['after_p50']:.1f}× faster); "
            f"mean absolute pixel difference of the two crops {crops['mean_abs_diff']:.2f} (of 255).",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 5 shots, 3 repeats, no doc")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-doc", action="store_true")
    args = parser.parse_args(argv)
    args.shots = (1, 5) if args.quick else (1, 5, 20)
    args.repeats = 3 if args.quick else args.repeats

    with temporary_django("loupe-bench-rag-", maintenance_work_mem="64MB"):
        results = run(args)
    crops = crop_timings(args.repeats)
    log(f"crops: before {crops['before_p50']:.0f} ms, after {crops['after_p50']:.0f} ms")
    body = render(results, args.repeats, crops)
    print("\n" + body + "\n", flush=True)
    if not (args.quick or args.no_doc):
        replace_marked_section(DOC_PATH, start=START, end=END, heading="## Vision RAG: patch matching", body=body)
        log(f"wrote the rag-retrieval section of {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
