"""Model-version writes, each inside the caller's transaction, each recording its audit events."""

from __future__ import annotations

from collections.abc import Sequence

from metricgate.domain.errors import NotFound
from metricgate.domain.registry import rules
from metricgate.domain.registry.entities import PROMPT_TAG, Audit, ModelVersion
from metricgate.domain.tracking.entities import Tag
from metricgate.stores.postgres.experiments import now_ms
from metricgate.stores.postgres.logged_models import record_model_version
from metricgate.stores.postgres.pool import PgConnection
from metricgate.stores.postgres.registry import events
from metricgate.stores.postgres.registry.load import (
    load_version,
    lock_model,
    lock_version,
    model_not_found,
    version_not_found,
)
from metricgate.stores.postgres.runs import run_not_found


async def resolve_source(
    conn: PgConnection, source: str, model_id: str | None
) -> tuple[str, str | None, str | None]:
    """(storage location, logged model id, source run id) of a version source. ``runs:/`` and
    ``models:/`` are resolved now, so that get-download-uri returns a location the client can
    read; the run of a logged model fills in ``run_id`` (register_model does not send it)."""
    run_source = rules.split_runs_source(source)
    if run_source is not None:
        run_id, path = run_source
        artifact_uri = await conn.fetchval(
            "SELECT artifact_uri FROM runs WHERE run_id = $1", run_id
        )
        if artifact_uri is None:
            raise run_not_found(run_id)
        return (f"{artifact_uri.rstrip('/')}/{path}" if path else artifact_uri), model_id, run_id
    models_source = rules.split_models_source(source)
    if models_source is None:
        return source, model_id, None  # a storage URI: the client reads it directly
    ident, version = models_source
    if version is None:
        logged = await conn.fetchrow(
            """SELECT artifact_location, source_run_id FROM logged_models
               WHERE model_id = $1 AND lifecycle_stage = 'active'""",
            ident,
        )
        if logged is None:
            raise NotFound(f"Logged model with ID '{ident}' not found.")
        return logged["artifact_location"], model_id or ident, logged["source_run_id"]
    row = await conn.fetchrow(
        """SELECT mv.storage_location, mv.model_id, mv.run_id FROM model_versions AS mv
           JOIN registered_models AS rm USING (model_key) WHERE rm.name = $1 AND mv.version = $2""",
        ident,
        version,
    )
    if row is None:
        raise version_not_found(ident, version)
    return row["storage_location"], model_id or row["model_id"], row["run_id"]


async def create(
    conn: PgConnection,
    audit: Audit,
    name: str,
    source: str,
    run_id: str | None,
    tags: Sequence[Tag],
    run_link: str | None,
    description: str | None,
    model_id: str | None,
) -> ModelVersion:
    now = now_ms()
    # The increment row-locks the model: concurrent registrations of one model queue here and
    # each gets the next number; a failure later in this transaction rolls the number back.
    counter = await conn.fetchrow(
        """UPDATE registered_models SET last_version = last_version + 1, last_updated_timestamp = $2
           WHERE name = $1 RETURNING model_key, last_version""",
        name,
        now,
    )
    if counter is None:
        raise model_not_found(name)
    model_key, version = counter["model_key"], counter["last_version"]
    if run_id and await conn.fetchval("SELECT 1 FROM runs WHERE run_id = $1", run_id) is None:
        raise run_not_found(run_id)
    location, model_id, source_run_id = await resolve_source(conn, source, model_id)
    run_id = run_id or source_run_id
    await conn.execute(
        """INSERT INTO model_versions (model_key, version, creation_timestamp, last_updated_timestamp, user_id,
               description, source, storage_location, run_id, run_link, model_id)
           VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $9, $10)""",
        model_key, version, now, audit.actor, description, source, location, run_id or None, run_link or None, model_id,
    )  # fmt: skip
    tag_map = {t.key: t.value for t in tags}
    await conn.executemany(
        "INSERT INTO model_version_tags (model_key, version, key, value) VALUES ($1, $2, $3, $4)",
        [(model_key, version, k, v) for k, v in tag_map.items()],
    )
    if model_id and tag_map.get(PROMPT_TAG, "false").lower() != "true":
        # The logged model lists its versions (the runs table's Models column), as stock's
        # server records it; prompts are versions too but link no model.
        await record_model_version(conn, model_id, name, version)
    after = {
        "source": source, "storage_location": location, "run_id": run_id or None, "model_id": model_id,
        "current_stage": "None", "description": description, "tags": tag_map, "status": "READY",
    }  # fmt: skip
    await events.record(conn, "model_version.created", name, version, audit, None, after)
    return await load_version(conn, model_key, version)


async def update_description(
    conn: PgConnection, audit: Audit, name: str, version: int, description: str | None
) -> ModelVersion:
    model, row = await lock_version(conn, name, version)
    await conn.execute(
        "UPDATE model_versions SET description = $3, last_updated_timestamp = $4 WHERE model_key = $1 AND version = $2",
        model["model_key"], version, description, now_ms(),
    )  # fmt: skip
    await events.record(
        conn, "model_version.updated", name, version, audit,
        {"description": row["description"]}, {"description": description},
    )  # fmt: skip
    return await load_version(conn, model["model_key"], version)


