"""Runs, params, run tags, dataset inputs and model outputs in PostgreSQL (metrics: metrics.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from operator import itemgetter

import asyncpg
import orjson

from metricgate.domain.auth.visibility import UNRESTRICTED, Mode, Visibility
from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.names import random_run_name
from metricgate.domain.search.paging import decode_page_token, encode_page_token
from metricgate.domain.tracking.entities import (
    Dataset,
    DatasetInput,
    Metric,
    ModelOutput,
    Param,
    Run,
    RunInfo,
    Tag,
)
from metricgate.stores.base import AuditContext, RunRows, dataset_input_tags
from metricgate.stores.postgres import auth
from metricgate.stores.postgres.experiments import active_experiment_location, now_ms
from metricgate.stores.postgres.pool import Database, PgConnection
from metricgate.stores.postgres.search_sql import compile_run_search, visible_experiment_ids

RUN_NAME_TAG = "mlflow.runName"
MODEL_HISTORY_TAG = "mlflow.log-model.history"
TERMINAL_STATUSES = ("FINISHED", "FAILED", "KILLED")


def run_not_found(run_id: str) -> NotFound:
    return NotFound(f"Run with id={run_id} not found")


def _inactive(run_id: str, stage: str) -> InvalidParameter:
    return InvalidParameter(
        f"The run {run_id} must be in the 'active' state. Current state is {stage}."
    )


async def require_active_run(conn: PgConnection, run_id: str, *, lock: bool = False) -> None:
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
        return runs_from_rows(await self.get_rows(run_id))[0]

    async def get_rows(self, run_id: str) -> RunRows:
        """The run with everything it holds, as rows (one round trip); NotFound if absent."""
        async with self._db.connection() as conn:
            rows = await fetch_run_rows(conn, (run_id,))
        if not rows.ids:
            raise run_not_found(run_id)
        return rows

    async def artifact_uri(self, run_id: str) -> str:
        """Where the run's artifacts live; NotFound if there is no such run. The artifact reads
        need only this, not the run's params, tags and metrics."""
        async with self._db.connection() as conn:
            uri = await conn.fetchval("SELECT artifact_uri FROM runs WHERE run_id = $1", run_id)
        if uri is None:
            raise run_not_found(run_id)
        return str(uri)

    async def experiment_of(self, run_id: str) -> str:
        """The run's experiment id; NotFound if there is no such run. The access check needs
        only this, not the run's params, tags and metrics."""
        async with self._db.connection() as conn:
            found = await conn.fetchval("SELECT experiment_id FROM runs WHERE run_id = $1", run_id)
        if found is None:
            raise run_not_found(run_id)
        return str(found)

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

    async def delete(self, run_id: str, *, audit: AuditContext | None = None) -> None:
        await self._set_stage(run_id, "deleted", now_ms(), audit)

    async def restore(self, run_id: str) -> None:
        await self._set_stage(run_id, "active", None)

    async def _set_stage(
        self, run_id: str, stage: str, deleted_time: int | None, audit: AuditContext | None = None
    ) -> None:
        self._active_until.pop(run_id, None)
        async with self._db.transaction() as conn:
            found = await conn.fetchval(
                "UPDATE runs SET lifecycle_stage = $2, deleted_time = $3 WHERE run_id = $1 RETURNING 1",
                run_id,
                stage,
                deleted_time,
            )
            if found is None:
                raise run_not_found(run_id)
            await auth.audit_deletion(conn, audit, "run.deleted", "run", run_id)

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

    async def log_params_and_tags(
        self, run_id: str, params: Sequence[Param], tags: Sequence[Tag]
    ) -> None:
        """One transaction: either every param and tag is stored or none is (write-once params)."""
        async with self._db.transaction() as conn:
            await require_active_run(conn, run_id, lock=True)
            if params:
                await _insert_params(conn, run_id, params)
            if tags:
                await _upsert_tags(conn, run_id, tags)
                names = [t.value for t in tags if t.key == RUN_NAME_TAG]
                if names:
                    await conn.execute(
                        "UPDATE runs SET run_name = $2 WHERE run_id = $1", run_id, names[-1]
                    )

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

    async def mark_abandoned(
        self, run_id: str, tag_key: str, last_activity_ms: int, *, fail: bool
    ) -> None:
        async with self._db.transaction() as conn:
            status = await conn.fetchval(
                "SELECT status FROM runs WHERE run_id = $1 FOR UPDATE", run_id
            )
            if status != "RUNNING":
                return  # ended meanwhile
            await _upsert_tags(conn, run_id, [Tag(tag_key, "true")])
            if fail:
                await conn.execute(
                    "UPDATE runs SET status = 'FAILED', end_time = $2 WHERE run_id = $1",
                    run_id,
                    last_activity_ms,
                )

    # ------------------------------------------------------------------ inputs and outputs

    async def log_inputs(
        self, run_id: str, datasets: Sequence[DatasetInput], model_ids: Sequence[str]
    ) -> None:
        async with self._db.transaction() as conn:
            await require_active_run(conn, run_id, lock=True)
            experiment_id = await conn.fetchval(
                "SELECT experiment_id FROM runs WHERE run_id = $1", run_id
            )
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

    async def search_rows(
        self,
        experiment_ids: list[int],
        filter_string: str | None,
        view_type: str,
        max_results: int,
        order_by: list[str],
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> tuple[RunRows, str | None]:
        """One page of matching runs as rows, and the next page's token (None on the last).
        Only runs of the requested experiments ``visibility`` shows (the others are dropped).

        Two statements on one connection: the page's ids (one row more than the page, to know
        whether another follows), then every part of those runs."""
        offset = decode_page_token(page_token)
        sql, args = compile_run_search(
            experiment_ids, filter_string, order_by, view_type, max_results, offset,
            visibility=visibility,
        )  # fmt: skip
        if visibility.mode is not Mode.ALL and not visible_experiment_ids(
            experiment_ids, visibility
        ):
            return RunRows([], {}, {}, {}, {}, {}, {}, {}), None
        async with self._db.read_connection() as conn:
            run_ids = [row[0] for row in await conn.fetch(sql, *args)]
            rows = await fetch_run_rows(conn, run_ids[:max_results])
        token = encode_page_token(offset + max_results) if len(run_ids) > max_results else None
        return rows, token


# ---------------------------------------------------------------------- helpers


async def _insert_params(conn: PgConnection, run_id: str, params: Sequence[Param]) -> None:
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


async def _upsert_tags(conn: PgConnection, run_id: str, tags: Sequence[Tag]) -> None:
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


async def _upsert_dataset(conn: PgConnection, experiment_id: int, ds: Dataset) -> str:
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


# Every part of a run (its row, params, tags, latest metrics, dataset inputs, model inputs and
# outputs) in one statement, so a run read or a page of search results costs one round trip
# instead of one per table. The branches share one column layout (unused columns are NULL):
#
#   kind  meaning        t1        t2       t3           t4            t5               t6       t7
#   0     run            run_name  user_id  status       artifact_uri  lifecycle_stage  -        -
#   1     param          key       value
#   2     tag            key       value
#   3     latest metric  key       model_id
#   4     dataset input  name      digest   source_type  source        schema           profile  tags
#   5     model input    model_id
#   6     model output   model_id
#
#   kind  n1             n2          n3        f
#   0     experiment_id  start_time  end_time  -
#   3     timestamp_ms   step                  value
#   6                    step
#
# No ORDER BY: sorting the ~22,000 wide rows of a 1,000-run page cost PostgreSQL more (10-15 ms
# measured) than grouping them per run and sorting each run's few rows in Python (~3 ms).
def _run_rows_sql(match: str) -> str:
    return f"""
SELECT 0 AS kind, run_id, run_name AS t1, user_id AS t2, status AS t3, artifact_uri AS t4,
       lifecycle_stage AS t5, NULL::text AS t6, NULL::text AS t7,
       experiment_id AS n1, start_time AS n2, end_time AS n3, NULL::float8 AS f
  FROM runs WHERE run_id {match}
UNION ALL
SELECT 1, run_id, key, value, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM params WHERE run_id {match}
UNION ALL
SELECT 2, run_id, key, value, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM tags WHERE run_id {match}
UNION ALL
SELECT 3, run_id, key, model_id, NULL, NULL, NULL, NULL, NULL, timestamp_ms, step, NULL, value
  FROM latest_metrics WHERE run_id {match}
UNION ALL
SELECT 4, i.run_id, d.name, d.digest, d.source_type, d.source, d.schema, d.profile, i.tags::text,
       NULL, NULL, NULL, NULL
  FROM run_dataset_inputs i JOIN datasets d USING (dataset_id) WHERE i.run_id {match}
UNION ALL
SELECT 5, run_id, model_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
  FROM run_model_inputs WHERE run_id {match}
UNION ALL
SELECT 6, run_id, model_id, NULL, NULL, NULL, NULL, NULL, NULL, step, NULL, NULL, NULL
  FROM run_model_outputs WHERE run_id {match}
"""


# One run (runs/get) is matched with "=": its plan is the same whatever the id, so PostgreSQL
# settles on one generic plan after a few executions and stops planning (measured 0.19 ms a
# run read against 0.49 ms through ANY).
#
# A list of runs is matched with ANY over a sub-select of the array, not over the array itself.
# A prepared statement's first five executions get custom plans, planned with the array's
# values: estimating each of up to 1,000 ids in each of the seven branches cost milliseconds,
# and with the whole page in view the planner chose sequential scans of params, tags and
# latest metrics (a 100-run page read in 4.5-7 ms, a 1,000-run page in 25-28 ms). The
# sub-select hides the values from the planner, so every execution gets the plan a generic one
# would: bitmap scans of each table's (run_id, ...) primary key, whose cost follows the page, not
# the table (2.3 ms and 13-17 ms, from the first execution on).
_RUN_ROWS_SQL = _run_rows_sql("= ANY((SELECT $1::text[])::text[])")
_ONE_RUN_ROWS_SQL = _run_rows_sql("= $1::text")

# How each kind's rows are ordered within a run (kinds 1 to 6): by key, dataset name (then digest),
# model id, and output step (then model id). Python compares strings by code point, which is
# byte order in UTF-8: the order of SQLite's default collation (MLflow's default store) and of
# PostgreSQL's "C", whatever the database's locale.
_ORDER_WITHIN_RUN = (
    itemgetter(2),
    itemgetter(2),
    itemgetter(2),
    itemgetter(2, 3),
    itemgetter(2),
    itemgetter(9, 2),
)


async def fetch_run_rows(conn: PgConnection, run_ids: Sequence[str]) -> RunRows:
    """The runs of ``run_ids`` (missing ones skipped), with everything they hold, in one statement."""
    ids = list(run_ids)
    rows: list[asyncpg.Record] = []
    if len(ids) == 1:
        rows = await conn.fetch(_ONE_RUN_ROWS_SQL, ids[0])
    elif ids:
        rows = await conn.fetch(_RUN_ROWS_SQL, ids)
    by_kind: list[dict[str, list[asyncpg.Record]]] = [{} for _ in range(len(_ORDER_WITHIN_RUN) + 1)]
    for row in rows:
        group = by_kind[row[0]]
        run_id = row[1]
        same_run = group.get(run_id)
        if same_run is None:
            group[run_id] = [row]
        else:
            same_run.append(row)
    for order, group in zip(_ORDER_WITHIN_RUN, by_kind[1:], strict=True):
        for same_run in group.values():
            if len(same_run) > 1:
                same_run.sort(key=order)
    info = {run_id: same_run[0] for run_id, same_run in by_kind[0].items()}
    return RunRows([rid for rid in dict.fromkeys(ids) if rid in info], info, *by_kind[1:])


def runs_from_rows(rows: RunRows) -> list[Run]:
    """Entities for the callers that want them (create, update, artifact and upload checks)."""
    runs = []
    for rid in rows.ids:
        row = rows.info[rid]
        runs.append(
            Run(
                info=RunInfo(
                    run_id=rid,
                    experiment_id=str(row[9]),
                    run_name=row[2],
                    user_id=row[3],
                    status=row[4],
                    start_time=row[10],
                    end_time=row[11],
                    artifact_uri=row[5],
                    lifecycle_stage=row[6],
                ),
                metrics=tuple(
                    Metric(r[2], r[12], r[9], r[10], model_id=r[3])
                    for r in rows.metrics.get(rid, ())
                ),
                params=tuple(Param(r[2], r[3]) for r in rows.params.get(rid, ())),
                tags=tuple(Tag(r[2], r[3]) for r in rows.tags.get(rid, ())),
                dataset_inputs=tuple(_dataset_input(r) for r in rows.dataset_inputs.get(rid, ())),
                model_inputs=tuple(r[2] for r in rows.model_inputs.get(rid, ())),
                model_outputs=tuple(
                    ModelOutput(r[2], r[9]) for r in rows.model_outputs.get(rid, ())
                ),
            )
        )
    return runs


async def _load_runs(conn: PgConnection, run_ids: Sequence[str]) -> list[Run]:
    """Full runs in the order of ``run_ids``."""
    return runs_from_rows(await fetch_run_rows(conn, run_ids))


def _dataset_input(row: asyncpg.Record) -> DatasetInput:
    return DatasetInput(
        dataset=Dataset(
            name=row[2],
            digest=row[3],
            source_type=row[4],
            source=row[5],
            schema=row[6],
            profile=row[7],
        ),
        tags=tuple(Tag(t["key"], t["value"]) for t in dataset_input_tags(row[8])),
    )
