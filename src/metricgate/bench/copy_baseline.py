"""The raw COPY limit of a PostgreSQL server: asyncpg ``copy_records_to_table`` of workload-shaped
rows into (1) a table shaped like MLflow's ``metrics`` table and (2) metricgate's own
``metric_chunks`` table (one row per run and key of a request, its points as arrays: what the
flusher writes), each in a scratch schema that is dropped afterwards. Rates are points per second.

Rows come in the send order of the ingest benchmark (request by request, round-robin over runs)
and are copied in batches, one transaction (one commit) per batch, from 1 or more connections
that take the next batch from a shared queue. The "+latest" variant also upserts the latest value
per (run, key) of the batch in the same transaction, as MLflow's ``latest_metrics`` and
metricgate's ``latest_metrics`` are maintained. Only the copying is timed.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from importlib import resources
from typing import Any

import asyncpg

from metricgate.bench.report import fmt_int, fmt_s, format_table
from metricgate.bench.workload import Workload, iter_copy_rows
from metricgate.domain.metrics.chunks import chunks_from_rows
from metricgate.stores.postgres.chunk_copy import copy_record
from metricgate.stores.postgres.metrics import CHUNK_COLUMNS

# MLflow 3.17.2's metrics and latest_metrics as its alembic migrations leave them on PostgreSQL
# (mlflow/store/db_migrations: 451aebb31d03 step, 181f10493468 is_nan + primary key,
# bd07f7e963c5 index_*_run_uuid, a5b4c3d2e1f0 index_metrics_run_uuid_key_step; 89d4b8295536
# latest_metrics). The foreign keys to runs are left out: the baseline has no runs table.
MLFLOW_METRICS_DDL = """
CREATE TABLE metrics (
    key       varchar(250)     NOT NULL,
    value     double precision NOT NULL,
    timestamp bigint           NOT NULL,
    run_uuid  varchar(32)      NOT NULL,
    step      bigint           NOT NULL DEFAULT 0,
    is_nan    boolean          NOT NULL DEFAULT false,
    CONSTRAINT metric_pk PRIMARY KEY (key, timestamp, step, run_uuid, value, is_nan)
);
CREATE INDEX index_metrics_run_uuid ON metrics (run_uuid);
CREATE INDEX index_metrics_run_uuid_key_step ON metrics (run_uuid, key, step);
"""
MLFLOW_LATEST_DDL = """
CREATE TABLE latest_metrics (
    key       varchar(250)     NOT NULL,
    value     double precision NOT NULL,
    timestamp bigint,
    step      bigint           NOT NULL DEFAULT 0,
    is_nan    boolean          NOT NULL DEFAULT false,
    run_uuid  varchar(32)      NOT NULL,
    CONSTRAINT latest_metric_pk PRIMARY KEY (key, run_uuid)
);
CREATE INDEX index_latest_metrics_run_uuid ON latest_metrics (run_uuid);
"""
MLFLOW_COLUMNS = ("key", "value", "timestamp", "run_uuid", "step", "is_nan")
METRICGATE_COLUMNS = CHUNK_COLUMNS

# Upserts keep the greater (step, timestamp, value): MLflow's rule for the latest value.
MLFLOW_LATEST_UPSERT = """
INSERT INTO latest_metrics AS l (key, value, timestamp, step, is_nan, run_uuid)
SELECT k, v, t, s, false, r FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[])
    AS u(r, k, s, t, v)
ON CONFLICT (key, run_uuid) DO UPDATE
SET value = excluded.value, timestamp = excluded.timestamp, step = excluded.step, is_nan = excluded.is_nan
WHERE (excluded.step, excluded.timestamp, excluded.value) > (l.step, l.timestamp, l.value)
"""
METRICGATE_LATEST_UPSERT = """
INSERT INTO latest_metrics AS l (run_id, key, step, timestamp_ms, value)
SELECT r, k, s, t, v FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::float8[])
    AS u(r, k, s, t, v)
