"""MLflow's 3.0 role API (docs/design-auth.md A2): ``roles/create|get|list|update|delete``,
``roles/permissions/add|remove|list|update``, ``roles/assign|unassign``, ``roles/users/list``,
with MLflow's paths, parameters and JSON (``Role``, ``RolePermission``, ``Assignment``).

metricgate has one workspace, ``default``: a role elsewhere is refused at creation, and listing
another workspace's roles finds none. Every route is for admins and workspace admins
(``RoleAdmin``); stock also lets any holder of a role in the workspace read roles
(``roles/get``, ``roles/permissions/list``, ``roles/list?workspace=``), which with one workspace
would be nearly everyone: a user reads their own roles through ``users/roles/list``. Every
change writes an audit entry.
"""

from __future__ import annotations

from aiohttp import web

from metricgate.api.audit import audit_context
from metricgate.api.auth_common import (
    auth_store,
    encode_assignment,
    encode_role,
    encode_role_permission,
    forget_cached,
    params,
    req_int,
    required_text,
)
from metricgate.api.codec import empty_response, json_response
from metricgate.api.routing import Route
from metricgate.domain.auth.access import RoleAdmin
from metricgate.domain.auth.entities import DEFAULT_WORKSPACE
from metricgate.domain.auth.permissions import parse_permission, parse_resource_type
from metricgate.domain.auth.rules import check_role_name, check_workspace
from metricgate.domain.errors import InvalidParameter


async def create_role(request: web.Request) -> web.Response:
    fields = await params(request)
    name = check_role_name(required_text(fields, "name"))
    workspace_given = required_text(fields, "workspace")
    if not workspace_given.strip():
        raise InvalidParameter("Workspace cannot be empty.")
    workspace = check_workspace(workspace_given)
    description = fields.str("description")
    role = await auth_store(request).create_role(
        name, workspace, description, audit=audit_context(request)
    )
    return json_response({"role": encode_role(role)})


async def get_role(request: web.Request) -> web.Response:
    fields = await params(request)
    role = await auth_store(request).get_role(req_int(fields, "role_id"))
    return json_response({"role": encode_role(role)})


async def list_roles(request: web.Request) -> web.Response:
    fields = await params(request)
    workspaces = fields.str_list("workspace")
    if any(not w.strip() for w in workspaces):
        raise InvalidParameter("Parameter 'workspace' must be a non-empty string when provided.")
    store = auth_store(request)
    if not workspaces:
        roles = await store.list_roles()
    elif DEFAULT_WORKSPACE in workspaces:
        roles = await store.list_roles(DEFAULT_WORKSPACE)
    else:
        roles = []  # a workspace this server does not have holds no roles
    return json_response({"roles": [encode_role(r) for r in roles]})


async def update_role(request: web.Request) -> web.Response:
    fields = await params(request)
    role_id = req_int(fields, "role_id")
    name = fields.str("name")
    description = fields.str("description")
    if name is None and description is None:
        raise InvalidParameter(
            "At least one of 'name' or 'description' must be provided to update a role."
        )
    if name is not None:
        check_role_name(name)
    role = await auth_store(request).update_role(
        role_id, name, description, audit=audit_context(request)
    )
    return json_response({"role": encode_role(role)})


async def delete_role(request: web.Request) -> web.Response:
    fields = await params(request)
    role_id = req_int(fields, "role_id")
    await auth_store(request).delete_role(role_id, audit=audit_context(request))
    await forget_cached(request, credentials=False)
    return empty_response()


async def add_role_permission(request: web.Request) -> web.Response:
    fields = await params(request)
    role_id = req_int(fields, "role_id")
    resource_type = parse_resource_type(
        required_text(fields, "resource_type"), workspace_allowed=True
    )
    pattern = required_text(fields, "resource_pattern")
    permission = parse_permission(required_text(fields, "permission"))
    rp = await auth_store(request).add_role_permission(
        role_id, resource_type, pattern, permission, audit=audit_context(request)
    )
    await forget_cached(request, credentials=False)
    return json_response({"role_permission": encode_role_permission(rp)})


async def remove_role_permission(request: web.Request) -> web.Response:
    fields = await params(request)
    rp_id = req_int(fields, "role_permission_id")
    await auth_store(request).remove_role_permission(rp_id, audit=audit_context(request))
    await forget_cached(request, credentials=False)
    return empty_response()


async def list_role_permissions(request: web.Request) -> web.Response:
    fields = await params(request)
    found = await auth_store(request).list_role_permissions(req_int(fields, "role_id"))
    return json_response({"role_permissions": [encode_role_permission(p) for p in found]})


async def update_role_permission(request: web.Request) -> web.Response:
    fields = await params(request)
    rp_id = req_int(fields, "role_permission_id")
    permission = parse_permission(required_text(fields, "permission"))
    rp = await auth_store(request).update_role_permission(
        rp_id, permission, audit=audit_context(request)
    )
    await forget_cached(request, credentials=False)
    return json_response({"role_permission": encode_role_permission(rp)})


async def assign_role(request: web.Request) -> web.Response:
    fields = await params(request)
    username = required_text(fields, "username")
    role_id = req_int(fields, "role_id")
    assignment = await auth_store(request).assign_role(
        username, role_id, audit=audit_context(request)
    )
    await forget_cached(request, credentials=False)
    return json_response({"assignment": encode_assignment(assignment)})


async def unassign_role(request: web.Request) -> web.Response:
    fields = await params(request)
    username = required_text(fields, "username")
    role_id = req_int(fields, "role_id")
    await auth_store(request).unassign_role(username, role_id, audit=audit_context(request))
    await forget_cached(request, credentials=False)
    return empty_response()


async def list_role_users(request: web.Request) -> web.Response:
    fields = await params(request)
    assignments = await auth_store(request).list_role_users(req_int(fields, "role_id"))
    return json_response({"assignments": [encode_assignment(a) for a in assignments]})


ROUTES = [
    Route("POST", "/roles/create", create_role, RoleAdmin()),
    Route("GET", "/roles/get", get_role, RoleAdmin()),
    Route("GET", "/roles/list", list_roles, RoleAdmin()),
    Route("PATCH", "/roles/update", update_role, RoleAdmin()),
    Route("DELETE", "/roles/delete", delete_role, RoleAdmin()),
    Route("POST", "/roles/permissions/add", add_role_permission, RoleAdmin()),
    Route("DELETE", "/roles/permissions/remove", remove_role_permission, RoleAdmin()),
    Route("GET", "/roles/permissions/list", list_role_permissions, RoleAdmin()),
    Route("PATCH", "/roles/permissions/update", update_role_permission, RoleAdmin()),
    Route("POST", "/roles/assign", assign_role, RoleAdmin()),
    Route("DELETE", "/roles/unassign", unassign_role, RoleAdmin()),
    Route("GET", "/roles/users/list", list_role_users, RoleAdmin()),
]
