"""Metric points in PostgreSQL: the batch writer flushers use, and history reads.

Points are stored as chunks (migration 0006): one row per (run, key) of one request, its points
as arrays. Writes are idempotent: the unique index on (run, key, digest of the request) turns a
replayed or retried request into a no-op. Reads fold identical points (step, timestamp, value),
MLflow's rule, which also hides a point two different requests both carried: short histories are
merged from their chunks in Python (metric_series.py), long ones read through the ``metrics``
view (one row per point) with DISTINCT ON.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import AsyncIterator, Sequence

import asyncpg

from metricgate.domain.metrics.chunks import FlushBatch, build_batch, chunks_from_metrics
from metricgate.domain.search.paging import decode_history_token, encode_history_token
from metricgate.domain.tracking.entities import Metric, MetricSeries, Page
from metricgate.stores.postgres.chunk_copy import copy_record, encode_chunks
from metricgate.stores.postgres.metric_series import (
    ChunkSpan,
    merge_chunks,
    rank_positions,
    ranks_are_positions,
    sample_ranks,
    sample_series,
    series_of_points,
)
from metricgate.stores.postgres.pool import Database, PgConnection

CHUNK_COLUMNS = (
    "run_id",
    "key",
    "steps",
    "timestamps_ms",
    "vals",
    "model_id",
    "dataset_name",
    "dataset_digest",
    "digest",
    "first_step",
    "last_step",
    "n_points",
    "steps_ascending",
)

_INSERT_CHUNK_DEDUPLICATED = """
INSERT INTO metric_chunks
    (run_id, key, steps, timestamps_ms, vals, model_id, dataset_name, dataset_digest, digest, first_step, last_step,
     n_points, steps_ascending)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
