"""Benchmarks of the code location: `python -m benchmarks` (see benchmarks/__main__.py and RESULTS.md)."""
