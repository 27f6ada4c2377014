"""The benches' working folders: a temp one goes when the bench ends (a stack leaves 1-3 GB), one the
caller named stays to be read."""

from __future__ import annotations

import pytest

from bench.stack import scratch_dir


def test_a_temp_folder_goes_even_when_the_bench_fails():
    with pytest.raises(RuntimeError), scratch_dir(None, prefix="loupe-scratch-test-") as made:
        (made / "var").mkdir()
        (made / "var" / "data").write_bytes(b"x" * 1024)
        raise RuntimeError("the bench failed")
    assert made.name.startswith("loupe-scratch-test-")
    assert not made.exists()


def test_a_named_folder_stays(tmp_path):
    named = tmp_path / "keep" / "here"
    with scratch_dir(named, prefix="unused-") as used:
        (used / "result.json").write_text("{}")
    assert used == named
    assert (named / "result.json").read_text() == "{}"
