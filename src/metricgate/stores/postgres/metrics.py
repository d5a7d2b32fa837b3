"""Metric points in PostgreSQL: the write seam (``PgMetricSink``) and history reads.

Writes are idempotent: the unique index on (run, key, step, timestamp, value) turns a replayed
point into a no-op, so a retry or a redelivered batch never creates a duplicate row.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

import asyncpg

from metricgate.entities import Metric, Page
from metricgate.search.paging import decode_page_token, encode_page_token
from metricgate.stores.postgres.pool import Database

# Below this many rows one INSERT ... SELECT FROM unnest(...) is a single round trip and beats
# COPY, which needs a staging table and two extra statements.
COPY_THRESHOLD_ROWS = 256

_COLUMNS = ("run_id", "key", "step", "timestamp_ms", "value", "model_id", "dataset_name", "dataset_digest")

_INSERT_UNNEST = """
INSERT INTO metrics (run_id, key, step, timestamp_ms, value, model_id, dataset_name, dataset_digest)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[],
                     $6::text[], $7::text[], $8::text[])
ON CONFLICT DO NOTHING
"""

# Latest value per key: highest step, then timestamp, then value (MLflow's rule). DISTINCT ON
# picks one candidate per key first, because ON CONFLICT cannot touch the same row twice.
_UPSERT_LATEST_FROM = """
INSERT INTO latest_metrics (run_id, key, step, timestamp_ms, value, model_id)
SELECT DISTINCT ON (run_id, key) run_id, key, step, timestamp_ms, value, model_id
FROM {source}
ORDER BY run_id, key, step DESC, timestamp_ms DESC, value DESC
ON CONFLICT (run_id, key) DO UPDATE
SET step = excluded.step, timestamp_ms = excluded.timestamp_ms, value = excluded.value,
    model_id = excluded.model_id
WHERE (excluded.step, excluded.timestamp_ms, excluded.value)
    > (latest_metrics.step, latest_metrics.timestamp_ms, latest_metrics.value)
"""

_UNNEST_SOURCE = """unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[], $6::text[])
    AS t(run_id, key, step, timestamp_ms, value, model_id)"""


def _columns(run_id: str, metrics: Sequence[Metric]) -> list[list[object]]:
    return [
        [run_id] * len(metrics),
        [m.key for m in metrics],
        [m.step for m in metrics],
        [m.timestamp_ms for m in metrics],
        [m.value for m in metrics],
        [m.model_id for m in metrics],
        [m.dataset_name for m in metrics],
        [m.dataset_digest for m in metrics],
    ]


class PgMetricSink:
    """Writes metric points and their latest values in one transaction."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, run_id: str, metrics: Sequence[Metric]) -> None:
        if not metrics:
            return
        # Two writers inserting the same points in different orders into the unique index would
        # deadlock; a single global order makes them queue behind each other instead.
        metrics = sorted(metrics, key=_index_order)
        async with self._db.transaction() as conn:
            if len(metrics) < COPY_THRESHOLD_ROWS:
                columns = _columns(run_id, metrics)
                await conn.execute(_INSERT_UNNEST, *columns)
                await conn.execute(_UPSERT_LATEST_FROM.format(source=_UNNEST_SOURCE), *columns[:6])
            else:
                await self._append_by_copy(conn, run_id, metrics)
            linked = [m for m in metrics if m.model_id]
            if linked:
                await _link_to_models(conn, run_id, linked)

    @staticmethod
    async def _append_by_copy(conn: asyncpg.Connection, run_id: str, metrics: Sequence[Metric]) -> None:
        await conn.execute(
            "CREATE TEMP TABLE IF NOT EXISTS metrics_stage (LIKE metrics) ON COMMIT DELETE ROWS"
        )
        await conn.copy_records_to_table(
            "metrics_stage",
            records=[
                (run_id, m.key, m.step, m.timestamp_ms, m.value, m.model_id, m.dataset_name, m.dataset_digest)
                for m in metrics
            ],
            columns=_COLUMNS,
        )
        await conn.execute(
            "INSERT INTO metrics SELECT * FROM metrics_stage ORDER BY key, step, timestamp_ms, value "
            "ON CONFLICT DO NOTHING"
        )
        await conn.execute(_UPSERT_LATEST_FROM.format(source="metrics_stage"))


