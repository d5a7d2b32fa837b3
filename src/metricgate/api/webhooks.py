"""metricgate's own webhook endpoints (``/api/2.0/metricgate/webhooks``); MLflow has no such API.

Errors use MLflow's format like every other endpoint. The secret is returned by create and
rotate-secret only; reads never show it.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metricgate.api.audit import deletion_audit
from metricgate.api.codec import Fields, empty_response, json_response, read_fields, read_json
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.domain.auth.access import Admin
from metricgate.domain.errors import InvalidParameter, NotImplementedYet
from metricgate.domain.webhooks.entities import Delivery, Webhook
from metricgate.domain.webhooks.events import validate_events, validate_url
from metricgate.stores.base import WebhookStore

PREFIX = "/api/2.0/metricgate"
MAX_DESCRIPTION_CHARS = 1000
MAX_MODEL_NAME_CHARS = 500
MAX_DELIVERIES = 1000
DELIVERY_STATES = ("pending", "delivered", "failed")


def _store(request: web.Request) -> WebhookStore:
    store = request.app[SERVICE].webhooks
    if store is None:
        raise NotImplementedYet("Webhooks are not available on this server.")
    return store


def encode_webhook(hook: Webhook) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "active": hook.active,
        "created_at": hook.created_at_ms,
        "updated_at": hook.updated_at_ms,
    }
    if hook.model_name is not None:
        out["model_name"] = hook.model_name
    if hook.description is not None:
        out["description"] = hook.description
    return out


def encode_delivery(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "webhook_id": delivery.webhook_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "created_at": delivery.created_at_ms,
        "completed_at": delivery.completed_at_ms,
        "next_attempt_at": delivery.next_attempt_at_ms,
        "last_error": delivery.last_error,
        "event": delivery.payload,
        "attempt_log": [
            {
                "attempt": a.attempt,
                "started_at": a.started_at_ms,
                "finished_at": a.finished_at_ms,
                "outcome": a.outcome,
                "http_status": a.http_status,
                "error": a.error,
                "duration_ms": a.duration_ms,
                "next_retry_at": a.next_retry_at_ms,
            }
            for a in delivery.attempt_log
        ],
    }


def _optional_text(fields: Fields, name: str, max_chars: int) -> str | None:
    value = fields.str(name) or None
    if value is not None and len(value) > max_chars:
        raise InvalidParameter(f"'{name}' is longer than {max_chars} characters.")
    return value


async def create_webhook(request: web.Request) -> web.Response:
    fields = await read_json(request)
    url = validate_url(fields.req_str("url"))
    events = validate_events(fields.str_list("events"))
    hook, secret = await _store(request).create(
        url=url,
        events=events,
        model_name=_optional_text(fields, "model_name", MAX_MODEL_NAME_CHARS),
        description=_optional_text(fields, "description", MAX_DESCRIPTION_CHARS),
        active=bool(fields.bool("active", default=True)),
    )
    return json_response({"webhook": encode_webhook(hook), "secret": secret})


async def list_webhooks(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    hooks = await _store(request).list(model_name=fields.str("model_name") or None)
    return json_response({"webhooks": [encode_webhook(h) for h in hooks]})


async def get_webhook(request: web.Request) -> web.Response:
    hook = await _store(request).get(request.match_info["webhook_id"])
    return json_response({"webhook": encode_webhook(hook)})


async def update_webhook(request: web.Request) -> web.Response:
    fields = await read_json(request)
    changes: dict[str, Any] = {}
    if fields.has("url"):
        changes["url"] = validate_url(fields.req_str("url"))
    if fields.has("events"):
        changes["events"] = validate_events(fields.str_list("events"))
    if fields.has("active"):
        changes["active"] = fields.bool("active")
    # An empty string clears the filter / description (null is "leave unchanged", as in MLflow).
    for name, limit in (
        ("model_name", MAX_MODEL_NAME_CHARS),
        ("description", MAX_DESCRIPTION_CHARS),
    ):
        if fields.has(name):
            changes[name] = _optional_text(fields, name, limit)
    hook = await _store(request).update(request.match_info["webhook_id"], changes)
    return json_response({"webhook": encode_webhook(hook)})


async def delete_webhook(request: web.Request) -> web.Response:
    await _store(request).delete(request.match_info["webhook_id"], audit=deletion_audit(request))
    return empty_response()


async def rotate_secret(request: web.Request) -> web.Response:
    hook, secret = await _store(request).rotate_secret(request.match_info["webhook_id"])
    return json_response({"webhook": encode_webhook(hook), "secret": secret})


async def list_deliveries(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    limit = fields.int("max_results", default=100)
    assert limit is not None
    if not 1 <= limit <= MAX_DELIVERIES:
        raise InvalidParameter(f"max_results must be between 1 and {MAX_DELIVERIES}, got {limit}.")
    state = fields.str("state") or None
    if state is not None and state not in DELIVERY_STATES:
        raise InvalidParameter(
            f"Invalid state {state[:50]!r}; use one of {', '.join(DELIVERY_STATES)}."
        )
    deliveries = await _store(request).list_deliveries(
        request.match_info["webhook_id"], limit, state
    )
    return json_response({"deliveries": [encode_delivery(d) for d in deliveries]})


async def test_webhook(request: web.Request) -> web.Response:
    """Queue a ``webhook.ping`` delivery; its outcome shows in ``deliveries``."""
    delivery_id = await _store(request).enqueue_ping(request.match_info["webhook_id"])
    return json_response({"delivery_id": delivery_id})


# Webhooks see every registry event and hold signing secrets: admins only, as in stock.
_ADMIN = Admin()
ROUTES = [
    Route("POST", "/webhooks", create_webhook, _ADMIN),
    Route("GET", "/webhooks", list_webhooks, _ADMIN),
    Route("GET", "/webhooks/{webhook_id}", get_webhook, _ADMIN),
    Route("PATCH", "/webhooks/{webhook_id}", update_webhook, _ADMIN),
    Route("DELETE", "/webhooks/{webhook_id}", delete_webhook, _ADMIN),
    Route("POST", "/webhooks/{webhook_id}/rotate-secret", rotate_secret, _ADMIN),
    Route("GET", "/webhooks/{webhook_id}/deliveries", list_deliveries, _ADMIN),
    Route("POST", "/webhooks/{webhook_id}/test", test_webhook, _ADMIN),
]