ON CONFLICT DO NOTHING
"""

# Rows arrive pre-reduced to one per (run, key) (domain/metrics/chunks.py), so ON CONFLICT never
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
    return (
        [list(column) for column in zip(*rows, strict=True)][:width]
        if rows
        else [[] for _ in range(width)]
    )


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
                        "metric_chunks",
                        source=_once(encode_chunks(batch.chunks)),
                        columns=CHUNK_COLUMNS,
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

    async def history(
        self, run_id: str, key: str, max_results: int, page_token: str | None
    ) -> Page:
        """A page of the (run, key)'s points in (step, timestamp, value) order, identical points
        once: ``items`` is one ``MetricSeries`` (none when the page is empty)."""
        offset, after = decode_history_token(page_token)
        async with self._db.read_connection() as conn:
            # As in bulk_interval: a history of up to _HISTORY_WHOLE_POINTS comes as its chunks
            # and is merged here. A longer one is paged by PostgreSQL: after the first page from
            # where the previous page ended (keyset), by OFFSET only for a token that does not
            # say where (MLflow's format); either way over only the chunks that can hold the page.
            series = None
            page: MetricSeries | None
            if after is None:
                chunks = await conn.fetch(_WHOLE_CHUNKS, [run_id], key, _HISTORY_WHOLE_POINTS)
                if chunks:
                    series = merge_chunks(run_id, key, chunks)
            if series is not None:
                page = series.slice(offset, offset + max_results)
                more = len(series) > offset + max_results
            else:
                rows = await _history_page(conn, run_id, key, max_results + 1, offset, after)
                more = len(rows) > max_results
                found = series_of_points(key, rows[:max_results])
                page = found[0] if found else None
        token = None
        if more and page is not None:
            last = len(page) - 1
            token = encode_history_token(
                offset + len(page), (page.steps[last], page.timestamps_ms[last], page.values[last])
            )
        return Page([page] if page else [], token)

    async def bulk_interval(
        self,
        run_ids: Sequence[str],
        key: str,
        max_results: int,
        start_step: int | None,
        end_step: int | None,
    ) -> list[MetricSeries]:
        """MLflow 3.17.2's downsampled history for plots: per run, ``min(points, max_results)``
        points evenly spread by rank over its points in the step range, the first and the last
        among them (metric_series.sample_ranks). One series per run that has points there, in
        the order asked (each run once)."""
        wanted = list(dict.fromkeys(run_ids))
        lo, hi = (
            (start_step, end_step)
            if start_step is not None and end_step is not None
            else (_INT64_MIN, _INT64_MAX)
        )
        out: dict[str, MetricSeries] = {}
        async with self._db.read_connection() as conn:
            # 1. The runs' chunks without their arrays (from the index; the arrays only of a
            #    chunk cut by the step range). A run whose chunks are each in step order and do
            #    not overlap (every training loop's) has its sampled points located by rank from
            #    the counts and read straight out of the few chunks that hold them.
            spans: dict[str, list[ChunkSpan]] = {}
            for row in await conn.fetch(_CHUNK_SPANS, wanted, key, lo, hi):
                spans.setdefault(row[0], []).append(ChunkSpan(*row[1:]))
            picks: list[tuple[str, int, list[int]]] = []
            general: list[str] = []
            for run_id, run_spans in spans.items():
                total = sum(s.count for s in run_spans)
                # When every point is wanted, fetching the whole chunks and concatenating them
                # (the general path) is cheaper than locating each point in its chunk.
                if _RANKS_FROM_COUNTS and total > max_results and ranks_are_positions(run_spans):
                    ranks = sample_ranks(total, max_results)
                    picks += [
                        (run_id, run_spans[i].first_step, pos)
                        for i, pos in rank_positions(run_spans, ranks)
                    ]
                else:
                    general.append(run_id)
            if picks:
                out.update(
                    (s.run_id, s)
                    for s in series_of_points(key, await _pick_points(conn, key, picks))
                )
            # 2. Anything else (points out of order inside a chunk, chunks overlapping, a point
            #    stored twice) is merged with identical points folded: whole in Python when small,
            #    else sampled by PostgreSQL as MLflow's store does (NTILE over the points).
            small = [r for r in general if sum(s.count for s in spans[r]) <= _BULK_WHOLE_ROWS]
            if small:
                by_run: dict[str, list[asyncpg.Record]] = {}
                for chunk in await conn.fetch(_ALL_CHUNKS, small, key):
                    by_run.setdefault(chunk[0], []).append(chunk)
                for run_id, chunks in by_run.items():
                    series = sample_series(
                        merge_chunks(run_id, key, chunks), max_results, start_step, end_step
                    )
                    if len(series):
                        out[run_id] = series
            large = [r for r in general if r not in small]
            if large:
                rows = await conn.fetch(_NTILE_SAMPLE, large, key, max(1, max_results), lo, hi)
                out.update(
                    (s.run_id, s)
                    for s in series_of_points(key, _mlflow_last_point_rule(rows, max_results))
                )
        return [out[r] for r in wanted if r in out]


async def _history_page(
    conn: PgConnection,
    run_id: str,
    key: str,
    limit: int,
    offset: int,
    after: tuple[int, int, float] | None,
) -> list[asyncpg.Record]:
    """``limit`` points of a long history: after the point ``after`` when the token says it,
    else from ``offset``. First the highest step the page can reach, from the chunks' point counts
    (the chunks after the previous page, in step order, until they hold ``offset + limit``
    points), so the page unnests only the chunks up to it, however long the history."""
    if after is None:
        row = await conn.fetchrow(_PAGE_BOUND_FROM_START, run_id, key, offset + limit)
    else:  # the offset a keyset token also carries is MLflow's, not where this page starts
        row = await conn.fetchrow(_PAGE_BOUND_AFTER, run_id, key, limit, after[0])
    assert row is not None  # aggregates without GROUP BY: always one row
    bound, complete = row
    # When those chunks are all there is, a chunk begun before them may still reach past their
    # last step: no bound then (the chunks read are the page's anyway).
    upto = _INT64_MAX if complete or bound is None else bound
    rows = await _page_rows(conn, run_id, key, limit, offset, after, upto)
    if len(rows) < limit and upto != _INT64_MAX:
        # Short only because two requests stored the same points (counted twice, read once):
        # read on without the bound.
        rows = await _page_rows(conn, run_id, key, limit, offset, after, _INT64_MAX)
    return rows


async def _page_rows(
    conn: PgConnection,
    run_id: str,
    key: str,
    limit: int,
    offset: int,
    after: tuple[int, int, float] | None,
    upto: int,
) -> list[asyncpg.Record]:
    if after is None:
        return await conn.fetch(_HISTORY_PAGE_BY_OFFSET, run_id, key, limit, offset, upto)
    return await conn.fetch(_HISTORY_PAGE_AFTER, run_id, key, *after, limit, upto)


async def _pick_points(
    conn: PgConnection, key: str, picks: Sequence[tuple[str, int, list[int]]]
) -> list[asyncpg.Record]:
    """The points at the given array positions of the given chunks (run, first step), as point
    rows in the order given."""
    flat: list[int] = []
    bounds: list[tuple[int, int]] = []
    for _, _, positions in picks:
        bounds.append((len(flat) + 1, len(flat) + len(positions)))
        flat += positions
    return await conn.fetch(
        _PICK_POINTS,
        [p[0] for p in picks],
        [p[1] for p in picks],
        key,
        [b[0] for b in bounds],
        [b[1] for b in bounds],
        flat,
    )


def _mlflow_last_point_rule(
    rows: Sequence[asyncpg.Record], max_results: int
) -> list[asyncpg.Record]:
    """_NTILE_SAMPLE's rows (each bucket's first point, and each run's last point, flagged) as
    MLflow keeps them: the last point is added, or replaces the last bucket's first when the run
    already has ``max_results`` points."""
    out: list[asyncpg.Record] = []
    for _, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        points = list(group)
        starts = [p for p in points if p["bucket_first"]]
        last = points[-1]
        if not last["bucket_first"]:
            if len(starts) >= max(1, max_results):
                starts[-1] = last
            else:
                starts.append(last)
        out += starts
    return out


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Tests turn the rank-from-counts path off to check it against the general one.
_RANKS_FROM_COUNTS = True
# A chunk's point count (NULL for a chunk an older writer stored during an upgrade: counted).
_COUNT = "coalesce(c.n_points, cardinality(c.steps))"

# Every chunk of the runs' key, or nothing when they hold more than $3 points in all.
_WHOLE_CHUNKS = f"""
WITH c AS MATERIALIZED (
    SELECT run_id, steps, timestamps_ms, vals, model_id, dataset_name, dataset_digest, {_COUNT} AS n
    FROM metric_chunks c WHERE run_id = ANY($1::text[]) AND key = $2
)
SELECT * FROM c WHERE (SELECT sum(n) FROM c) <= $3
"""
_ALL_CHUNKS = """
SELECT run_id, steps, timestamps_ms, vals, model_id, dataset_name, dataset_digest
FROM metric_chunks WHERE run_id = ANY($1::text[]) AND key = $2
"""
# The runs' chunks that reach into [$3, $4], in step order, as metric_series.ChunkSpan: how
# many of a chunk's points lie in the range and where the first of them is. Only a chunk that
# the range cuts has its steps read (and then it is the first or last chunk of an ordered run).
_CHUNK_SPANS = f"""
SELECT c.run_id, c.first_step, c.last_step, coalesce(c.steps_ascending, false),
       CASE WHEN c.first_step >= $3 AND c.last_step <= $4 THEN {_COUNT}
            ELSE (SELECT count(*) FROM unnest(c.steps) s WHERE s BETWEEN $3 AND $4)::int END,
       CASE WHEN c.first_step >= $3 THEN 1
            ELSE (SELECT count(*) FROM unnest(c.steps) s WHERE s < $3)::int + 1 END
