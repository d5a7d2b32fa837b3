"""Registry rows -> entities, and the row locks every registry write starts with."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import asyncpg

from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.registry.entities import ModelVersion, RegisteredModel
from metricgate.domain.registry.rules import STAGES
from metricgate.domain.tracking.entities import Tag
from metricgate.stores.postgres.pool import PgConnection

_STAGE_ORDER = {stage: i for i, stage in enumerate(STAGES)}  # MLflow's order: None, Staging, ...


def model_not_found(name: str) -> NotFound:
    return NotFound(f"Registered Model with name={name} not found")


def version_not_found(name: str, version: int) -> NotFound:
    return NotFound(f"Model Version (name={name}, version={version}) not found")


def alias_not_found(name: str, alias: str) -> InvalidParameter:
    # MLflow answers an unknown alias with INVALID_PARAMETER_VALUE (400), not 404.
    return InvalidParameter(f"Registered model alias {alias} not found.")


async def lock_model(conn: PgConnection, name: str) -> asyncpg.Record:
    """The model row, locked until COMMIT. Every write locks the model row first, so writes to
    one model serialize in one order (no deadlocks) and version numbering cannot race."""
    row = await conn.fetchrow("SELECT * FROM registered_models WHERE name = $1 FOR UPDATE", name)
    if row is None:
        raise model_not_found(name)
    return row


async def lock_version(
    conn: PgConnection, name: str, version: int
) -> tuple[asyncpg.Record, asyncpg.Record]:
    model = await lock_model(conn, name)
    row = await conn.fetchrow(
        "SELECT * FROM model_versions WHERE model_key = $1 AND version = $2 FOR UPDATE",
        model["model_key"],
        version,
    )
    if row is None:
        raise version_not_found(name, version)
    return model, row


async def model_key_of(conn: PgConnection, name: str) -> int:
    key = await conn.fetchval("SELECT model_key FROM registered_models WHERE name = $1", name)
    if key is None:
        raise model_not_found(name)
    return int(key)


async def load_versions(conn: PgConnection, keys: Sequence[tuple[int, int]]) -> list[ModelVersion]:
    """Versions for (model_key, version) pairs, with tags and aliases, in the order given."""
    if not keys:
        return []
    model_keys = [k for k, _ in keys]
    numbers = [v for _, v in keys]
    pairs = "unnest($1::bigint[], $2::int[]) AS p(model_key, version)"
    rows = await conn.fetch(
        f"""SELECT mv.*, rm.name FROM {pairs}
            JOIN model_versions AS mv USING (model_key, version)
            JOIN registered_models AS rm USING (model_key)""",
        model_keys, numbers,
    )  # fmt: skip
    tags: dict[tuple[int, int], list[Tag]] = defaultdict(list)
    for r in await conn.fetch(
        f"""SELECT t.model_key, t.version, t.key, t.value FROM {pairs}
            JOIN model_version_tags AS t USING (model_key, version) ORDER BY t.key""",
        model_keys, numbers,
    ):  # fmt: skip
        tags[(r["model_key"], r["version"])].append(Tag(r["key"], r["value"]))
    aliases: dict[tuple[int, int], list[str]] = defaultdict(list)
    for r in await conn.fetch(
        f"""SELECT a.model_key, a.version, a.alias FROM {pairs}
            JOIN registered_model_aliases AS a USING (model_key, version) ORDER BY a.alias""",
        model_keys, numbers,
    ):  # fmt: skip
        aliases[(r["model_key"], r["version"])].append(r["alias"])
    by_key = {(r["model_key"], r["version"]): _version(r, tags, aliases) for r in rows}
    return [by_key[k] for k in keys if k in by_key]


def _version(
    r: asyncpg.Record,
    tags: dict[tuple[int, int], list[Tag]],
    aliases: dict[tuple[int, int], list[str]],
) -> ModelVersion:
    key = (r["model_key"], r["version"])
    return ModelVersion(
        name=r["name"],
        version=r["version"],
        creation_timestamp=r["creation_timestamp"],
        last_updated_timestamp=r["last_updated_timestamp"],
        user_id=r["user_id"],
        current_stage=r["current_stage"],
        description=r["description"],
        source=r["source"],
        storage_location=r["storage_location"],
        run_id=r["run_id"],
        run_link=r["run_link"],
        model_id=r["model_id"],
        status=r["status"],
        status_message=r["status_message"],
        tags=tuple(tags[key]),
        aliases=tuple(aliases[key]),
    )


async def load_version(conn: PgConnection, model_key: int, version: int) -> ModelVersion:
    return (await load_versions(conn, [(model_key, version)]))[0]


async def latest_version_keys(
    conn: PgConnection, model_keys: Sequence[int], stages: Sequence[str] | None = None
) -> list[tuple[int, int]]:
    """(model_key, version) of the highest version per (model, stage), stages in MLflow's order."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (model_key, current_stage) model_key, version, current_stage
           FROM model_versions
           WHERE model_key = ANY($1::bigint[]) AND ($2::text[] IS NULL OR current_stage = ANY($2::text[]))
           ORDER BY model_key, current_stage, version DESC""",
        list(model_keys),
        list(stages) if stages else None,
    )
    rows = sorted(rows, key=lambda r: (r["model_key"], _STAGE_ORDER.get(r["current_stage"], 9)))
    return [(r["model_key"], r["version"]) for r in rows]


async def load_models(conn: PgConnection, model_keys: Sequence[int]) -> list[RegisteredModel]:
    """Registered models with tags, aliases and latest_versions, in the order given."""
    if not model_keys:
        return []
    keys = list(model_keys)
    rows = await conn.fetch(
        "SELECT * FROM registered_models WHERE model_key = ANY($1::bigint[])", keys
    )
    tags: dict[int, list[Tag]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT model_key, key, value FROM registered_model_tags WHERE model_key = ANY($1::bigint[]) ORDER BY key",
        keys,
    ):
        tags[r["model_key"]].append(Tag(r["key"], r["value"]))
    aliases: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for r in await conn.fetch(
        "SELECT model_key, alias, version FROM registered_model_aliases"
        " WHERE model_key = ANY($1::bigint[]) ORDER BY alias",
        keys,
    ):
        aliases[r["model_key"]].append((r["alias"], r["version"]))
    latest: dict[str, list[ModelVersion]] = defaultdict(list)
    for mv in await load_versions(conn, await latest_version_keys(conn, keys)):
        latest[mv.name].append(mv)
    by_key = {
        r["model_key"]: RegisteredModel(
            name=r["name"],
            creation_timestamp=r["creation_timestamp"],
            last_updated_timestamp=r["last_updated_timestamp"],
            user_id=r["user_id"],
            description=r["description"],
            tags=tuple(tags[r["model_key"]]),
            aliases=tuple(aliases[r["model_key"]]),
            latest_versions=tuple(latest[r["name"]]),
        )
        for r in rows
    }
    return [by_key[k] for k in keys if k in by_key]
