"""MLflow 3 logged models (``m-<hex>``), their params, tags and the metrics logged against them."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence

from metricgate.domain.auth.visibility import UNRESTRICTED, Mode, Visibility
from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.names import random_run_name
from metricgate.domain.search.paging import decode_page_token, encode_page_token
from metricgate.domain.tracking.entities import LoggedModel, Metric, Page, Param, Tag
from metricgate.stores.base import AuditContext
from metricgate.stores.postgres import auth
from metricgate.stores.postgres.experiments import active_experiment_location, now_ms
from metricgate.stores.postgres.pool import Database, PgConnection
from metricgate.stores.postgres.search_sql import (
    compile_logged_model_search,
    visible_experiment_ids,
)

# The tag through which the runs table's "Models" column links a logged model to its versions.
MODEL_VERSIONS_TAG = "mlflow.modelVersions"

STATUSES = (
    "LOGGED_MODEL_STATUS_UNSPECIFIED",
    "LOGGED_MODEL_PENDING",
    "LOGGED_MODEL_READY",
    "LOGGED_MODEL_UPLOAD_FAILED",
)


def _not_found(model_id: str) -> NotFound:
    return NotFound(f"Logged model with ID '{model_id}' not found.")


class PgLoggedModelStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        experiment_id: int,
        name: str | None,
        model_type: str | None,
        source_run_id: str | None,
        params: Sequence[Param],
        tags: Sequence[Tag],
    ) -> LoggedModel:
        model_id = f"m-{uuid.uuid4().hex}"
        now = now_ms()
        async with self._db.transaction() as conn:
            experiment_location = await active_experiment_location(conn, experiment_id)
            if source_run_id is not None:
                exists = await conn.fetchval("SELECT 1 FROM runs WHERE run_id = $1", source_run_id)
                if exists is None:
                    raise NotFound(f"Run with id={source_run_id} not found")
            location = f"{experiment_location}/models/{model_id}/artifacts"
            await conn.execute(
                """INSERT INTO logged_models (model_id, experiment_id, name, artifact_location,
                       creation_timestamp_ms, last_updated_timestamp_ms, status, model_type, source_run_id)
                   VALUES ($1, $2, $3, $4, $5, $5, 'LOGGED_MODEL_PENDING', $6, $7)""",
                model_id,
                experiment_id,
                name or random_run_name(),
                location,
                now,
                model_type,
                source_run_id,
            )
            await _upsert(conn, "logged_model_params", model_id, params)
            await _upsert(conn, "logged_model_tags", model_id, tags)
            return (await _load(conn, [model_id]))[0]

    async def get(self, model_id: str, allow_deleted: bool = False) -> LoggedModel:
        async with self._db.connection() as conn:
            models = await _load(conn, [model_id], allow_deleted=allow_deleted)
        if not models:
            raise _not_found(model_id)
        return models[0]

    async def experiment_of(self, model_id: str) -> str:
        """The model's experiment id (one primary-key lookup); NotFound if there is no such
        model. A deleted model still has one: the access check needs only this, not the
        model's params, tags and metrics."""
        async with self._db.connection() as conn:
            found = await conn.fetchval(
                "SELECT experiment_id FROM logged_models WHERE model_id = $1", model_id
            )
        if found is None:
            raise _not_found(model_id)
        return str(found)

    async def finalize(self, model_id: str, status: str) -> LoggedModel:
        if status not in STATUSES:
            raise InvalidParameter(f"Invalid logged model status '{status}'.")
        async with self._db.transaction() as conn:
            found = await conn.fetchval(
                """UPDATE logged_models SET status = $2, last_updated_timestamp_ms = $3
                   WHERE model_id = $1 AND lifecycle_stage = 'active' RETURNING 1""",
                model_id,
                status,
                now_ms(),
            )
            if found is None:
                raise _not_found(model_id)
            return (await _load(conn, [model_id]))[0]

    async def set_tags(self, model_id: str, tags: Sequence[Tag]) -> None:
        async with self._db.transaction() as conn:
            await self._require(conn, model_id)
            await _upsert(conn, "logged_model_tags", model_id, tags)

    async def log_params(self, model_id: str, params: Sequence[Param]) -> None:
        async with self._db.transaction() as conn:
            await self._require(conn, model_id)
            await _upsert(conn, "logged_model_params", model_id, params)

    async def delete_tag(self, model_id: str, key: str) -> None:
        async with self._db.transaction() as conn:
            await self._require(conn, model_id)
            deleted = await conn.fetchval(
                "DELETE FROM logged_model_tags WHERE model_id = $1 AND key = $2 RETURNING 1",
                model_id,
                key,
            )
        if deleted is None:
            raise NotFound(f"No tag with key '{key}' found for logged model '{model_id}'.")

    async def delete(self, model_id: str, *, audit: AuditContext | None = None) -> None:
        async with self._db.transaction() as conn:
            found = await conn.fetchval(
                """UPDATE logged_models SET lifecycle_stage = 'deleted', last_updated_timestamp_ms = $2
                   WHERE model_id = $1 AND lifecycle_stage = 'active' RETURNING 1""",
                model_id,
                now_ms(),
            )
            if found is None:
                raise _not_found(model_id)
            await auth.audit_deletion(conn, audit, "logged_model.deleted", "logged_model", model_id)

    async def search(
        self,
        experiment_ids: list[int],
        filter_string: str | None,
        order_by: list[dict[str, object]],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page:
        """One page of matching models of the requested experiments ``visibility`` shows."""
        offset = decode_page_token(page_token)
        sql, args = compile_logged_model_search(
            experiment_ids, filter_string, order_by, max_results, offset, visibility=visibility
        )
        if visibility.mode is not Mode.ALL and not visible_experiment_ids(
            experiment_ids, visibility
        ):
            return Page([], None)
        async with self._db.read_connection() as conn:
            ids = [row["model_id"] for row in await conn.fetch(sql, *args)]
            models = await _load(conn, ids[:max_results])
        token = encode_page_token(offset + max_results) if len(ids) > max_results else None
        return Page(models, token)

    @staticmethod
    async def _require(conn: PgConnection, model_id: str) -> None:
        found = await conn.fetchval(
            "SELECT 1 FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'active' FOR UPDATE",
            model_id,
        )
        if found is None:
            raise _not_found(model_id)


async def record_model_version(conn: PgConnection, model_id: str, name: str, version: int) -> None:
    """Append ``{"name", "version"}`` to the model's ``mlflow.modelVersions`` tag, inside the
    caller's (version-creating) transaction.

    Stock's server does this on model-versions/create (AbstractStore.set_model_versions_tags):
    a JSON list in Python's ``json.dumps`` spelling with the version as a *number*; the client's
    register_model then appends its own entry with the version as a string, so both spellings
    end up in the list, as with stock. Two departures, both deliberate: the row lock serialises
    concurrent registrations of one model (stock's read-modify-write can lose an entry), and an
    entry already present leaves the list as it is (stock replaces the whole list with it).
    A missing or deleted model is a 404, as stock's; here it also rolls the version back
    instead of leaving it behind.
    """
    found = await conn.fetchval(
        "SELECT 1 FROM logged_models WHERE model_id = $1 AND lifecycle_stage = 'active' FOR UPDATE",
        model_id,
    )
    if found is None:
        raise _not_found(model_id)
    entry = {"name": name, "version": version}
    current = await conn.fetchval(
        "SELECT value FROM logged_model_tags WHERE model_id = $1 AND key = $2",
        model_id,
        MODEL_VERSIONS_TAG,
    )
    entries: list[object] = []
    if current:
        try:
            parsed = json.loads(current)
        except ValueError:
            parsed = None  # a hand-set value that is not JSON: start the list afresh (stock: 500)
        entries = parsed if isinstance(parsed, list) else []
    if entry in entries:
        return
    await _upsert(
        conn,
        "logged_model_tags",
        model_id,
        [Tag(MODEL_VERSIONS_TAG, json.dumps([*entries, entry]))],
    )


async def _upsert(
    conn: PgConnection, table: str, model_id: str, items: Sequence[Tag | Param]
) -> None:
    if not items:
        return
    latest = {i.key: i.value for i in items}
    # ``table`` is one of two constants above, never user input.
    await conn.execute(
        f"""INSERT INTO {table} (model_id, key, value)
            SELECT $1, k, v FROM unnest($2::text[], $3::text[]) AS t(k, v)
            ON CONFLICT (model_id, key) DO UPDATE SET value = excluded.value""",
        model_id,
        list(latest.keys()),
        list(latest.values()),
    )


async def _load(
    conn: PgConnection, model_ids: Sequence[str], allow_deleted: bool = False
) -> list[LoggedModel]:
    if not model_ids:
        return []
    ids = list(model_ids)
    rows = await conn.fetch(
        "SELECT * FROM logged_models WHERE model_id = ANY($1::text[]) AND ($2 OR lifecycle_stage = 'active')",
        ids,
        allow_deleted,
    )
    params: dict[str, list[Param]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT model_id, key, value FROM logged_model_params WHERE model_id = ANY($1::text[]) ORDER BY key",
        ids,
    ):
        params[r["model_id"]].append(Param(r["key"], r["value"]))
    tags: dict[str, list[Tag]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT model_id, key, value FROM logged_model_tags WHERE model_id = ANY($1::text[]) ORDER BY key",
        ids,
    ):
        tags[r["model_id"]].append(Tag(r["key"], r["value"]))
    metrics: dict[str, list[Metric]] = defaultdict(list)
    # The latest point per (key, dataset) logged with this model id, as MLflow reports them.
    for r in await conn.fetch(
        """SELECT DISTINCT ON (model_id, key, dataset_name, dataset_digest)
                  model_id, run_id, key, value, timestamp_ms, step, dataset_name, dataset_digest
           FROM logged_model_metrics WHERE model_id = ANY($1::text[])
           ORDER BY model_id, key, dataset_name, dataset_digest, step DESC, timestamp_ms DESC""",
        ids,
    ):
        metrics[r["model_id"]].append(
            Metric(
                r["key"],
                r["value"],
                r["timestamp_ms"],
                r["step"],
                model_id=r["model_id"],
                dataset_name=r["dataset_name"],
                dataset_digest=r["dataset_digest"],
                run_id=r["run_id"],
            )
        )
    by_id = {
        r["model_id"]: LoggedModel(
            model_id=r["model_id"],
            experiment_id=str(r["experiment_id"]),
            name=r["name"],
            artifact_uri=r["artifact_location"],
            creation_timestamp_ms=r["creation_timestamp_ms"],
            last_updated_timestamp_ms=r["last_updated_timestamp_ms"],
            status=r["status"],
            model_type=r["model_type"],
            source_run_id=r["source_run_id"],
            status_message=r["status_message"],
            tags=tuple(tags[r["model_id"]]),
            params=tuple(params[r["model_id"]]),
            metrics=tuple(metrics[r["model_id"]]),
        )
        for r in rows
    }
    return [by_id[i] for i in ids if i in by_id]
