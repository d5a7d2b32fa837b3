"""Webhook subscriptions, the delivery outbox and its attempt log in PostgreSQL.

Deliveries are created by the ``webhook_fan_out`` trigger (0003_webhooks.sql) in the transaction
that records a registry event; this store only claims them, records attempts and lists them.
"""

from __future__ import annotations

import builtins  # the store's own `list` method shadows the type in its class body
import datetime as dt
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from metricgate.domain.errors import NotFound
from metricgate.domain.webhooks.entities import ClaimedDelivery, Delivery, DeliveryAttempt, Webhook
from metricgate.domain.webhooks.events import PING_EVENT
from metricgate.domain.webhooks.signing import generate_secret
from metricgate.stores.base import AuditContext
from metricgate.stores.postgres import auth
from metricgate.stores.postgres.pool import Database

_WEBHOOK_COLUMNS = "id, url, events, model_name, active, description, created_at, updated_at"

# One due delivery per webhook per call (DISTINCT ON), skipping webhooks this process already
# saturates and rows another dispatcher holds (SKIP LOCKED). The claim moves next_attempt_at
# forward by the lease: if this process dies mid-attempt the row simply becomes due again.
_CLAIM_SQL = """
WITH due AS (
    SELECT DISTINCT ON (d.webhook_id) d.id
    FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
    WHERE d.state = 'pending' AND d.next_attempt_at <= clock_timestamp() AND w.active
      AND d.webhook_id <> ALL ($2::bigint[])
    ORDER BY d.webhook_id, d.next_attempt_at, d.created_at
), picked AS (
    SELECT d.id FROM webhook_deliveries d
    WHERE d.id IN (SELECT id FROM due) AND d.state = 'pending' AND d.next_attempt_at <= clock_timestamp()
    ORDER BY d.next_attempt_at
    LIMIT $1
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_deliveries d
SET attempts = d.attempts + 1, next_attempt_at = clock_timestamp() + make_interval(secs => $3)
FROM picked, webhooks w
WHERE d.id = picked.id AND w.id = d.webhook_id
RETURNING d.id, d.webhook_id, d.event_type, d.payload, d.attempts, w.url, w.secret
"""

_PING_SQL = """
INSERT INTO webhook_deliveries (webhook_id, event_type, payload)
SELECT w.id, $2, jsonb_build_object(
           'id', NULL, 'type', $2::text,
           'occurred_at', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'model_name', w.model_name, 'version', NULL, 'actor', NULL, 'actor_verified', false,
           'before', NULL, 'after', NULL, 'comment', 'metricgate webhook test')
FROM webhooks w WHERE w.id = $1
RETURNING id
"""


