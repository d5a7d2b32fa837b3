"""Benchmarks: an ingest load generator speaking only MLflow's REST API (``metricgate bench``),
the raw COPY baseline, and the pieces ``benchmarks/compare.py`` builds its comparison from."""

from metricgate.bench.cli import add_bench_parser, run_bench

__all__ = ["add_bench_parser", "run_bench"]
