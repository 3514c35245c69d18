"""Benchmarks (run as modules: ``python -m bench.gallery_bench``)."""
