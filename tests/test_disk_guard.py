"""A test run on a disk too full to hold it stops at the start with one clear line, instead of
PostgreSQL failing midway and every later test erroring without a reason."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


def test_a_run_without_room_refuses_to_start_and_says_where():
    env = {**os.environ, "LOUPE_TEST_MIN_FREE_MB": str(1 << 40)}  # more than any disk has
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_layers.py"],
                         cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 3, run.stdout[-2000:] + run.stderr[-2000:]
    assert "The test run needs 1099511627776 MB free" in run.stdout
    assert "MB free)" in run.stdout and "Free some space" in run.stdout
    assert " passed" not in run.stdout  # nothing ran
