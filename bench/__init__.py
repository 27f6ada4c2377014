"""Benchmarks: `python -m bench.indexing` (also `make bench`). Results go to docs/benchmarks.md."""
