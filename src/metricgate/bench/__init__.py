"""Benchmarks: an ingest load generator speaking only MLflow's REST API (run by ``metricgate bench``, cli/bench.py),
the raw COPY baseline, and the pieces ``benchmarks/compare.py`` builds its comparison from."""