async def _link_to_models(conn: asyncpg.Connection, run_id: str, metrics: Sequence[Metric]) -> None:
    await conn.execute(
        """INSERT INTO logged_model_metrics
               (model_id, run_id, key, step, timestamp_ms, value, dataset_name, dataset_digest)
           SELECT m, $1, k, s, t, v, dn, dd
           FROM unnest($2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::float8[], $7::text[], $8::text[])
                AS u(m, k, s, t, v, dn, dd)
           ORDER BY m, k, s, t, v
           ON CONFLICT DO NOTHING""",
        run_id,
        [m.model_id for m in metrics],
        [m.key for m in metrics],
        [m.step for m in metrics],
        [m.timestamp_ms for m in metrics],
        [m.value for m in metrics],
        [m.dataset_name for m in metrics],
        [m.dataset_digest for m in metrics],
    )


class PgMetricHistory:
    """Reads of the full history; the latest values come with the run (runs.py)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(self, run_id: str, key: str, max_results: int, page_token: str | None) -> Page:
        offset = decode_page_token(page_token)
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """SELECT key, value, timestamp_ms, step, model_id, dataset_name, dataset_digest
                   FROM metrics WHERE run_id = $1 AND key = $2
                   ORDER BY step, timestamp_ms, value LIMIT $3 OFFSET $4""",
                run_id,
                key,
                max_results + 1,
                offset,
            )
        items = [_metric(row) for row in rows[:max_results]]
        token = encode_page_token(offset + max_results) if len(rows) > max_results else None
        return Page(items, token)

    async def bulk_interval(
        self, run_ids: Sequence[str], key: str, max_results: int, start_step: int | None, end_step: int | None
    ) -> list[Metric]:
        """MLflow's downsampled history for plots: the same sampled steps for every run."""
        async with self._db.connection() as conn:
            step_rows = await conn.fetch(
                "SELECT DISTINCT run_id, step FROM metrics WHERE run_id = ANY($1::text[]) AND key = $2",
                list(run_ids),
                key,
            )
            steps_by_run: dict[str, list[int]] = {}
            for row in step_rows:
                steps_by_run.setdefault(row["run_id"], []).append(row["step"])
            steps = sample_steps(list(steps_by_run.values()), max_results, start_step, end_step)
            per_run_limit = max(max_results, len(steps))
            rows = await conn.fetch(
                """SELECT run_id, key, value, timestamp_ms, step, model_id, dataset_name, dataset_digest
                   FROM (SELECT m.*, row_number() OVER (PARTITION BY run_id ORDER BY step, timestamp_ms) AS n
                         FROM metrics m
                         WHERE run_id = ANY($1::text[]) AND key = $2 AND step = ANY($3::bigint[])) s
                   WHERE n <= $4
                   ORDER BY array_position($1::text[], run_id), step, timestamp_ms""",
                list(run_ids),
                key,
                steps,
                per_run_limit,
            )
        return [_metric(row, with_run=True) for row in rows]


def sample_steps(
    runs_steps: list[list[int]], max_results: int, start_step: int | None, end_step: int | None
) -> list[int]:
    """Pick at most ~max_results steps spread evenly over the union of every run's steps,
    keeping each run's first and last step so plots keep their boundaries (MLflow's algorithm)."""
    max_results = max(1, max_results)
    all_steps = sorted({s for steps in runs_steps for s in steps})
    if start_step is None or end_step is None:
        start_step, end_step = 0, (all_steps[-1] if all_steps else 0)
    bounds = {s for steps in runs_steps if steps for s in (min(steps), max(steps)) if start_step <= s <= end_step}
    lo = bisect.bisect_left(all_steps, start_step)
    hi = bisect.bisect_right(all_steps, end_step)
    if hi - lo <= max_results:
        sampled = set(all_steps[lo:hi])
    else:
        interval = (hi - lo) / max_results
        sampled = {all_steps[lo + int(i * interval)] for i in range(max_results) if lo + int(i * interval) < hi}
        sampled.add(all_steps[hi - 1])
    return sorted(sampled | bounds)


def _index_order(metric: Metric) -> tuple[str, int, int, bool, float]:
    # PostgreSQL sorts NaN above every number; Python cannot compare NaN, so rank it explicitly.
    is_nan = math.isnan(metric.value)
    return (metric.key, metric.step, metric.timestamp_ms, is_nan, 0.0 if is_nan else metric.value)


def _metric(row: asyncpg.Record, with_run: bool = False) -> Metric:
    return Metric(
        key=row["key"],
        value=row["value"],
        timestamp_ms=row["timestamp_ms"],
        step=row["step"],
        model_id=row["model_id"],
        dataset_name=row["dataset_name"],
        dataset_digest=row["dataset_digest"],
        run_id=row["run_id"] if with_run else None,
    )
