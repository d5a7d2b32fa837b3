"""metricgate's own permission routes (``/api/2.0/metricgate/permissions/``; docs/design-auth.md
B7), for admins and for whoever holds MANAGE on the resource (``*`` and workspace grants: admins
and workspace admins), as MLflow's grant and revoke are:

- ``permissions/set {username | role_id, resource_type, resource_id, permission}``: grant, or
  change the level of the grant that user or role already holds on that resource, in place
  (MLflow's grant refuses an existing one, its update needs the grant's id). Answers the grant
  and the level it replaced (``previous_permission``, null when new); audited as ``grant.set``.
- ``permissions/who ?resource_type&resource_id``: every user and role holding a grant on the
  resource, its own or ``*``; admins and workspace admins, who hold everything without a grant,
  are not listed (``note`` says so), nor is the server's default permission (given alongside).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metricgate.api.access import NO_SUCH_ID
from metricgate.api.audit import audit_context
from metricgate.api.auth_common import (
    auth_store,
    forget_cached,
    params,
    req_int,
    required_text,
)
from metricgate.api.codec import json_response
from metricgate.api.keys import SERVICE, SETTINGS, caller
from metricgate.api.routing import Route
from metricgate.domain.auth.access import Manages
from metricgate.domain.auth.entities import USER_ROLE_PREFIX
from metricgate.domain.auth.permissions import (
    WILDCARD,
    ResourceType,
    is_workspace_admin,
    parse_permission,
    parse_resource_type,
)
from metricgate.domain.errors import (
    InvalidParameter,
    MetricgateError,
    NotFound,
    PermissionDenied,
)
from metricgate.stores.base import GrantHolder

PREFIXES = ("/api/2.0/metricgate", "/ajax-api/2.0/metricgate")
WHO_NOTE = (
    "Admins and workspace admins (a role with a workspace '*' MANAGE grant) hold MANAGE on "
    "every resource without a grant, and are listed here only through grants they hold; "
    "everyone else without a grant has default_permission."
)


async def _require_role_admin(request: web.Request) -> None:
    credential = caller(request)
    if credential is None or credential.is_admin:
        return
    authenticator = request.app[SERVICE].authenticator
    if authenticator is None or not is_workspace_admin(await authenticator.grants_for(credential)):
        raise PermissionDenied("Changing a role's grants needs an admin or a workspace admin")


async def if_no_model(
    request: web.Request, resource_type: ResourceType, resource_id: str
) -> MetricgateError | None:
    """What a user-grant write (grant, revoke, set) on a registered-model name raises when no
    model has the name, for a caller who is not an admin or a workspace admin (design-auth B2).
    The access check found MANAGE before the handler ran, outside the name's lock; if the
    model was deleted meanwhile the grant would land on a name with no model, made by someone
    who manages nothing there, and a model created later under the name would inherit it.
    Only admins set grants on a name in advance. The answer is the access check's for a
    missing resource (B4): 404 where the caller would hold MANAGE on it anyway (``*``), else
    403. Experiments need nothing: their ids are never reused, so a grant on a deleted
    experiment reaches no other."""
    if resource_type is not ResourceType.REGISTERED_MODEL or resource_id == WILDCARD:
        return None
    credential = caller(request)
    authenticator = request.app[SERVICE].authenticator
    if credential is None or credential.is_admin or authenticator is None:
        return None
    if is_workspace_admin(await authenticator.grants_for(credential)):
        return None  # they may add any grant to any role (roles/permissions/add) anyway
    held = await authenticator.decide_for(credential, resource_type, NO_SUCH_ID)
    if held.can_manage:
        return NotFound(f"Registered Model with name={resource_id} not found")
    return PermissionDenied()


async def set_permission(request: web.Request) -> web.Response:
    fields = await params(request)
    by_user, by_role = fields.has("username"), fields.has("role_id")
    if by_user == by_role:
        raise InvalidParameter("Give exactly one of 'username' and 'role_id'.")
    resource_id = required_text(fields, "resource_id")
    permission = parse_permission(required_text(fields, "permission"))
    store = auth_store(request)
    audit = audit_context(request)
    holder: dict[str, Any]
    if by_user:
        username = required_text(fields, "username")
        # A user's grants are on experiments and models; workspace grants go on roles.
        resource_type = parse_resource_type(required_text(fields, "resource_type"))
        old = await store.grant_user(
            username,
            resource_type,
            resource_id,
            permission,
            replace=True,
            audit=audit,
            if_no_model=await if_no_model(request, resource_type, resource_id),
        )
        holder = {"username": username}
    else:
        # A role is shared: changing what it grants is for role admins, as MLflow's
        # roles/permissions routes are, not for everyone who manages the resource.
        await _require_role_admin(request)
        role_id = req_int(fields, "role_id")
        resource_type = parse_resource_type(
            required_text(fields, "resource_type"), workspace_allowed=True
        )
        granted, old = await store.set_role_permission(
            role_id, resource_type, resource_id, permission, audit=audit
        )
        holder = {"role_id": role_id, "role_permission_id": granted.id}
    await forget_cached(request, credentials=False)
    return json_response(
        {
            "permission": {
                **holder,
                "resource_type": resource_type.value,
                "resource_id": resource_id,
                "permission": permission.name,
            },
            "previous_permission": None if old is None else old.name,
        }
    )


def _user_rows(holders: list[GrantHolder]) -> list[dict[str, Any]]:
    return [
        {
            "username": username,
            "resource_pattern": h.resource_pattern,
            "permission": h.permission.name,
        }
        for h in holders
        if h.role_name.startswith(USER_ROLE_PREFIX)
        for username in h.usernames
    ]


def _role_rows(holders: list[GrantHolder]) -> list[dict[str, Any]]:
    return [
        {
            "role_id": h.role_id,
            "role_name": h.role_name,
            "resource_pattern": h.resource_pattern,
            "permission": h.permission.name,
            "usernames": list(h.usernames),
        }
        for h in holders
        if not h.role_name.startswith(USER_ROLE_PREFIX)
    ]


async def who_holds(request: web.Request) -> web.Response:
    fields = await params(request)
    resource_type = parse_resource_type(
        required_text(fields, "resource_type"), workspace_allowed=True
    )
    resource_id = required_text(fields, "resource_id")
    if not resource_id:
        raise InvalidParameter("resource_id must not be empty")
    holders = await auth_store(request).who_holds(resource_type, resource_id)
    return json_response(
        {
            "resource_type": resource_type.value,
            "resource_id": resource_id,
            "users": _user_rows(holders),
            "roles": _role_rows(holders),
            "default_permission": request.app[SETTINGS].auth.default_permission,
            "note": WHO_NOTE,
        }
    )


ROUTES = [
    Route("POST", "/permissions/set", set_permission, Manages()),
    Route("GET", "/permissions/who", who_holds, Manages()),
]