ON CONFLICT (run_id, key) DO UPDATE
SET step = excluded.step, timestamp_ms = excluded.timestamp_ms, value = excluded.value
WHERE (excluded.step, excluded.timestamp_ms, excluded.value) > (l.step, l.timestamp_ms, l.value)
"""

_TABLE_RE = r"(?:\w+\.)?{table}"


def _split_sql(sql: str) -> list[str]:
    """Statements of a migration file: comments dropped, split on ``;`` (the migrations hold no
    functions or string literals with semicolons in the statements this module picks)."""
    without_comments = re.sub(r"--[^\n]*", "", sql)
    return [s.strip() for s in without_comments.split(";") if s.strip()]


def statements_for_table(sql: str, table: str) -> list[str]:
    """CREATE TABLE, CREATE INDEX ... ON, ALTER TABLE and PARTITION OF statements for ``table``,
    and DROP INDEX of an index created on it, in migration order."""
    name = _TABLE_RE.format(table=re.escape(table))
    patterns = [
        rf"^CREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?{name}\s*\(",
        rf"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+.*?\bON\s+(?:ONLY\s+)?{name}\b",
        rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{name}\b",
        rf"^CREATE\s+TABLE\s+.*?\bPARTITION\s+OF\s+{name}\b",
    ]
    picked: list[str] = []
    indexes: set[str] = set()  # indexes of the table: a later migration may drop one
    for statement in _split_sql(sql):
        if any(re.search(p, statement, re.IGNORECASE | re.DOTALL) for p in patterns):
            picked.append(statement)
            created = re.match(
                r"^CREATE\s+(?:UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)",
                statement,
                re.IGNORECASE,
            )
            if created:
                indexes.add(created.group(1).lower())
            continue
        dropped = re.match(
            r"^DROP\s+INDEX\s+(?:IF\s+EXISTS\s+)?(\w+)\s*$", statement, re.IGNORECASE
        )
        if dropped and dropped.group(1).lower() in indexes:
            picked.append(statement)
    return picked


def metricgate_migration_sql() -> str:
    """Every migration file of metricgate's PostgreSQL store, in version order, concatenated."""
    folder = resources.files("metricgate.stores.postgres") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return "\n;\n".join(f.read_text(encoding="utf-8") for f in files)


def metricgate_ddl(sql: str | None = None) -> tuple[str, str]:
    """(metric_chunks DDL, latest_metrics DDL) taken from metricgate's own migrations."""
    sql = metricgate_migration_sql() if sql is None else sql
    metrics = statements_for_table(sql, "metric_chunks")
    latest = statements_for_table(sql, "latest_metrics")
    if not metrics:
        raise RuntimeError("no CREATE TABLE metric_chunks found in metricgate's migrations")
    return ";\n".join(metrics) + ";", ";\n".join(latest) + ";"


@dataclass
class CopyResult:
    target: str  # "mlflow" or "metricgate"
    latest: bool  # the batch also upserts latest values
    connections: int
    batch_rows: int
    rows: int
    seconds: float
    rows_s: float

    @property
    def name(self) -> str:
        return f"{self.target}{'+latest' if self.latest else ''}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["name"] = self.name
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in data.items()}


def make_rows(workload: Workload) -> tuple[list[str], list[tuple[str, str, int, int, float]]]:
    """Run ids and every (run_id, key, step, timestamp_ms, value) of the workload, in send order."""
    run_ids = [uuid.UUID(int=(workload.seed << 64) + i).hex for i in range(workload.runs)]
    return run_ids, list(iter_copy_rows(workload, run_ids))


def _chunk_records(batch: list[tuple[str, str, int, int, float]]) -> list[tuple[Any, ...]]:
    """One batch (one request's rows) as the flusher stores it: its chunks, digest and step range."""
    chunks = chunks_from_rows((r, k, s, t, v, None, None, None) for r, k, s, t, v in batch)
    return [copy_record(c) for c in chunks]


def _latest_arrays(batch: list[tuple[str, str, int, int, float]]) -> tuple[list[Any], ...]:
    best: dict[tuple[str, str], tuple[int, int, float]] = {}
    for run_id, key, step, ts, value in batch:
        point = (step, ts, value)
        current = best.get((run_id, key))
        if current is None or point > current:
            best[(run_id, key)] = point
    ordered = sorted(best.items())  # one lock order for every connection: no deadlocks
    return (
        [rk[0] for rk, _ in ordered],
        [rk[1] for rk, _ in ordered],
        [p[0] for _, p in ordered],
        [p[1] for _, p in ordered],
        [p[2] for _, p in ordered],
    )


async def _prepare_schema(conn: asyncpg.Connection, schema: str, target: str, latest: bool) -> None:
    await conn.execute(f'CREATE SCHEMA "{schema}"')
    await conn.execute(f'SET search_path TO "{schema}"')
    if target == "mlflow":
        await conn.execute(MLFLOW_METRICS_DDL)
        if latest:
            await conn.execute(MLFLOW_LATEST_DDL)
    else:
        metrics_ddl, latest_ddl = metricgate_ddl()
        await conn.execute(metrics_ddl)
        if latest:
            await conn.execute(latest_ddl)


