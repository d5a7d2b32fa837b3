"""metricgate: an MLflow-compatible tracking server with a high-throughput ingest path."""

__version__ = "0.1.0"