FROM metric_chunks c
WHERE c.run_id = ANY($1::text[]) AND c.key = $2 AND c.last_step >= $3 AND c.first_step <= $4
ORDER BY c.run_id, c.first_step, c.last_step
"""
# The points at array positions $6[$4:$5] of each chunk ($1 run, $2 first step) of the key, in
# the order given. A chunk's arrays are copied out of TOAST once (`|| '{}'`, in a LIMITed
# lateral subquery so that it is not inlined): a subscript of the stored array would detoast the
# whole array again for every point. The lateral join also keeps each lookup on the index.
_PICK_POINTS = """
SELECT k.run_id, c.s[x.i], c.t[x.i], c.v[x.i], c.model_id, c.dataset_name, c.dataset_digest
FROM unnest($1::text[], $2::bigint[], $4::int[], $5::int[]) WITH ORDINALITY AS k(run_id, first_step, lo, hi, ord)
CROSS JOIN LATERAL (
    SELECT m.steps || '{}'::bigint[] AS s, m.timestamps_ms || '{}'::bigint[] AS t, m.vals || '{}'::float8[] AS v,
           m.model_id, m.dataset_name, m.dataset_digest
    FROM metric_chunks m
    WHERE m.run_id = k.run_id AND m.key = $3 AND m.first_step = k.first_step
    LIMIT 1
) c
CROSS JOIN LATERAL unnest(($6::int[])[k.lo:k.hi]) WITH ORDINALITY AS x(i, n)
ORDER BY k.ord, x.n
"""
# MLflow's sampling query (sqlalchemy_store._sample_rows_with_window_functions) over the points
# with identical ones folded: each run's points in [$4, $5] in NTILE($3) buckets, the first of
# each bucket and the run's last point, flagged; _mlflow_last_point_rule finishes it.
_NTILE_SAMPLE = """
SELECT run_id, step, timestamp_ms, value, model_id, dataset_name, dataset_digest, bucket_first
FROM (
    SELECT d.*, row_number() OVER (PARTITION BY d.run_id, d.bucket ORDER BY d.step, d.timestamp_ms, d.value) = 1
                    AS bucket_first,
           d.n = count(*) OVER (PARTITION BY d.run_id) AS is_last
    FROM (
        SELECT p.*, ntile($3) OVER w AS bucket, row_number() OVER w AS n
        FROM (
            SELECT DISTINCT ON (run_id, step, timestamp_ms, value)
                   run_id, step, timestamp_ms, value, model_id, dataset_name, dataset_digest
            FROM metrics
            WHERE run_id = ANY($1::text[]) AND key = $2 AND step BETWEEN $4 AND $5
            ORDER BY run_id, step, timestamp_ms, value, {plain_first}
        ) p
        WINDOW w AS (PARTITION BY p.run_id ORDER BY p.step, p.timestamp_ms, p.value)
    ) d
) s
WHERE bucket_first OR is_last
ORDER BY array_position($1::text[], run_id), step, timestamp_ms, value
"""
_HISTORY_POINT = """
SELECT DISTINCT ON (p.step, p.timestamp_ms, p.value)
       c.run_id, p.step, p.timestamp_ms, p.value, c.model_id, c.dataset_name, c.dataset_digest
