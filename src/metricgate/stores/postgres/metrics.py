"""Metric points in PostgreSQL: the batch writer flushers use, and history reads.

Points are stored as chunks (migration 0006): one row per (run, key) of one request, its points
as arrays. Writes are idempotent: the unique index on (run, key, digest of the request) turns a
replayed or retried request into a no-op. Reads fold identical points (step, timestamp, value),
MLflow's rule, which also hides a point two different requests both carried: short histories are
merged from their chunks in Python (metric_series.py), long ones read through the ``metrics``
view (one row per point) with DISTINCT ON.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import asyncpg

from metricgate.entities import Metric, MetricSeries, Page
from metricgate.ingest.batcher import FlushBatch, build_batch, chunks_from_metrics
from metricgate.search.paging import decode_history_token, encode_history_token
from metricgate.stores.postgres.chunk_copy import copy_record, encode_chunks
from metricgate.stores.postgres.metric_series import merge_chunks, sample_steps, sampled, series_of_points
from metricgate.stores.postgres.pool import Database

CHUNK_COLUMNS = (
    "run_id", "key", "steps", "timestamps_ms", "vals", "model_id", "dataset_name", "dataset_digest", "digest",
    "first_step", "last_step", "n_points", "steps_ascending",
)

_INSERT_CHUNK_DEDUPLICATED = """
INSERT INTO metric_chunks
    (run_id, key, steps, timestamps_ms, vals, model_id, dataset_name, dataset_digest, digest, first_step, last_step,
     n_points, steps_ascending)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
"""

# Rows arrive pre-reduced to one per (run, key) (ingest/batcher.py), so ON CONFLICT never
# meets the same row twice; the WHERE keeps an older batch from overwriting a newer latest value.
_UPSERT_LATEST = """
INSERT INTO latest_metrics (run_id, key, step, timestamp_ms, value, model_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[], $6::text[])
ON CONFLICT (run_id, key) DO UPDATE
SET step = excluded.step, timestamp_ms = excluded.timestamp_ms, value = excluded.value,
    model_id = excluded.model_id
WHERE (excluded.step, excluded.timestamp_ms, excluded.value)
    > (latest_metrics.step, latest_metrics.timestamp_ms, latest_metrics.value)
"""

_INSERT_MODEL_POINTS = """
INSERT INTO logged_model_metrics
    (run_id, key, step, timestamp_ms, value, model_id, dataset_name, dataset_digest)
SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[],
                     $6::text[], $7::text[], $8::text[])
