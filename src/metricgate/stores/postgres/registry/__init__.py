"""The model registry's PostgreSQL store: models and tags (``store``), version writes
(``versions``), loading and row locks (``load``), search SQL (``search``), the audit events and
the webhook outbox (``events``)."""

from metricgate.stores.postgres.registry.store import PgRegistryStore

__all__ = ["PgRegistryStore"]
