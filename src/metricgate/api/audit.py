"""The audit log (docs/design-auth.md B7): who changed what, and the route that reads it.

- ``GET /api/2.0/metricgate/audit`` (admins): entries newest first, keyset-paged
  (``max_results`` 1..1000, default 100; ``page_token`` from the previous answer's
  ``next_page_token``), filtered by ``actor``, ``action``, ``since`` and ``until`` (epoch
  milliseconds; ``since`` inclusive, ``until`` exclusive).
- ``audit_context``: the caller as an ``AuditContext``, which the auth handlers pass into the
  store's write so that the change and its entry commit in one transaction.
- ``deletion_audit``: who deletes a run, experiment, registered model, model version or logged
  model, for the store's delete, which writes the entry in the delete's own transaction (a
  crash cannot keep the delete and lose its entry). With auth off, None: there is nobody to
  name, and nothing is written.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metricgate.api.access import client_addr
from metricgate.api.auth_common import auth_store, params
from metricgate.api.codec import json_response
from metricgate.api.keys import SERVICE, caller
from metricgate.api.routing import Route
from metricgate.domain.auth.access import Admin
from metricgate.domain.errors import InvalidParameter
from metricgate.observability import current_request_id
from metricgate.stores.base import AuditContext, AuditEntry

PREFIXES = ("/api/2.0/metricgate", "/ajax-api/2.0/metricgate")
DEFAULT_MAX_RESULTS = 100
MAX_RESULTS = 1000
_MAX_FILTER_CHARS = 256
MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z; PostgreSQL's range ends later


def audit_context(request: web.Request) -> AuditContext:
    """Who makes this request's change: the authenticated caller (nobody when there is none),
    from the client address behind METRICGATE_TRUSTED_PROXIES."""
    who = caller(request)
    address, request_id = client_addr(request), current_request_id()
    if who is None:
        return AuditContext(None, None, None, address, request_id)
    return AuditContext(who.user_id, who.username, who.method, address, request_id)


def deletion_audit(request: web.Request) -> AuditContext | None:
    """Who deletes, with auth on (the store writes the entry with the delete); None with it off."""
    if request.app[SERVICE].auth is None or caller(request) is None:
        return None
    return audit_context(request)


def encode_entry(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.id,
        "timestamp": entry.at_ms,
        "actor_id": entry.actor_id,
        "actor": entry.actor,
        "auth_method": entry.auth_method,
        "client_addr": entry.client_addr,
        "action": entry.action,
        "target_type": entry.target_type,
        "target_id": entry.target_id,
        "details": entry.details,
        "request_id": entry.request_id,
    }


def _filter(value: str | None, name: str) -> str | None:
    if not value:
        return None
    if len(value) > _MAX_FILTER_CHARS or "\x00" in value:
        raise InvalidParameter(f"'{name}' must be at most {_MAX_FILTER_CHARS} characters")
    return value


def _time(value: int | None, name: str) -> int | None:
    if value is not None and not 0 <= value <= MAX_TIME_MS:
        raise InvalidParameter(
            f"'{name}' must be milliseconds since the epoch (at most {MAX_TIME_MS}), got {value}"
        )
    return value


async def list_audit(request: web.Request) -> web.Response:
    fields = await params(request)
    max_results = fields.int("max_results", default=DEFAULT_MAX_RESULTS)
    assert max_results is not None  # defaulted
    if not 1 <= max_results <= MAX_RESULTS:
        raise InvalidParameter(
            f"max_results must be between 1 and {MAX_RESULTS}, got {max_results}"
        )
    entries, next_token = await auth_store(request).list_audit(
        max_results,
        fields.str("page_token") or None,
        actor=_filter(fields.str("actor"), "actor"),
        action=_filter(fields.str("action"), "action"),
        since_ms=_time(fields.int("since"), "since"),
        until_ms=_time(fields.int("until"), "until"),
    )
    body: dict[str, Any] = {"entries": [encode_entry(e) for e in entries]}
    if next_token is not None:
        body["next_page_token"] = next_token
    return json_response(body)


ROUTES = [Route("GET", "/audit", list_audit, Admin())]
