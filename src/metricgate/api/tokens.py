"""metricgate's API tokens (``/api/2.0/metricgate/tokens/``; docs/design-auth.md B3, B7); MLflow
has none. A token is accepted as ``Authorization: Bearer`` (the mlflow client's
``MLFLOW_TRACKING_TOKEN``) and as the Basic password with its owner's username.

- ``tokens/create {name, expires_in_days?}``: a token for the caller; the answer carries the
  secret, the only time it is shown (the store keeps its digest).
- ``tokens/list [?username=]``: the caller's tokens, revoked and expired ones included; another
  user's for admins only.
- ``tokens/revoke {token_id}``: the caller's own token, or anyone's for an admin; someone
  else's token answers 404 to a non-admin, as an unknown one does.

Creating and revoking write audit entries (the token's id, name and hint, never the secret).
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from metricgate.api.audit import audit_context
from metricgate.api.auth_common import (
    auth_store,
    current,
    forget_cached,
    params,
    req_int,
)
from metricgate.api.codec import json_response
from metricgate.api.routing import Route
from metricgate.auth.tokens import new_token
from metricgate.domain.auth.access import Authenticated, SelfOrAdmin
from metricgate.domain.auth.entities import ApiToken
from metricgate.domain.auth.rules import token_digest, token_hint
from metricgate.domain.errors import InvalidParameter, PermissionDenied

PREFIXES = ("/api/2.0/metricgate", "/ajax-api/2.0/metricgate")
MAX_NAME_CHARS = 256
MAX_EXPIRES_IN_DAYS = 3650
DAY_MS = 86_400_000


def encode_token(token: ApiToken) -> dict[str, Any]:
    return {
        "id": token.id,
        "user_id": token.user_id,
        "name": token.name,
        "hint": token.hint,
        "created_at": token.created_at_ms,
        "expires_at": token.expires_at_ms,
        "last_used_at": token.last_used_at_ms,
        "revoked_at": token.revoked_at_ms,
    }


def _name(value: str | None) -> str:
    if value is None:
        raise InvalidParameter(
            "Missing value for required parameter 'name'. "
            "See the API docs for more information about request parameters."
        )
    if not value.strip():
        raise InvalidParameter("Token name cannot be empty.")
    if len(value) > MAX_NAME_CHARS:
        raise InvalidParameter(f"Token name is longer than {MAX_NAME_CHARS} characters.")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise InvalidParameter("Token name must not contain control characters.")
    return value


async def create_token(request: web.Request) -> web.Response:
    fields = await params(request)
    name = _name(fields.str("name"))
    days = fields.int("expires_in_days")
    if days is not None and not 1 <= days <= MAX_EXPIRES_IN_DAYS:
        raise InvalidParameter(
            f"expires_in_days must be between 1 and {MAX_EXPIRES_IN_DAYS}, got {days}."
        )
    me = current(request)
    secret = new_token()
    expires_at_ms = None if days is None else int(time.time() * 1000) + days * DAY_MS
    token = await auth_store(request).create_token(
        me.user_id,
        name,
        token_digest(secret),
        token_hint(secret),
        expires_at_ms,
        audit=audit_context(request),
    )
    return json_response({"token": encode_token(token), "secret": secret})


async def list_tokens(request: web.Request) -> web.Response:
    fields = await params(request)
    me = current(request)
    username = fields.str("username") or me.username
    store = auth_store(request)
    if username == me.username:
        user_id = me.user_id
    elif me.is_admin:
        user_id = (await store.get_user(username)).id
    else:
        raise PermissionDenied()
    found = await store.list_tokens(user_id)
    return json_response({"tokens": [encode_token(t) for t in found]})


async def revoke_token(request: web.Request) -> web.Response:
    fields = await params(request)
    token_id = req_int(fields, "token_id")
    me = current(request)
    token = await auth_store(request).revoke_token(
        None if me.is_admin else me.user_id, token_id, audit=audit_context(request)
    )
    await forget_cached(request, credentials=True)
    return json_response({"token": encode_token(token)})


# Any authenticated user manages their own tokens. tokens/list without ``username`` means the
# caller (SelfOrAdmin passes an absent parameter); the handler checks again, and revoke keeps
# other users' tokens to admins by asking the store for the caller's own.
ROUTES = [
    Route("POST", "/tokens/create", create_token, Authenticated()),
    Route("GET", "/tokens/list", list_tokens, SelfOrAdmin()),
    Route("POST", "/tokens/revoke", revoke_token, Authenticated()),
]
