"""Runs, params, run tags, dataset inputs and model outputs in PostgreSQL (metrics: metrics.py)."""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from collections.abc import Sequence

import asyncpg
import orjson

from metricgate.entities import (
    Dataset,
    DatasetInput,
    Metric,
    ModelOutput,
    Page,
    Param,
    Run,
    RunInfo,
    Tag,
)
from metricgate.errors import InvalidParameter, NotFound
from metricgate.names import random_run_name
from metricgate.search.paging import decode_page_token, encode_page_token
from metricgate.stores.postgres.experiments import active_experiment_location, now_ms
from metricgate.stores.postgres.pool import Database
from metricgate.stores.postgres.search_sql import compile_run_search

RUN_NAME_TAG = "mlflow.runName"
MODEL_HISTORY_TAG = "mlflow.log-model.history"
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")


def run_not_found(run_id: str) -> NotFound:
    return NotFound(f"Run with id={run_id} not found")


def _inactive(run_id: str, stage: str) -> InvalidParameter:
    return InvalidParameter(f"The run {run_id} must be in the 'active' state. Current state is {stage}.")


async def require_active_run(conn: asyncpg.Connection, run_id: str, *, lock: bool = False) -> None:
    """Raise unless the run exists and is active; ``lock`` serialises writers of the same run."""
    sql = "SELECT lifecycle_stage FROM runs WHERE run_id = $1" + (" FOR SHARE" if lock else "")
    stage = await conn.fetchval(sql, run_id)
    if stage is None:
        raise run_not_found(run_id)
    if stage != "active":
        raise _inactive(run_id, stage)


# The metric hot path checks "is this run active?" on every request; a short-lived positive cache
# takes that database round trip off it. A deletion made through this process is seen at once,
# one made through another gateway within this many seconds.
ACTIVE_RUN_CACHE_TTL_S = 5.0
ACTIVE_RUN_CACHE_MAX = 100_000


class PgRunStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._active_until: dict[str, float] = {}

    # ------------------------------------------------------------------ lifecycle

    async def create(
        self,
        experiment_id: int,
        user_id: str,
        start_time: int | None,
        run_name: str | None,
        tags: Sequence[Tag],
    ) -> Run:
        tag_map = {t.key: t.value for t in tags}
        name = run_name or tag_map.get(RUN_NAME_TAG) or random_run_name()
        tag_map[RUN_NAME_TAG] = name
        run_id = uuid.uuid4().hex
        async with self._db.transaction() as conn:
            experiment_location = await active_experiment_location(conn, experiment_id)
            artifact_uri = f"{experiment_location}/{run_id}/artifacts"
            await conn.execute(
                """INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time,
                                     lifecycle_stage, artifact_uri)
                   VALUES ($1, $2, $3, $4, 'RUNNING', $5, 'active', $6)""",
                run_id,
                experiment_id,
                name,
                user_id,
                start_time if start_time is not None else now_ms(),
                artifact_uri,
            )
            await conn.executemany(
                "INSERT INTO tags (run_id, key, value) VALUES ($1, $2, $3)",
                [(run_id, k, v) for k, v in tag_map.items()],
            )
            return (await _load_runs(conn, [run_id]))[0]

    async def get(self, run_id: str) -> Run:
        async with self._db.connection() as conn:
            runs = await _load_runs(conn, [run_id])
        if not runs:
            raise run_not_found(run_id)
        return runs[0]

    async def require_exists(self, run_id: str) -> None:
        async with self._db.connection() as conn:
            if await conn.fetchval("SELECT 1 FROM runs WHERE run_id = $1", run_id) is None:
                raise run_not_found(run_id)

    def forget_active_runs(self) -> None:
        """Drop the active-run cache (an experiment deletion just deleted many runs at once)."""
        self._active_until.clear()

    async def require_active(self, run_id: str) -> None:
        now = time.monotonic()
        if self._active_until.get(run_id, 0.0) > now:
            return
        async with self._db.connection() as conn:
            await require_active_run(conn, run_id)
        if len(self._active_until) >= ACTIVE_RUN_CACHE_MAX:
            self._active_until.clear()
        self._active_until[run_id] = now + ACTIVE_RUN_CACHE_TTL_S

    async def update(
        self, run_id: str, status: str | None, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        async with self._db.transaction() as conn:
            await require_active_run(conn, run_id, lock=True)
            await conn.execute(
                """UPDATE runs SET status = coalesce($2, status), end_time = coalesce($3, end_time),
                                   run_name = coalesce($4, run_name)
                   WHERE run_id = $1""",
                run_id,
                status,
                end_time,
                run_name,
            )
            if run_name:
                await _upsert_tags(conn, run_id, [Tag(RUN_NAME_TAG, run_name)])
            return (await _load_runs(conn, [run_id]))[0].info

    async def delete(self, run_id: str) -> None:
        await self._set_stage(run_id, "deleted", now_ms())

    async def restore(self, run_id: str) -> None:
        await self._set_stage(run_id, "active", None)

    async def _set_stage(self, run_id: str, stage: str, deleted_time: int | None) -> None:
        self._active_until.pop(run_id, None)
        async with self._db.connection() as conn:
            found = await conn.fetchval(
                "UPDATE runs SET lifecycle_stage = $2, deleted_time = $3 WHERE run_id = $1 RETURNING 1",
                run_id,
                stage,
                deleted_time,
            )
        if found is None:
            raise run_not_found(run_id)

    # ------------------------------------------------------------------ params and tags

    async def set_tag(self, run_id: str, tag: Tag) -> None:
        await self.log_params_and_tags(run_id, [], [tag])

    async def delete_tag(self, run_id: str, key: str) -> None:
        async with self._db.transaction() as conn:
            await require_active_run(conn, run_id, lock=True)
            deleted = await conn.fetchval(
                "DELETE FROM tags WHERE run_id = $1 AND key = $2 RETURNING key", run_id, key
            )
        if deleted is None:
            raise NotFound(f"No tag with name: {key} in run with id {run_id}")

    async def log_params_and_tags(self, run_id: str, params: Sequence[Param], tags: Sequence[Tag]) -> None:
        """One transaction: either every param and tag is stored or none is (write-once params)."""
        async with self._db.transaction() as conn:
            await require_active_run(conn, run_id, lock=True)
            if params:
                await _insert_params(conn, run_id, params)
            if tags:
                await _upsert_tags(conn, run_id, tags)
                names = [t.value for t in tags if t.key == RUN_NAME_TAG]
                if names:
                    await conn.execute("UPDATE runs SET run_name = $2 WHERE run_id = $1", run_id, names[-1])

    async def append_model_history(self, run_id: str, model_json: str) -> None:
        """Legacy ``runs/log-model`` (MLflow 2 clients): append to the run's model history tag.

        Appending in SQL keeps concurrent calls from overwriting each other's entries."""
        async with self._db.transaction() as conn:
            await require_active_run(conn, run_id, lock=True)
            await conn.execute(
                """INSERT INTO tags (run_id, key, value) VALUES ($1, $2, $3)
                   ON CONFLICT (run_id, key)
                   DO UPDATE SET value = (tags.value::jsonb || excluded.value::jsonb)::text""",
                run_id,
                MODEL_HISTORY_TAG,
                "[" + model_json + "]",
            )

    # ------------------------------------------------------------------ abandoned runs

    async def running_idle_since(self, cutoff_ms: int, limit: int = 1000) -> dict[str, int]:
        """RUNNING, active, not yet marked runs whose start and newest metric are before
        ``cutoff_ms``: run_id -> last activity seen in PostgreSQL."""
        async with self._db.connection() as conn:
            # The idle test is in SQL, before the LIMIT: many long-lived live runs must not
            # crowd an abandoned one out of every sweep.
            rows = await conn.fetch(
                """SELECT run_id, last_ms FROM (
                       SELECT r.run_id, r.start_time,
                              greatest(coalesce(r.start_time, 0),
                                       coalesce((SELECT max(l.timestamp_ms) FROM latest_metrics l
                                                 WHERE l.run_id = r.run_id), 0)) AS last_ms
                       FROM runs r
                       WHERE r.status = 'RUNNING' AND r.lifecycle_stage = 'active'
                         AND coalesce(r.start_time, 0) <= $1
                         AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.run_id = r.run_id AND t.key = $2)
                   ) candidates
                   WHERE last_ms <= $1
                   ORDER BY start_time
                   LIMIT $3""",
                cutoff_ms,
                "metricgate.abandoned",
                limit,
            )
        return {row["run_id"]: row["last_ms"] for row in rows if row["last_ms"] <= cutoff_ms}

    async def mark_abandoned(self, run_id: str, tag_key: str, last_activity_ms: int, *, fail: bool) -> None:
        async with self._db.transaction() as conn:
            status = await conn.fetchval("SELECT status FROM runs WHERE run_id = $1 FOR UPDATE", run_id)
            if status != "RUNNING":
                return  # ended meanwhile
            await _upsert_tags(conn, run_id, [Tag(tag_key, "true")])
            if fail:
                await conn.execute(
                    "UPDATE runs SET status = 'FAILED', end_time = $2 WHERE run_id = $1", run_id, last_activity_ms
                )

    # ------------------------------------------------------------------ inputs and outputs

    async def log_inputs(self, run_id: str, datasets: Sequence[DatasetInput], model_ids: Sequence[str]) -> None:
        async with self._db.transaction() as conn:
            await require_active_run(conn, run_id, lock=True)
            experiment_id = await conn.fetchval("SELECT experiment_id FROM runs WHERE run_id = $1", run_id)
            # As in MLflow, a dataset already linked to the run keeps its first input tags.
            for item in datasets:
                dataset_id = await _upsert_dataset(conn, experiment_id, item.dataset)
                await conn.execute(
                    """INSERT INTO run_dataset_inputs (run_id, dataset_id, tags) VALUES ($1, $2, $3::jsonb)
                       ON CONFLICT (run_id, dataset_id) DO NOTHING""",
                    run_id,
                    dataset_id,
                    orjson.dumps([{"key": t.key, "value": t.value} for t in item.tags]).decode(),
                )
            if model_ids:
                await conn.executemany(
                    "INSERT INTO run_model_inputs (run_id, model_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    [(run_id, m) for m in model_ids],
                )

    async def log_outputs(self, run_id: str, outputs: Sequence[ModelOutput]) -> None:
        async with self._db.transaction() as conn:
            await require_active_run(conn, run_id, lock=True)
            await conn.executemany(
                """INSERT INTO run_model_outputs (run_id, model_id, step) VALUES ($1, $2, $3)
                   ON CONFLICT (run_id, model_id) DO UPDATE SET step = excluded.step""",
                [(run_id, o.model_id, o.step) for o in outputs],
            )

    # ------------------------------------------------------------------ search

    async def search(
        self,
        experiment_ids: list[int],
        filter_string: str | None,
        view_type: str,
        max_results: int,
        order_by: list[str],
        page_token: str | None,
    ) -> Page:
        offset = decode_page_token(page_token)
        sql, args = compile_run_search(experiment_ids, filter_string, order_by, view_type, max_results, offset)
        async with self._db.connection() as conn:
            run_ids = [row["run_id"] for row in await conn.fetch(sql, *args)]
            runs = await _load_runs(conn, run_ids[:max_results])
        token = encode_page_token(offset + max_results) if len(run_ids) > max_results else None
        return Page(runs, token)


# ---------------------------------------------------------------------- helpers


async def _insert_params(conn: asyncpg.Connection, run_id: str, params: Sequence[Param]) -> None:
    keys = [p.key for p in params]
    values = [p.value for p in params]
    await conn.execute(
        """INSERT INTO params (run_id, key, value)
           SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)
           ON CONFLICT (run_id, key) DO NOTHING""",
        run_id,
        keys,
        values,
    )
    # Params are write-once: re-logging the same value is fine, a different one is refused and
    # the whole transaction (with every other param and tag of the request) rolls back.
    rows = await conn.fetch(
        "SELECT key, value FROM params WHERE run_id = $1 AND key = ANY($2::text[])", run_id, keys
    )
    stored = {row["key"]: row["value"] for row in rows}
    changed = [p for p in params if stored.get(p.key) != p.value]
    if not changed:
        return
    if len(params) == 1:
        p = changed[0]
        raise InvalidParameter(
            f"Changing param values is not allowed. Param with key='{p.key}' was already logged "
            f"with value='{stored[p.key]}' for run ID='{run_id}'. Attempted logging new value '{p.value}'."
        )
    listing = [{"key": p.key, "old_value": stored[p.key], "new_value": p.value} for p in changed]
    raise InvalidParameter(
        f"Changing param values is not allowed. Params were already logged='{listing}' for run ID='{run_id}'."
    )


async def _upsert_tags(conn: asyncpg.Connection, run_id: str, tags: Sequence[Tag]) -> None:
    # Later duplicates in one request win, as when the client sends them one by one.
    latest = {t.key: t.value for t in tags}
    await conn.execute(
        """INSERT INTO tags (run_id, key, value)
           SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)
           ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value""",
        run_id,
        list(latest.keys()),
        list(latest.values()),
    )


async def _upsert_dataset(conn: asyncpg.Connection, experiment_id: int, ds: Dataset) -> str:
    dataset_id = await conn.fetchval(
        """INSERT INTO datasets (dataset_id, experiment_id, name, digest, source_type, source, schema, profile)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (experiment_id, name, digest) DO UPDATE SET name = excluded.name
           RETURNING dataset_id""",
        uuid.uuid4().hex,
        experiment_id,
        ds.name,
        ds.digest,
        ds.source_type,
        ds.source,
        ds.schema,
        ds.profile,
    )
    return str(dataset_id)


async def _load_runs(conn: asyncpg.Connection, run_ids: Sequence[str]) -> list[Run]:
    """Full runs in the order of ``run_ids``: one query per related table, not per run."""
    if not run_ids:
        return []
    ids = list(run_ids)
    info_rows = await conn.fetch("SELECT * FROM runs WHERE run_id = ANY($1::text[])", ids)
    if not info_rows:
        return []
    params = await _group(conn, "SELECT run_id, key, value FROM params WHERE run_id = ANY($1::text[]) ORDER BY key", ids)
    tags = await _group(conn, "SELECT run_id, key, value FROM tags WHERE run_id = ANY($1::text[]) ORDER BY key", ids)
    metrics = await _group(
        conn,
        """SELECT run_id, key, value, timestamp_ms, step, model_id FROM latest_metrics
           WHERE run_id = ANY($1::text[]) ORDER BY key""",
        ids,
    )
    datasets = await _group(
        conn,
        """SELECT i.run_id, i.tags, d.name, d.digest, d.source_type, d.source, d.schema, d.profile
           FROM run_dataset_inputs i JOIN datasets d USING (dataset_id)
           WHERE i.run_id = ANY($1::text[]) ORDER BY d.name""",
        ids,
    )
    model_inputs = await _group(conn, "SELECT run_id, model_id FROM run_model_inputs WHERE run_id = ANY($1::text[])", ids)
    outputs = await _group(
        conn, "SELECT run_id, model_id, step FROM run_model_outputs WHERE run_id = ANY($1::text[]) ORDER BY step", ids
    )
    by_id = {}
    for row in info_rows:
        rid = row["run_id"]
        by_id[rid] = Run(
            info=RunInfo(
                run_id=rid,
                experiment_id=str(row["experiment_id"]),
                run_name=row["run_name"],
                user_id=row["user_id"],
                status=row["status"],
                start_time=row["start_time"],
                end_time=row["end_time"],
                artifact_uri=row["artifact_uri"],
                lifecycle_stage=row["lifecycle_stage"],
            ),
            metrics=tuple(
                Metric(r["key"], r["value"], r["timestamp_ms"], r["step"], model_id=r["model_id"])
                for r in metrics[rid]
            ),
            params=tuple(Param(r["key"], r["value"]) for r in params[rid]),
            tags=tuple(Tag(r["key"], r["value"]) for r in tags[rid]),
            dataset_inputs=tuple(_dataset_input(r) for r in datasets[rid]),
            model_inputs=tuple(r["model_id"] for r in model_inputs[rid]),
            model_outputs=tuple(ModelOutput(r["model_id"], r["step"]) for r in outputs[rid]),
        )
    return [by_id[rid] for rid in ids if rid in by_id]


async def _group(conn: asyncpg.Connection, sql: str, ids: list[str]) -> dict[str, list[asyncpg.Record]]:
    grouped: dict[str, list[asyncpg.Record]] = defaultdict(list)
    for row in await conn.fetch(sql, ids):
        grouped[row["run_id"]].append(row)
    return grouped


def _dataset_input(row: asyncpg.Record) -> DatasetInput:
    tags = orjson.loads(row["tags"]) if isinstance(row["tags"], (str, bytes)) else row["tags"]
    return DatasetInput(
        dataset=Dataset(
            name=row["name"],
            digest=row["digest"],
            source_type=row["source_type"],
            source=row["source"],
            schema=row["schema"],
            profile=row["profile"],
        ),
        tags=tuple(Tag(t["key"], t["value"]) for t in tags),
    )