async def transition(
    conn: PgConnection,
    audit: Audit,
    name: str,
    version: int,
    stage: str,
    archive_existing: bool,
) -> ModelVersion:
    model, row = await lock_version(conn, name, version)
    key, now = model["model_key"], now_ms()
    await conn.execute(
        "UPDATE model_versions SET current_stage = $3, last_updated_timestamp = $4"
        " WHERE model_key = $1 AND version = $2",
        key, version, stage, now,
    )  # fmt: skip
    await events.record(
        conn, "model_version.stage_changed", name, version, audit,
        {"current_stage": row["current_stage"]}, {"current_stage": stage},
    )  # fmt: skip
    if archive_existing:
        moved = await conn.fetch(
            """UPDATE model_versions SET current_stage = 'Archived', last_updated_timestamp = $4
               WHERE model_key = $1 AND current_stage = $3 AND version <> $2 RETURNING version""",
            key, version, stage, now,
        )  # fmt: skip
        for other in sorted(r["version"] for r in moved):
            await events.record(
                conn, "model_version.stage_changed", name, other, audit,
                {"current_stage": stage}, {"current_stage": "Archived", "archived_by_version": version},
            )  # fmt: skip
    await conn.execute(
        "UPDATE registered_models SET last_updated_timestamp = $2 WHERE model_key = $1", key, now
    )
    return await load_version(conn, key, version)


async def delete(conn: PgConnection, audit: Audit, name: str, version: int) -> None:
    model, row = await lock_version(conn, name, version)
    key = model["model_key"]
    dropped = await conn.fetch(
        "DELETE FROM registered_model_aliases WHERE model_key = $1 AND version = $2 RETURNING alias",
        key,
        version,
    )
    for alias in sorted(r["alias"] for r in dropped):
        await events.record(
            conn, "alias.deleted", name, version, audit, {"alias": alias, "version": version}, None
        )
    await conn.execute(
        "DELETE FROM model_versions WHERE model_key = $1 AND version = $2", key, version
    )
    await conn.execute(
        "UPDATE registered_models SET last_updated_timestamp = $2 WHERE model_key = $1",
        key,
        now_ms(),
    )
    before = {
        "source": row["source"], "run_id": row["run_id"], "model_id": row["model_id"],
        "current_stage": row["current_stage"], "description": row["description"],
        "aliases": sorted(r["alias"] for r in dropped),
    }  # fmt: skip
    await events.record(conn, "model_version.deleted", name, version, audit, before, None)


async def set_tag(conn: PgConnection, audit: Audit, name: str, version: int, tag: Tag) -> None:
    model, _ = await lock_version(conn, name, version)
    old = await conn.fetchval(
        """SELECT value FROM model_version_tags WHERE model_key = $1 AND version = $2 AND key = $3""",
        model["model_key"], version, tag.key,
    )  # fmt: skip
    await conn.execute(
        """INSERT INTO model_version_tags (model_key, version, key, value) VALUES ($1, $2, $3, $4)
           ON CONFLICT (model_key, version, key) DO UPDATE SET value = excluded.value""",
        model["model_key"], version, tag.key, tag.value,
    )  # fmt: skip
    before = None if old is None else {"key": tag.key, "value": old}
    await events.record(
        conn,
        "model_version.tag_set",
        name,
        version,
        audit,
        before,
        {"key": tag.key, "value": tag.value},
    )


async def delete_tag(conn: PgConnection, audit: Audit, name: str, version: int, key: str) -> None:
    model, _ = await lock_version(conn, name, version)
    old = await conn.fetchval(
        "DELETE FROM model_version_tags WHERE model_key = $1 AND version = $2 AND key = $3 RETURNING value",
        model["model_key"], version, key,
    )  # fmt: skip
    if old is None:
        raise NotFound(
            f"Model version tag with key '{key}' not found for model '{name}' version {version}."
        )
    await events.record(
        conn, "model_version.tag_deleted", name, version, audit, {"key": key, "value": old}, None
    )


async def set_alias(conn: PgConnection, audit: Audit, name: str, alias: str, version: int) -> None:
    model, _ = await lock_version(conn, name, version)
    old = await conn.fetchval(
        "SELECT version FROM registered_model_aliases WHERE model_key = $1 AND alias = $2",
        model["model_key"],
        alias,
    )
    await conn.execute(
        """INSERT INTO registered_model_aliases (model_key, alias, version) VALUES ($1, $2, $3)
           ON CONFLICT (model_key, alias) DO UPDATE SET version = excluded.version""",
        model["model_key"], alias, version,
    )  # fmt: skip
    before = None if old is None else {"alias": alias, "version": old}
    await events.record(
        conn, "alias.set", name, version, audit, before, {"alias": alias, "version": version}
    )


async def delete_alias(conn: PgConnection, audit: Audit, name: str, alias: str) -> None:
    model = await lock_model(conn, name)
    old = await conn.fetchval(
        "DELETE FROM registered_model_aliases WHERE model_key = $1 AND alias = $2 RETURNING version",
        model["model_key"], alias,
    )  # fmt: skip
    if old is None:
        # MLflow deletes a missing alias silently; nothing changed, so nothing is recorded.
        return
    await events.record(
        conn, "alias.deleted", name, old, audit, {"alias": alias, "version": old}, None
    )
