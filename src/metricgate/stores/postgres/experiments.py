"""Experiments and their tags in PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from metricgate.domain.auth.permissions import ResourceType
from metricgate.domain.auth.visibility import UNRESTRICTED, Mode, Visibility
from metricgate.domain.errors import AlreadyExists, InvalidParameter, NotFound
from metricgate.domain.search.paging import decode_page_token, encode_page_token
from metricgate.domain.tracking.entities import Experiment, Page, Tag
from metricgate.stores.base import AuditContext
from metricgate.stores.postgres import auth
from metricgate.stores.postgres.pool import Database, PgConnection
from metricgate.stores.postgres.search_sql import compile_experiment_search

DEFAULT_EXPERIMENT_ID = 0

_SELECT = """
SELECT e.experiment_id, e.name, e.artifact_location, e.lifecycle_stage, e.creation_time,
       e.last_update_time,
       coalesce((SELECT array_agg(ROW(t.key, t.value)::record ORDER BY t.key)
                 FROM experiment_tags t WHERE t.experiment_id = e.experiment_id), '{}') AS tags
FROM experiments e
"""


def now_ms() -> int:
    return int(time.time() * 1000)


def _row_to_experiment(row: asyncpg.Record) -> Experiment:
    return Experiment(
        experiment_id=str(row["experiment_id"]),
        name=row["name"],
        artifact_location=row["artifact_location"],
        lifecycle_stage=row["lifecycle_stage"],
        creation_time=row["creation_time"],
        last_update_time=row["last_update_time"],
        tags=tuple(Tag(k, v) for k, v in row["tags"]),
    )


def _not_found(experiment_id: int | str) -> NotFound:
    return NotFound(f"No Experiment with id={experiment_id} exists")


async def active_experiment_location(conn: PgConnection, experiment_id: int) -> str:
    """Artifact location of an active experiment, locked against concurrent deletion until commit;
    raises for a missing or deleted one. Runs and logged models are created under it."""
    row = await conn.fetchrow(
        "SELECT lifecycle_stage, artifact_location FROM experiments WHERE experiment_id = $1 FOR SHARE",
        experiment_id,
    )
    if row is None:
        raise NotFound(f"Could not find experiment with ID {experiment_id}")
    if row["lifecycle_stage"] != "active":
        raise InvalidParameter(
            f"The experiment {experiment_id} must be in the 'active' state. Current state is {row['lifecycle_stage']}."
        )
    return str(row["artifact_location"]).rstrip("/")


class PgExperimentStore:
    def __init__(self, db: Database, default_artifact_root: str) -> None:
        self._db = db
        # "mlflow-artifacts:" makes clients upload through this server's proxied artifact API.
        self._artifact_root = default_artifact_root.rstrip("/")

    def _default_location(self, experiment_id: int) -> str:
        if self._artifact_root == "mlflow-artifacts:":
            return f"mlflow-artifacts:/{experiment_id}"
        return f"{self._artifact_root}/{experiment_id}"

    async def create(
        self,
        name: str,
        artifact_location: str | None,
        tags: Sequence[Tag],
        creator: int | None = None,
    ) -> str:
        now = now_ms()
        async with self._db.transaction() as conn:
            experiment_id = await conn.fetchval("SELECT nextval('experiments_id_seq')")
            location = artifact_location or self._default_location(experiment_id)
            try:
                await conn.execute(
                    """INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage,
                                                creation_time, last_update_time)
                       VALUES ($1, $2, $3, 'active', $4, $4)""",
                    experiment_id,
                    name,
                    location,
                    now,
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"Experiment(name={name}) already exists.") from None
            if tags:
                await conn.executemany(
                    "INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3) "
                    "ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value",
                    [(experiment_id, t.key, t.value) for t in tags],
                )
            if creator is not None:
                # No lock first: unlike a model name, an experiment id is new and its grants
                # never move, so nothing can race this write for them.
                await auth.write_creator_grant(
                    conn, creator, ResourceType.EXPERIMENT, str(experiment_id)
                )
        return str(experiment_id)

    async def get(self, experiment_id: int) -> Experiment:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_SELECT + " WHERE e.experiment_id = $1", experiment_id)
        if row is None:
            raise _not_found(experiment_id)
        return _row_to_experiment(row)

    async def get_by_name(self, name: str) -> Experiment:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(_SELECT + " WHERE e.name = $1", name)
        if row is None:
            raise NotFound(f"Could not find experiment with name {name}")
        return _row_to_experiment(row)

    async def get_many(self, experiment_ids: Sequence[int]) -> list[Experiment]:
        """Experiments in the order of ``experiment_ids``; missing ids are skipped."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                _SELECT + " WHERE e.experiment_id = ANY($1::bigint[])", list(experiment_ids)
            )
        by_id = {row["experiment_id"]: _row_to_experiment(row) for row in rows}
        return [by_id[i] for i in experiment_ids if i in by_id]

    async def search(
        self,
        view_type: str,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page:
        """One page of matching experiments the caller may read (``visibility``)."""
        offset = decode_page_token(page_token)
        sql, args = compile_experiment_search(
            view_type, filter_string, order_by, max_results, offset, visibility=visibility
        )
        if visibility.mode is Mode.NONE:  # checked the request, nothing to read
            return Page([], None)
        async with self._db.read_connection() as conn:
            ids = [row["experiment_id"] for row in await conn.fetch(sql, *args)]
        token = encode_page_token(offset + max_results) if len(ids) > max_results else None
        return Page(await self.get_many(ids[:max_results]), token)

    async def _require_active(self, conn: PgConnection, experiment_id: int) -> None:
        stage = await conn.fetchval(
            "SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1 FOR UPDATE",
            experiment_id,
        )
        if stage is None:
            raise _not_found(experiment_id)
        if stage != "active":
            raise InvalidParameter(
                f"The experiment {experiment_id} must be in the 'active' state. Current state is {stage}."
            )

    async def rename(self, experiment_id: int, new_name: str) -> None:
        async with self._db.transaction() as conn:
            stage = await conn.fetchval(
                "SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1 FOR UPDATE",
                experiment_id,
            )
            if stage is None:
                raise _not_found(experiment_id)
            if stage != "active":
                raise InvalidParameter("Cannot rename a non-active experiment.")
            try:
                await conn.execute(
                    "UPDATE experiments SET name = $2, last_update_time = $3 WHERE experiment_id = $1",
                    experiment_id,
                    new_name,
                    now_ms(),
                )
            except asyncpg.UniqueViolationError:
                raise AlreadyExists(f"Experiment(name={new_name}) already exists.") from None

    async def delete(self, experiment_id: int, *, audit: AuditContext | None = None) -> None:
        if experiment_id == DEFAULT_EXPERIMENT_ID:
            raise InvalidParameter(
                "Cannot delete the default experiment '0'. This is an internally reserved experiment."
            )
        now = now_ms()
        async with self._db.transaction() as conn:
            await self._require_active(conn, experiment_id)
            await conn.execute(
                "UPDATE experiments SET lifecycle_stage = 'deleted', last_update_time = $2 WHERE experiment_id = $1",
                experiment_id,
                now,
            )
            # As MLflow does, the experiment's runs go with it.
            await conn.execute(
                """UPDATE runs SET lifecycle_stage = 'deleted', deleted_time = $2
                   WHERE experiment_id = $1 AND lifecycle_stage = 'active'""",
                experiment_id,
                now,
            )
            await auth.audit_deletion(
                conn, audit, "experiment.deleted", "experiment", str(experiment_id)
            )

    async def restore(self, experiment_id: int) -> None:
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT lifecycle_stage FROM experiments WHERE experiment_id = $1 FOR UPDATE",
                experiment_id,
            )
            if row is None:
                raise _not_found(experiment_id)
            if row["lifecycle_stage"] != "deleted":
                raise InvalidParameter(
                    f"Cannot restore an experiment that is not deleted. Current state is {row['lifecycle_stage']}."
                )
            await conn.execute(
                "UPDATE experiments SET lifecycle_stage = 'active', last_update_time = $2 WHERE experiment_id = $1",
                experiment_id,
                now_ms(),
            )
            # MLflow restores every run of the experiment, including runs deleted before it was.
            await conn.execute(
                """UPDATE runs SET lifecycle_stage = 'active', deleted_time = NULL
                   WHERE experiment_id = $1 AND lifecycle_stage = 'deleted'""",
                experiment_id,
            )

    async def set_tag(self, experiment_id: int, tag: Tag) -> None:
        async with self._db.transaction() as conn:
            await self._require_active(conn, experiment_id)
            await conn.execute(
                """INSERT INTO experiment_tags (experiment_id, key, value) VALUES ($1, $2, $3)
                   ON CONFLICT (experiment_id, key) DO UPDATE SET value = excluded.value""",
                experiment_id,
                tag.key,
                tag.value,
            )

    async def delete_tag(self, experiment_id: int, key: str) -> None:
        async with self._db.transaction() as conn:
            await self._require_active(conn, experiment_id)
            deleted = await conn.fetchval(
                "DELETE FROM experiment_tags WHERE experiment_id = $1 AND key = $2 RETURNING key",
                experiment_id,
                key,
            )
        if deleted is None:
            raise NotFound(f"No tag with name: {key} in experiment with id {experiment_id}")