def _ms(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _not_found(webhook_id: str) -> NotFound:
    return NotFound(f"Webhook with id '{webhook_id[:100]}' not found.")


def _parse_id(webhook_id: str) -> int:
    if not (webhook_id.isascii() and webhook_id.isdigit()) or len(webhook_id) > 18:
        raise _not_found(webhook_id)
    return int(webhook_id)


def _webhook(row: asyncpg.Record) -> Webhook:
    return Webhook(
        id=str(row["id"]),
        url=row["url"],
        events=tuple(row["events"]),
        model_name=row["model_name"],
        active=row["active"],
        description=row["description"],
        created_at_ms=_ms(row["created_at"]) or 0,
        updated_at_ms=_ms(row["updated_at"]) or 0,
    )


def _payload(raw: Any) -> dict[str, Any]:
    # asyncpg returns jsonb as text unless a codec is set; the pool is shared, so decode here.
    value = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    assert isinstance(value, dict)
    return value


class PgWebhookStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------ subscriptions

    async def create(
        self,
        url: str,
        events: Sequence[str],
        model_name: str | None,
        description: str | None,
        active: bool,
    ) -> tuple[Webhook, str]:
        """A new webhook and its secret (the only time the secret is returned, with rotation)."""
        secret = generate_secret()
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""INSERT INTO webhooks (url, events, model_name, description, active, secret)
                    VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_WEBHOOK_COLUMNS}""",
                url,
                list(events),
                model_name,
                description,
                active,
                secret,
            )
        assert row is not None  # INSERT ... RETURNING: one row
        return _webhook(row), secret

    async def list(self, model_name: str | None = None, limit: int = 1000) -> list[Webhook]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""SELECT {_WEBHOOK_COLUMNS} FROM webhooks
                    WHERE $1::text IS NULL OR model_name = $1 OR model_name IS NULL
                    ORDER BY id LIMIT $2""",
                model_name,
                limit,
            )
        return [_webhook(r) for r in rows]

    async def get(self, webhook_id: str) -> Webhook:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1", _parse_id(webhook_id)
            )
        if row is None:
            raise _not_found(webhook_id)
        return _webhook(row)

    async def update(self, webhook_id: str, changes: dict[str, Any]) -> Webhook:
        """Apply ``changes`` (keys among url, events, active, model_name, description; None clears
        model_name/description). Validation happened at the API edge."""
        allowed = ("url", "events", "active", "model_name", "description")
        columns = [c for c in allowed if c in changes]
        assignments = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
        values = [list(changes[c]) if c == "events" else changes[c] for c in columns]
        sets = (
            f"{assignments}, updated_at = clock_timestamp()"
            if columns
            else "updated_at = updated_at"
        )
        async with self._db.connection() as conn:
            # Column names come from the fixed tuple above, never from the request.
            row = await conn.fetchrow(
                f"UPDATE webhooks SET {sets} WHERE id = $1 RETURNING {_WEBHOOK_COLUMNS}",
                _parse_id(webhook_id),
                *values,
            )
        if row is None:
            raise _not_found(webhook_id)
        return _webhook(row)

    async def delete(self, webhook_id: str, *, audit: AuditContext | None = None) -> None:
        """Delete the webhook with its pending deliveries and log (ON DELETE CASCADE). With
        ``audit`` (access control on), its ``webhook.deleted`` entry is written in the delete's
        transaction: an entry that cannot be written undoes the delete."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                "DELETE FROM webhooks WHERE id = $1 RETURNING id, url, events, model_name",
                _parse_id(webhook_id),
            )
            if row is None:
                raise _not_found(webhook_id)
            # The host only: a receiver may take a token in the URL's path or query.
            details = {
                "url_host": urlsplit(row["url"]).hostname,
                "events": list(row["events"]),
                "model_name": row["model_name"],
            }
            await auth.audit_deletion(
                conn, audit, "webhook.deleted", "webhook", str(row["id"]), details
            )

    async def rotate_secret(self, webhook_id: str) -> tuple[Webhook, str]:
        """A new secret; deliveries attempted from now on (retries included) are signed with it."""
        secret = generate_secret()
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""UPDATE webhooks SET secret = $2, updated_at = clock_timestamp() WHERE id = $1
                    RETURNING {_WEBHOOK_COLUMNS}""",
                _parse_id(webhook_id),
                secret,
            )
        if row is None:
            raise _not_found(webhook_id)
        return _webhook(row), secret

    async def enqueue_ping(self, webhook_id: str) -> str:
        """A ``webhook.ping`` delivery through the same outbox (so it is signed, retried, logged)."""
        async with self._db.connection() as conn:
            delivery_id = await conn.fetchval(_PING_SQL, _parse_id(webhook_id), PING_EVENT)
        if delivery_id is None:
            raise _not_found(webhook_id)
        return str(delivery_id)

    # ------------------------------------------------------------ delivery log

    async def list_deliveries(
        self, webhook_id: str, limit: int, state: str | None = None
    ) -> builtins.list[Delivery]:
        """Newest first, each with its attempts in order."""
        key = _parse_id(webhook_id)
        async with self._db.connection() as conn:
            if await conn.fetchval("SELECT 1 FROM webhooks WHERE id = $1", key) is None:
                raise _not_found(webhook_id)
            rows = await conn.fetch(
                """SELECT * FROM webhook_deliveries WHERE webhook_id = $1 AND ($2::text IS NULL OR state = $2)
                   ORDER BY created_at DESC, id LIMIT $3""",
                key,
                state,
                limit,
            )
            ids = [r["id"] for r in rows]
            attempt_rows = await conn.fetch(
                "SELECT * FROM webhook_delivery_attempts WHERE delivery_id = ANY($1::uuid[]) ORDER BY attempt",
                ids,
            )
        attempts: dict[uuid.UUID, list[DeliveryAttempt]] = defaultdict(list)
        for a in attempt_rows:
            attempts[a["delivery_id"]].append(
                DeliveryAttempt(
                    attempt=a["attempt"],
                    started_at_ms=_ms(a["started_at"]) or 0,
                    finished_at_ms=_ms(a["finished_at"]),
                    outcome=a["outcome"],
                    http_status=a["http_status"],
                    error=a["error"],
                    duration_ms=a["duration_ms"],
                    next_retry_at_ms=_ms(a["next_retry_at"]),
                )
            )
        return [
            Delivery(
                id=str(r["id"]),
                webhook_id=str(r["webhook_id"]),
                event_id=r["event_id"],
                event_type=r["event_type"],
                state=r["state"],
                attempts=r["attempts"],
                created_at_ms=_ms(r["created_at"]) or 0,
                completed_at_ms=_ms(r["completed_at"]),
                next_attempt_at_ms=_ms(r["next_attempt_at"]) if r["state"] == "pending" else None,
                last_error=r["last_error"],
                payload=_payload(r["payload"]),
                attempt_log=tuple(attempts[r["id"]]),
            )
            for r in rows
        ]

    # ------------------------------------------------------------ dispatcher

    async def claim(
        self, limit: int, skip_webhook_ids: Sequence[str], lease_s: float
    ) -> builtins.list[ClaimedDelivery]:
        """Lease up to ``limit`` due deliveries (at most one per webhook) for one attempt each."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch(_CLAIM_SQL, limit, [int(w) for w in skip_webhook_ids], lease_s)
            if not rows:
                return []
            ids = [r["id"] for r in rows]
            # An attempt still "in progress" on a row we could claim was cut short: its process died.
            await conn.execute(
                """UPDATE webhook_delivery_attempts
                   SET outcome = 'interrupted', error = 'the dispatcher stopped during this attempt'
                   WHERE delivery_id = ANY($1::uuid[]) AND outcome = 'in_progress'""",
                ids,
            )
            await conn.execute(
                """INSERT INTO webhook_delivery_attempts (delivery_id, attempt, started_at, outcome)
                   SELECT d, a, clock_timestamp(), 'in_progress'
                   FROM unnest($1::uuid[], $2::int[]) AS t(d, a)""",
                ids,
                [r["attempts"] for r in rows],
            )
        return [
            ClaimedDelivery(
                id=str(r["id"]),
                webhook_id=str(r["webhook_id"]),
                url=r["url"],
                secret=r["secret"],
                event_type=r["event_type"],
                attempt=r["attempts"],
                payload=_payload(r["payload"]),
            )
            for r in rows
        ]

    async def record_attempt(
        self,
        delivery_id: str,
        attempt: int,
        outcome: str,
        http_status: int | None,
        error: str | None,
        duration_ms: int,
        retry_delay_s: float = 0.0,
    ) -> bool:
        """Store an attempt's result; False when the lease was lost (another process took over)."""
        state = {"delivered": "delivered", "failed": "failed", "retry": "pending"}[outcome]
        async with self._db.transaction() as conn:
            # attempts = $2 is the fence: a later claim bumped it, and that attempt's owner decides.
            next_at = await conn.fetchval(
                """UPDATE webhook_deliveries
                   SET state = $3,
                       next_attempt_at = CASE WHEN $3 = 'pending'
                           THEN clock_timestamp() + make_interval(secs => $4) ELSE next_attempt_at END,
                       completed_at = CASE WHEN $3 = 'pending' THEN NULL ELSE clock_timestamp() END,
                       last_error = $5
                   WHERE id = $1 AND attempts = $2 AND state = 'pending'
                   RETURNING next_attempt_at""",
                uuid.UUID(delivery_id),
                attempt,
                state,
                retry_delay_s,
                error,
            )
            await conn.execute(
                """UPDATE webhook_delivery_attempts
                   SET outcome = $3, finished_at = clock_timestamp(), http_status = $4, error = $5,
                       duration_ms = $6, next_retry_at = $7
                   WHERE delivery_id = $1 AND attempt = $2""",
                uuid.UUID(delivery_id),
                attempt,
                outcome,
                http_status,
                error,
                duration_ms,
                next_at if outcome == "retry" else None,
            )
        return next_at is not None

    async def purge_completed(self, older_than_s: float, batch: int = 1000) -> int:
        """Delete up to ``batch`` delivered/failed deliveries (and their attempts) completed more
        than ``older_than_s`` ago; the number deleted. Small batches keep each transaction short."""
        async with self._db.connection() as conn:
            deleted = await conn.fetch(
                """DELETE FROM webhook_deliveries WHERE id IN (
                       SELECT id FROM webhook_deliveries
                       WHERE state <> 'pending' AND completed_at < clock_timestamp() - make_interval(secs => $1)
                       LIMIT $2)
                   RETURNING 1""",
                older_than_s,
                batch,
            )
        return len(deleted)