async def copy_once(
    dsn: str,
    rows: list[tuple[str, str, int, int, float]],
    *,
    target: str,
    latest: bool,
    connections: int,
    batch_rows: int,
) -> CopyResult:
    """COPY ``rows`` into a fresh scratch schema; returns the rate. The schema is dropped after."""
    if target not in ("mlflow", "metricgate"):
        raise ValueError(f"unknown target {target!r}")
    schema = f"mgbench_copy_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    try:
        await _prepare_schema(admin, schema, target, latest)
        columns: tuple[str, ...]
        if target == "mlflow":
            batches = [
                [(k, v, ts, r, s, False) for r, k, s, ts, v in rows[i : i + batch_rows]]
                for i in range(0, len(rows), batch_rows)
            ]
            columns, upsert = MLFLOW_COLUMNS, MLFLOW_LATEST_UPSERT
        else:
            batches = [
                _chunk_records(rows[i : i + batch_rows]) for i in range(0, len(rows), batch_rows)
            ]
            columns, upsert = METRICGATE_COLUMNS, METRICGATE_LATEST_UPSERT
        table = "metrics" if target == "mlflow" else "metric_chunks"
        latest_args = (
            [_latest_arrays(rows[i : i + batch_rows]) for i in range(0, len(rows), batch_rows)]
            if latest
            else []
        )
        conns = [
            await asyncpg.connect(dsn, server_settings={"search_path": schema})
            for _ in range(connections)
        ]
        try:
            queue: asyncio.Queue[int] = asyncio.Queue()
            for i in range(len(batches)):
                queue.put_nowait(i)

            async def worker(conn: asyncpg.Connection) -> None:
                while not queue.empty():
                    i = queue.get_nowait()
                    async with conn.transaction():
                        await conn.copy_records_to_table(
                            table, records=batches[i], columns=columns, schema_name=schema
                        )
                        if latest:
                            await conn.execute(upsert, *latest_args[i])

            started = time.perf_counter()
            await asyncio.gather(*(worker(c) for c in conns))
            seconds = time.perf_counter() - started
        finally:
            for conn in conns:
                await conn.close()
        count = "count(*)" if target == "mlflow" else "sum(cardinality(steps))"
        copied = await admin.fetchval(f'SELECT {count} FROM "{schema}".{table}')
        if copied != len(rows):
            raise RuntimeError(
                f"copied {copied} points into {schema}.{table}, expected {len(rows)}"
            )
    finally:
        try:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await admin.close()
    return CopyResult(
        target, latest, connections, batch_rows, len(rows), seconds, len(rows) / seconds
    )


async def run_copy_baselines(
    dsn: str,
    workload: Workload,
    *,
    targets: tuple[str, ...] = ("mlflow", "metricgate"),
    connections: tuple[int, ...] = (1, 2),
    batch_rows: tuple[int, ...] = (1000,),
    latest: tuple[bool, ...] = (False, True),
    progress: bool = True,
) -> list[CopyResult]:
    _, rows = make_rows(workload)
    results = []
    for target in targets:
        for with_latest in latest:
            for batch in batch_rows:
                for n in connections:
                    result = await copy_once(
                        dsn,
                        rows,
                        target=target,
                        latest=with_latest,
                        connections=n,
                        batch_rows=batch,
                    )
                    if progress:
                        print(
                            f"copy: {result.name} conns={n} batch={batch}: {fmt_int(result.rows_s)} rows/s",
                            flush=True,
                            file=sys.stderr,
                        )
                    results.append(result)
    return results


def best_rate(
    results: list[CopyResult], target: str, latest: bool = False, batch_rows: int | None = None
) -> float | None:
    rates = [
        r.rows_s
        for r in results
        if r.target == target
        and r.latest == latest
        and (batch_rows is None or r.batch_rows == batch_rows)
    ]
    return max(rates) if rates else None


def copy_table(results: list[CopyResult]) -> str:
    rows = [
        [
            r.name,
            str(r.connections),
            fmt_int(r.batch_rows),
            fmt_int(r.rows),
            fmt_s(r.seconds),
            fmt_int(r.rows_s),
        ]
        for r in results
    ]
    return format_table(("table", "conns", "rows/batch", "rows", "seconds", "rows/s"), rows)
