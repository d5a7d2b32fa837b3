"""Counts behind the operators' live view: abandoned runs, uploads in flight, failed deliveries.

Each count reads a partial index holding only the rows it counts (migrations 0004, 0007), so a
refresh every few seconds costs little however large the tables grow.
"""

from __future__ import annotations

from metricgate.stores.base import LiveCounts
from metricgate.stores.postgres.pool import Database

_COUNTS_SQL = """
SELECT
  (SELECT count(*) FROM tags t JOIN runs r USING (run_id)
    WHERE t.key = 'metricgate.abandoned' AND t.value = 'true' AND r.lifecycle_stage = 'active') AS abandoned_runs,
  (SELECT count(*) FROM upload_sessions WHERE state = 'open') AS uploads_open,
  (SELECT count(*) FROM upload_sessions WHERE state = 'committing') AS uploads_committing,
  (SELECT count(*) FROM webhook_deliveries WHERE state = 'pending') AS deliveries_pending,
  (SELECT count(*) FROM webhook_deliveries WHERE state = 'failed') AS deliveries_failed
"""


class PgLiveCounts:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def counts(self) -> LiveCounts:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_COUNTS_SQL)
        assert row is not None
        return LiveCounts(**{name: int(row[name]) for name in LiveCounts.__dataclass_fields__})
