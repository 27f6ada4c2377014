"""Smoke test of the search benchmark (bench/search.py): a tiny --quick run in a subprocess with its own
embedded PostgreSQL. Asserts what the benchmark must get right (exact methods are exact, Loupe's
path finds the true top 10, iterative scan returns every row asked for, output fields); nothing about time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def test_quick_search_benchmark(tmp_path, postgres_template):
    out = tmp_path / "search.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "LOUPE_VAR_DIR")}
    env["LOUPE_POSTGRES_TEMPLATE"] = str(postgres_template)
    subprocess.run(
        [sys.executable, "-m", "bench.search", "--quick", "--sizes", "2000", "--queries", "10", "--candidates", "100",
         "--baseline-seconds", "0.1", "--no-remeasure-last", "--json", str(out)],
        cwd=BASE_DIR, env=env, check=True, capture_output=True, timeout=300,
    )
    results = json.loads(out.read_text())
    assert results["server"]["pgvector"].startswith("0.8")
    [dim_block] = results["dims"]
    [stage] = dim_block["stages"]
    assert stage["build"]["model_rows"] == 2400  # the album and 20 % of other albums' rows
    assert stage["build"]["index_bytes"] > 0
    [block] = dim_block["albums"]
    assert block["album_rows"] == 2000 and block["table_rows"] == 2400
    rows = {(m["method"], m["kind"]): m for m in block["methods"]}
    default_k = results["default_k"]
    for kind in ("text", "combo"):
        for method in ("exact SQL", "NumPy in memory"):
            assert rows[(method, kind)]["recall@10"] == 1.0, (method, kind)
            assert rows[(method, kind)]["recall@100"] >= 0.99, (method, kind)
        if results["server"]["faiss"]:
            assert rows[("FAISS IndexFlatIP", kind)]["recall@10"] == 1.0
        loupe = rows[(f"loupe k'={default_k}", kind)]
        assert {"p50_ms", "p95_ms", "sql_p95_ms", "knn_p95_ms", "fetch_p95_ms", "knn_rows_min"} <= set(loupe)
        assert loupe["n"] == 10
    assert rows[(f"loupe k'={default_k}", "text")]["recall@10"] >= 0.95
    # The combined query vector proposes candidates too, so the 3-part query is as good as the 1-part.
    assert rows[(f"loupe k'={default_k}", "combo")]["recall@10"] >= 0.95
    # Iterative scan: the album filter never starves the kNN statement below its depth: max_results
    # rows for a single-part query (search.selectors.single_part_depth), k' per part for the 3-part one.
    assert rows[(f"loupe k'={default_k}", "text")]["knn_rows_min"] >= results["k"]
    assert rows[(f"loupe k'={default_k}", "combo")]["knn_rows_min"] >= default_k
    assert "Index Scan" in block["explain"][f"loupe k'={default_k} text"]