ON CONFLICT DO NOTHING
"""


def _columns(rows: Sequence[tuple[object, ...]], width: int) -> list[list[object]]:
    return [list(column) for column in zip(*rows)][:width] if rows else [[] for _ in range(width)]


async def _once(payload: bytes) -> AsyncIterator[bytes]:
    # An async iterable source: asyncpg would read a file-like one in a thread-pool executor.
    yield payload


class PgMetricWriter:
    """The one write path for metric points: a flush batch in one transaction.

    Fast path: binary COPY of the chunks straight into ``metric_chunks`` (encoded by
    chunk_copy.py, not asyncpg's per-element array encoder). Its unique index
    rejects the whole COPY when any chunk already exists (a batch replayed after a flusher died
    between COMMIT and XACK, or a client's retry); only then the chunks are re-sent one by one
    (pipelined) with ON CONFLICT DO NOTHING, so the common case pays for no conflict handling.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def write(self, batch: FlushBatch) -> None:
        if not batch.chunks:
            return
        async with self._db.transaction() as conn:
            try:
                async with conn.transaction():  # savepoint: a failed COPY leaves nothing behind
                    await conn.copy_to_table(
                        "metric_chunks", source=_once(encode_chunks(batch.chunks)), columns=CHUNK_COLUMNS,
                        format="binary",
                    )
            except asyncpg.UniqueViolationError:
                await conn.executemany(_INSERT_CHUNK_DEDUPLICATED, map(copy_record, batch.chunks))
            await conn.execute(_UPSERT_LATEST, *_columns(batch.latest, 6))
            if batch.model_points:
                await conn.execute(_INSERT_MODEL_POINTS, *_columns(batch.model_points, 8))

    async def append(self, run_id: str, metrics: Sequence[Metric]) -> None:
        """One request's points, written in the request (``INGEST_MODE=direct``)."""
        # Index order: concurrent requests carrying the same chunk (a client's retry) then wait
        # for each other on the unique index instead of deadlocking; a request has no retry.
        await self.write(build_batch(chunks_from_metrics(run_id, metrics), index_order=True))


class PgMetricHistory:
    """Reads of the full history; the latest values come with the run (runs.py)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def history(self, run_id: str, key: str, max_results: int, page_token: str | None) -> Page:
        """A page of the (run, key)'s points in (step, timestamp, value) order, identical points
        once: ``items`` is one ``MetricSeries`` (none when the page is empty)."""
        offset, after = decode_history_token(page_token)
        async with self._db.connection() as conn:
            # As in bulk_interval: a history of up to _HISTORY_WHOLE_POINTS comes as its chunks
            # and is merged here. A longer one is paged by PostgreSQL: after the first page from
            # where the previous page ended (keyset: chunks ending before it are not even
            # unnested), by OFFSET only for a token that does not say where (MLflow's format).
            series = None
            if after is None:
                chunks = await conn.fetch(_WHOLE_CHUNKS, [run_id], key, _HISTORY_WHOLE_POINTS)
                if chunks:
                    series = merge_chunks(run_id, key, chunks)
            if series is not None:
                page = series.slice(offset, offset + max_results)
                more = len(series) > offset + max_results
            else:
                if after is None:
                    rows = await conn.fetch(_HISTORY_PAGE_BY_OFFSET, run_id, key, max_results + 1, offset)
                else:
                    rows = await conn.fetch(_HISTORY_PAGE_AFTER, run_id, key, *after, max_results + 1)
                more = len(rows) > max_results
                found = series_of_points(key, rows[:max_results])
                page = found[0] if found else None
        token = None
        if more and page is not None:
            last = len(page) - 1
            token = encode_history_token(offset + len(page), (page.steps[last], page.timestamps_ms[last], page.values[last]))
        return Page([page] if page else [], token)

    async def bulk_interval(
        self, run_ids: Sequence[str], key: str, max_results: int, start_step: int | None, end_step: int | None
    ) -> list[MetricSeries]:
        """MLflow's downsampled history for plots: the same sampled steps for every run. One
        series per run that has points, in the order asked (each run once)."""
        async with self._db.connection() as conn:
            # Short histories (the usual case while a sweep runs, and every read-back of a fresh
            # one) come as their chunks in one query, merged and sampled here: no row per point
            # and no sort in PostgreSQL. Only when that would mean more than _BULK_WHOLE_ROWS
            # points (the query then returns nothing) does sampling move into two queries.
            chunks = await conn.fetch(_WHOLE_CHUNKS, list(run_ids), key, _BULK_WHOLE_ROWS)
            if chunks:
                by_run: dict[str, list[asyncpg.Record]] = {}
                for chunk in chunks:
                    by_run.setdefault(chunk[0], []).append(chunk)
                merged = {run_id: merge_chunks(run_id, key, rows) for run_id, rows in by_run.items()}
                return sampled(merged, run_ids, max_results, start_step, end_step)
            step_rows = await conn.fetch(
                "SELECT DISTINCT run_id, step FROM metrics WHERE run_id = ANY($1::text[]) AND key = $2",
                list(run_ids),
                key,
            )
            if not step_rows:
                return []
            steps_by_run: dict[str, list[int]] = {}
            for row in step_rows:
                steps_by_run.setdefault(row["run_id"], []).append(row["step"])
            steps = sample_steps(list(steps_by_run.values()), max_results, start_step, end_step)
            per_run_limit = max(max_results, len(steps))
            rows = await conn.fetch(
                f"""SELECT run_id, step, timestamp_ms, value, model_id, dataset_name, dataset_digest
                   FROM (SELECT d.*, row_number() OVER (PARTITION BY run_id ORDER BY step, timestamp_ms, value) AS n
                         FROM (SELECT DISTINCT ON (run_id, step, timestamp_ms, value) *
                               FROM metrics
                               WHERE run_id = ANY($1::text[]) AND key = $2 AND step = ANY($3::bigint[])
                               ORDER BY run_id, step, timestamp_ms, value, {_PLAIN_FIRST}) d) s
                   WHERE n <= $4
                   ORDER BY array_position($1::text[], run_id), step, timestamp_ms, value""",
                list(run_ids),
                key,
                steps,
                per_run_limit,
            )
        return series_of_points(key, rows)


# Every chunk of the runs' key, or nothing when they hold more than $3 points in all.
_WHOLE_CHUNKS = """
WITH c AS MATERIALIZED (
    SELECT run_id, steps, timestamps_ms, vals, model_id, dataset_name, dataset_digest
    FROM metric_chunks WHERE run_id = ANY($1::text[]) AND key = $2
)
SELECT * FROM c WHERE (SELECT sum(cardinality(steps)) FROM c) <= $3
"""
_HISTORY_POINT = """
SELECT DISTINCT ON (p.step, p.timestamp_ms, p.value)
       c.run_id, p.step, p.timestamp_ms, p.value, c.model_id, c.dataset_name, c.dataset_digest
FROM metric_chunks c
CROSS JOIN LATERAL unnest(c.steps, c.timestamps_ms, c.vals) AS p(step, timestamp_ms, value)
WHERE c.run_id = $1 AND c.key = $2 {where}
ORDER BY p.step, p.timestamp_ms, p.value, {plain_first}
"""
_BULK_WHOLE_ROWS = 20_000
_HISTORY_WHOLE_POINTS = 50_000
# Of identical points, reads keep the one logged without a model or dataset. log_model copies a
# run's step-0 points onto each new model (same point, model_id set) and picks the points to copy
# from the run's history by "model_id is None": had a read answered with an earlier model's copy,
# the next model would get none (MLflow's table keeps the first-logged, plain copy).
# (Code-point order, as the Python merge sorts, so both read paths pick the same copy.)
_PLAIN_FIRST = (
    'model_id COLLATE "C" NULLS FIRST, dataset_name COLLATE "C" NULLS FIRST, dataset_digest COLLATE "C" NULLS FIRST'
)
_HISTORY_PAGE_BY_OFFSET = _HISTORY_POINT.format(where="", plain_first=_PLAIN_FIRST) + "LIMIT $3 OFFSET $4"
# PostgreSQL orders NaN above every number and equal to itself, as the Python merge ranks it.
_HISTORY_PAGE_AFTER = _HISTORY_POINT.format(
    where="AND c.last_step >= $3 AND (p.step, p.timestamp_ms, p.value) > ($3, $4, $5)", plain_first=_PLAIN_FIRST
) + "LIMIT $6"
