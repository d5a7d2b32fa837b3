"""Registry audit events: written in the transaction of the change they describe, read newest first.

The history of a name shows every event recorded under that name, so a deleted model stays
auditable after its name is reused (its ``registered_model.deleted`` event separates the two).
It also follows the current model back through its renames: the history of ``b`` (renamed from
``a``) shows what happened while it was called ``a``, and the history of ``a`` ends with the
rename away.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import orjson

from metricgate.domain.errors import NotFound
from metricgate.domain.registry.entities import Audit, RegistryEvent
from metricgate.domain.search.paging import decode_keyset_token, encode_keyset_token
from metricgate.stores.postgres.pool import PgConnection

CREATED = "registered_model.created"
RENAMED = "registered_model.renamed"
# A name can be renamed back and forth; following more renames than this is not useful.
_MAX_RENAMES_FOLLOWED = 100


async def record(
    conn: PgConnection,
    event_type: str,
    model_name: str,
    version: int | None,
    audit: Audit,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> None:
    """Insert one event; the caller's transaction makes it atomic with the change."""
    await conn.execute(
        """INSERT INTO registry_events (event_type, model_name, version, actor, actor_verified, before, after, comment)
           VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7::jsonb, $8)""",
        event_type,
        model_name,
        version,
        audit.actor,
        audit.actor_verified,
        _json(before),
        _json(after),
        audit.comment,
    )


def _json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


async def _segments(conn: PgConnection, name: str) -> list[tuple[str, int, int | None]]:
    """(name, first id, end id) of each name the model carried, newest first. The first
    segment starts at 0: every event ever recorded under the name itself."""
    segments: list[tuple[str, int, int | None]] = [(name, 0, None)]
    current, end = name, None
    for _ in range(_MAX_RENAMES_FOLLOWED):
        start = await conn.fetchrow(
            """SELECT id, event_type, before FROM registry_events
               WHERE model_name = $1 AND event_type = ANY($2::text[]) AND ($3::bigint IS NULL OR id < $3)
               ORDER BY id DESC LIMIT 1""",
            current,
            [CREATED, RENAMED],
            end,
        )
        if start is None:
            break
        if end is not None:
            segments.append((current, start["id"], end))
        if start["event_type"] == CREATED:
            break
        current, end = json.loads(start["before"])["name"], start["id"]
    return segments


async def history(
    conn: PgConnection,
    name: str,
    version: int | None,
    max_results: int,
    page_token: str | None,
) -> tuple[list[RegistryEvent], str | None]:
    before_id = decode_keyset_token(page_token)
    segments = await _segments(conn, name)
    rows = await conn.fetch(
        """SELECT e.* FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS s(name, lo, hi)
           CROSS JOIN LATERAL (
               SELECT * FROM registry_events AS x
               WHERE x.model_name = s.name AND x.id >= s.lo AND (s.hi IS NULL OR x.id < s.hi)
                 AND ($4::int IS NULL OR x.version = $4) AND ($5::bigint IS NULL OR x.id < $5)
               ORDER BY x.id DESC LIMIT $6) AS e
           UNION  -- a model renamed x -> y -> x meets its own events twice; keep each once
           SELECT * FROM registry_events
           WHERE event_type = $7 AND before ->> 'name' = $8 AND $4::int IS NULL
             AND ($5::bigint IS NULL OR id < $5)
           ORDER BY id DESC LIMIT $6""",
        [s[0] for s in segments],
        [s[1] for s in segments],
        [s[2] for s in segments],
        version,
        before_id,
        max_results + 1,
        RENAMED,
        name,
    )
    if not rows and before_id is None and version is None:
        raise NotFound(f"No registry history for a model named '{name}'.")
    events = [_event(r) for r in rows[:max_results]]
    token = encode_keyset_token(events[-1].id) if len(rows) > max_results else None
    return events, token


def _event(r: asyncpg.Record) -> RegistryEvent:
    return RegistryEvent(
        id=r["id"],
        occurred_at=r["occurred_at"],
        event_type=r["event_type"],
        model_name=r["model_name"],
        version=r["version"],
        actor=r["actor"],
        actor_verified=r["actor_verified"],
        before=None if r["before"] is None else json.loads(r["before"]),
        after=None if r["after"] is None else json.loads(r["after"]),
        comment=r["comment"],
    )
