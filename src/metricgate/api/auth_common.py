"""What the auth API's handlers share (api/auth_users.py, api/auth_roles.py, api/tokens.py):
the store behind them, the caller, MLflow's parameter reading, the JSON of the auth entities and
the cache invalidation after a write. A write's audit entry is the store's, in the write's own
transaction (api/audit.py's ``audit_context`` says who).

With ``METRICGATE_AUTH=off`` the routes still exist (the route table does not depend on
settings) but every one answers 404 ``ENDPOINT_NOT_FOUND`` saying so: there are no users to
manage, and a stock MLflow server without its auth app answers these paths 404 as well, which
is what the web UI expects of a server without accounts (it hides the account menu).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metricgate.api.codec import Fields, decode_json_body, read_json
from metricgate.api.keys import SERVICE, caller
from metricgate.auth.passwords import Passwords
from metricgate.domain.auth.entities import Assignment, Credential, Role, RolePermission, User
from metricgate.domain.errors import EndpointNotFound, InvalidParameter, Unauthenticated
from metricgate.stores.base import AuthStore, PermissionRow


class AuthDisabled(EndpointNotFound):
    """404 ENDPOINT_NOT_FOUND, what these paths answer on a stock server without its auth app
    (the web UI reads it as "no accounts" and hides its account menu), saying why."""

    def __init__(self) -> None:
        super().__init__(
            "No user accounts: access control is off on this server (METRICGATE_AUTH=off), "
            "so there are no users, roles, permissions or API tokens to manage."
        )


def auth_store(request: web.Request) -> AuthStore:
    store = request.app[SERVICE].auth
    if store is None:
        raise AuthDisabled()
    return store


def passwords(request: web.Request) -> Passwords:
    found = request.app[SERVICE].passwords
    if found is None:
        raise AuthDisabled()
    return found


def current(request: web.Request) -> Credential:
    """The authenticated caller (after checking that auth is on)."""
    auth_store(request)
    credential = caller(request)
    if credential is None:
        raise Unauthenticated("You are not authenticated.")
    return credential


async def params(request: web.Request) -> Fields:
    """MLflow's ``_get_request_param`` sources: a GET's query string, a POST's or PATCH's JSON
    body, a DELETE's JSON body when it has one, else its query string. With auth off, the
    404 comes first, whatever the parameters."""
    auth_store(request)
    if request.method == "GET":
        return _query(request)
    if request.method == "DELETE":
        raw = await request.read()
        return _query(request) if not raw.strip() else decode_json_body(raw)
    return await read_json(request)


def _query(request: web.Request) -> Fields:
    if any("\x00" in k or "\x00" in v for k, v in request.query.items()):
        raise InvalidParameter("Query parameters may not contain the NUL character.")
    return Fields(request.query, query=True)


def req_int(fields: Fields, name: str) -> int:
    value = fields.int(name, required=True)
    assert value is not None  # required
    return value


def required_text(fields: Fields, name: str) -> str:
    """A required string parameter that may still be empty (the domain's checks say why an
    empty one is wrong, in MLflow's words)."""
    if not fields.has(name):
        return fields.req_str(name)  # raises MLflow's "Missing value ..." message
    value = fields.str(name)
    assert value is not None
    return value


# ------------------------------------------------------------------ MLflow's auth entities


def encode_user(user: User) -> dict[str, Any]:
    return {"id": user.id, "username": user.username, "is_admin": user.is_admin}


def encode_role_permission(rp: RolePermission) -> dict[str, Any]:
    return {
        "id": rp.id,
        "role_id": rp.role_id,
        "resource_type": rp.resource_type.value,
        "resource_pattern": rp.resource_pattern,
        "permission": rp.permission.name,
    }


def encode_role(role: Role) -> dict[str, Any]:
    return {
        "id": role.id,
        "name": role.name,
        "workspace": role.workspace,
        "description": role.description,
        "permissions": [encode_role_permission(p) for p in role.permissions],
    }


def encode_assignment(assignment: Assignment) -> dict[str, Any]:
    return {"id": assignment.id, "user_id": assignment.user_id, "role_id": assignment.role_id}


def encode_permission_row(row: PermissionRow) -> dict[str, Any]:
    return {
        "role_id": row.role_id,
        "role_name": row.role_name,
        "workspace": row.workspace,
        "resource_type": row.resource_type.value,
        "resource_pattern": row.resource_pattern,
        "permission": row.permission.name,
    }


# ------------------------------------------------------------------ after a change


async def forget_cached(request: web.Request, *, credentials: bool) -> None:
    """After a committed change: this process's cached credentials (``credentials``: password,
    admin flag, user delete, token revoke) or only its grant lists stop counting at once, not
    at the next epoch poll (other processes still take up to about a second)."""
    authenticator = request.app[SERVICE].authenticator
    if authenticator is not None:
        await authenticator.changed(credentials=credentials)
