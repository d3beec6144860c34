"""Benchmarks: `python -m bench.bench_<what>` prints figures and ratios (run by `make bench`)."""