FROM metric_chunks c
CROSS JOIN LATERAL unnest(c.steps, c.timestamps_ms, c.vals) AS p(step, timestamp_ms, value)
WHERE c.run_id = $1 AND c.key = $2 {where}
ORDER BY p.step, p.timestamp_ms, p.value, {plain_first}
"""
# The highest step a history page can reach: of the chunks that start after the previous page's
# last step ($4; every chunk for a first or offset page), in step order, those needed to hold
# $3 points (counting a point stored twice twice, hence the caller's retry), and whether that
# took every chunk (then the bound cuts nothing).
_PAGE_BOUND = f"""
SELECT max(last_step) FILTER (WHERE before < $3), coalesce(bool_and(before < $3), true)
FROM (
    SELECT c.last_step, sum({_COUNT}) OVER (ORDER BY c.first_step, c.last_step ROWS UNBOUNDED PRECEDING)
                        - {_COUNT} AS before
    FROM metric_chunks c WHERE c.run_id = $1 AND c.key = $2 {{where}}
) s
"""
_PAGE_BOUND_FROM_START = _PAGE_BOUND.format(where="")
_PAGE_BOUND_AFTER = _PAGE_BOUND.format(where="AND c.first_step > $4")
_BULK_WHOLE_ROWS = 20_000
_HISTORY_WHOLE_POINTS = 50_000
# Of identical points, reads keep the one logged without a model or dataset. log_model copies a
# run's step-0 points onto each new model (same point, model_id set) and picks the points to copy
# from the run's history by "model_id is None": had a read answered with an earlier model's copy,
# the next model would get none (MLflow's table keeps the first-logged, plain copy).
# (Code-point order, as the Python merge sorts, so both read paths pick the same copy.)
_PLAIN_FIRST = (
    'model_id COLLATE "C" NULLS FIRST, dataset_name COLLATE "C" NULLS FIRST, '
    'dataset_digest COLLATE "C" NULLS FIRST'
)
_NTILE_SAMPLE = _NTILE_SAMPLE.format(plain_first=_PLAIN_FIRST)
# Points up to step $5 (the page's bound) from offset $4.
_HISTORY_PAGE_BY_OFFSET = (
    _HISTORY_POINT.format(where="AND c.first_step <= $5 AND p.step <= $5", plain_first=_PLAIN_FIRST)
    + "LIMIT $3 OFFSET $4"
)
# PostgreSQL orders NaN above every number and equal to itself, as the Python merge ranks it.
_HISTORY_PAGE_AFTER = (
    _HISTORY_POINT.format(
        where="AND c.last_step >= $3 AND c.first_step <= $7 AND p.step <= $7"
        " AND (p.step, p.timestamp_ms, p.value) > ($3, $4, $5)",
        plain_first=_PLAIN_FIRST,
    )
    + "LIMIT $6"
)
