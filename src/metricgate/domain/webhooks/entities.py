"""Webhook entities and the exact bytes a delivery sends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Webhook:
    id: str
    url: str
    events: tuple[str, ...]
    model_name: str | None
    active: bool
    description: str | None
    created_at_ms: int
    updated_at_ms: int


@dataclass(frozen=True, slots=True)
class DeliveryAttempt:
    attempt: int
    started_at_ms: int
    finished_at_ms: int | None
    # in_progress | delivered | retry | failed | interrupted
    outcome: str
    http_status: int | None
    error: str | None
    duration_ms: int | None
    next_retry_at_ms: int | None


@dataclass(frozen=True, slots=True)
class Delivery:
    id: str
    webhook_id: str
    event_id: int | None
    event_type: str
    # pending | delivered | failed
    state: str
    attempts: int
    created_at_ms: int
    completed_at_ms: int | None
    # While pending: when the next attempt may start (or the lease of one in flight ends).
    next_attempt_at_ms: int | None
    last_error: str | None
    payload: dict[str, Any]
    attempt_log: tuple[DeliveryAttempt, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class ClaimedDelivery:
    """A delivery a dispatcher holds the lease of, for attempt number ``attempt``."""

    id: str
    webhook_id: str
    url: str
    secret: str
    event_type: str
    attempt: int
    payload: dict[str, Any]


def delivery_body(delivery_id: str, webhook_id: str, payload: dict[str, Any]) -> bytes:
    """The JSON body: the event snapshot plus the delivery's identity. Sorted keys make the bytes
    the same on every attempt, whichever process sends it."""
    document = {**payload, "delivery_id": delivery_id, "webhook_id": webhook_id}
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
