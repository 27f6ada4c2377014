"""Smoke test of the quantization benchmark (bench/quantization.py): a tiny run in a subprocess with
its own embedded PostgreSQL. Asserts what the benchmark must get right (one index per kind, of the
right form and relative size, recall measured against exact search, oversampling reported); nothing
about time."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def test_quick_quantization_benchmark(tmp_path, postgres_template):
    out = tmp_path / "quantization.json"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "LOUPE_VAR_DIR")}
    env["LOUPE_POSTGRES_TEMPLATE"] = str(postgres_template)
    completed = subprocess.run(
        [sys.executable, "-m", "bench.quantization", "--quick", "--size", "3000", "--dim", "128", "--queries", "20",
         "--oversample", "1,4", "--json", str(out)],
        cwd=BASE_DIR, env=env, check=True, capture_output=True, text=True, timeout=300,
    )
    results = json.loads(out.read_text())
    kinds = results["kinds"]
    assert set(kinds) == {"vector", "halfvec", "binary"}
    assert "vector_cosine_ops" in kinds["vector"]["definition"]
    assert "halfvec_cosine_ops" in kinds["halfvec"]["definition"]
    assert "bit_hamming_ops" in kinds["binary"]["definition"]
    # The same rows for every kind; the quantized indexes are smaller.
    assert len({row["heap_bytes_per_row"] for row in kinds.values()}) == 1
    assert kinds["binary"]["index_bytes"] < kinds["halfvec"]["index_bytes"] < kinds["vector"]["index_bytes"]
    assert kinds["vector"]["recall@10"] >= 0.95 and kinds["halfvec"]["recall@10"] >= 0.95
    factors = {row["oversample"]: row for row in results["binary_oversample"]}
    assert factors[4]["candidates_mean"] > factors[1]["candidates_mean"]
    assert factors[4]["recall@10"] >= factors[1]["recall@10"]
    assert "| `binary` |" in completed.stdout and "Offered as album settings" in completed.stdout
