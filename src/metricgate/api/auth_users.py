"""MLflow's auth API for users and their permissions (docs/design-auth.md A2): 2.0
``users/create|get|list|current|update-password|update-admin|delete`` and 3.0
``users/current/permissions``, ``users/permissions/grant|revoke|get|list``, ``users/roles/list``,
with MLflow's paths, parameters and JSON, so ``AuthServiceClient`` and the web UI's account
pages work unchanged.

Who may call each is the route's access rule (B4), checked before the handler runs; what the
handlers add is MLflow's own per-request refusals (deleting yourself, changing your own password
without the current one). Differences from stock, on purpose: ``users/list`` is for admins only;
"user exists" never quotes the database; ``is_admin`` must be a boolean; an admin cannot drop
their own admin flag (it would be the same trap as deleting yourself: the last admin locked
out). Every change writes an audit entry.
"""

from __future__ import annotations

from aiohttp import web

from metricgate.api.audit import audit_context
from metricgate.api.auth_common import (
    auth_store,
    current,
    encode_permission_row,
    encode_role,
    encode_user,
    forget_cached,
    params,
    passwords,
    required_text,
)
from metricgate.api.codec import empty_response, json_response
from metricgate.api.keys import SETTINGS
from metricgate.api.permissions_admin import if_no_model
from metricgate.api.routing import Route
from metricgate.domain.auth.access import (
    Admin,
    Authenticated,
    Manages,
    RoleAdmin,
    SelfOrAdmin,
)
from metricgate.domain.auth.permissions import (
    Permission,
    decide,
    parse_permission,
    parse_resource_type,
)
from metricgate.domain.auth.rules import check_password, check_username
from metricgate.domain.errors import BadRequest, InvalidParameter

# ------------------------------------------------------------------ 2.0: users


async def create_user(request: web.Request) -> web.Response:
    fields = await params(request)
    username = check_username(required_text(fields, "username"))
    password = check_password(required_text(fields, "password"))
    store = auth_store(request)
    password_hash = await passwords(request).hash(password)
    user = await store.create_user(username, password_hash, False, audit=audit_context(request))
    return json_response({"user": encode_user(user)})


async def get_user(request: web.Request) -> web.Response:
    fields = await params(request)
    user = await auth_store(request).get_user(required_text(fields, "username"))
    return json_response({"user": encode_user(user)})


async def list_users(request: web.Request) -> web.Response:
    store = auth_store(request)
    users = await store.list_users()
    roles = await store.roles_by_user()
    return json_response(
        {
            "users": [
                {**encode_user(u), "roles": [encode_role(r) for r in roles.get(u.id, [])]}
                for u in users
            ]
        }
    )


async def get_current_user(request: web.Request) -> web.Response:
    me = current(request)
    return json_response(
        {
            "user": {"id": me.user_id, "username": me.username, "is_admin": me.is_admin},
            # The web UI offers logout and password change only for Basic authentication.
            "is_basic_auth": True,
        }
    )


async def update_user_password(request: web.Request) -> web.Response:
    fields = await params(request)
    username = required_text(fields, "username")
    password = check_password(required_text(fields, "password"))
    me = current(request)
    store = auth_store(request)
    kdf = passwords(request)
    if me.username == username:
        # A hijacked session (or a leaked token) must not be enough to take the account over.
        current_password = fields.str("current_password")
        if not current_password:
            raise InvalidParameter("Current password is required when changing your own password.")
        stored = await store.user_credentials(username)
        known = None if stored is None else stored.password_hash
        if not await kdf.verify(known, current_password):
            raise InvalidParameter("Current password does not match.")
        if password == current_password:
            raise InvalidParameter("New password must differ from the current password.")
    else:
        await store.get_user(username)  # 404 before the KDF's cost
    await store.set_password(username, await kdf.hash(password), audit=audit_context(request))
    await forget_cached(request, credentials=True)
    return empty_response()


async def update_user_admin(request: web.Request) -> web.Response:
    fields = await params(request)
    username = required_text(fields, "username")
    is_admin = fields.bool("is_admin", required=True)
    assert is_admin is not None  # required
    me = current(request)
    if me.username == username and not is_admin:
        raise BadRequest(
            "Admins cannot remove their own admin status. Ask another admin to do it instead."
        )
    await auth_store(request).set_admin(username, is_admin, audit=audit_context(request))
    await forget_cached(request, credentials=True)
    return empty_response()


async def delete_user(request: web.Request) -> web.Response:
    fields = await params(request)
    username = required_text(fields, "username")
    if current(request).username == username:
        raise BadRequest(
            "Users cannot delete their own account. Ask another admin to delete this user instead."
        )
    await auth_store(request).delete_user(username, audit=audit_context(request))
    await forget_cached(request, credentials=True)
    return empty_response()


# ------------------------------------------------------------------ 3.0: permissions


async def list_current_user_permissions(request: web.Request) -> web.Response:
    me = current(request)
    rows = await auth_store(request).user_permission_rows(me.username)
    return json_response(
        {"is_admin": me.is_admin, "permissions": [encode_permission_row(r) for r in rows]}
    )


async def list_user_permissions(request: web.Request) -> web.Response:
    fields = await params(request)
    store = auth_store(request)
    user = await store.get_user(required_text(fields, "username"))
    rows = await store.user_permission_rows(user.username)
    return json_response(
        {"is_admin": user.is_admin, "permissions": [encode_permission_row(r) for r in rows]}
    )


async def grant_user_permission(request: web.Request) -> web.Response:
    fields = await params(request)
    username = required_text(fields, "username")
    resource_type = parse_resource_type(required_text(fields, "resource_type"))
    resource_id = required_text(fields, "resource_id")
    permission = parse_permission(required_text(fields, "permission"))
    await auth_store(request).grant_user(
        username,
        resource_type,
        resource_id,
        permission,
        replace=False,
        audit=audit_context(request),
        if_no_model=await if_no_model(request, resource_type, resource_id),
    )
    await forget_cached(request, credentials=False)
    return empty_response()


async def revoke_user_permission(request: web.Request) -> web.Response:
    fields = await params(request)
    username = required_text(fields, "username")
    resource_type = parse_resource_type(required_text(fields, "resource_type"))
    resource_id = required_text(fields, "resource_id")
    await auth_store(request).revoke_user(
        username,
        resource_type,
        resource_id,
        audit=audit_context(request),
        if_no_model=await if_no_model(request, resource_type, resource_id),
    )
    await forget_cached(request, credentials=False)
    return empty_response()


async def get_user_permission(request: web.Request) -> web.Response:
    """The user's level on one resource, resolved as the access check resolves it (an admin
    holds MANAGE); an unknown resource gets an answer, not a 404. ``allowed`` is MLflow's
    ``can_use``."""
    fields = await params(request)
    username = required_text(fields, "username")
    resource_type = parse_resource_type(required_text(fields, "resource_type"))
    resource_id = required_text(fields, "resource_id")
    if not resource_id:
        raise InvalidParameter("resource_id must not be empty")
    store = auth_store(request)
    user = await store.get_user(username)
    grants = await store.user_grants(user.id)
    default = Permission[request.app[SETTINGS].auth.default_permission]
    level = decide(grants, resource_type, resource_id, default, is_admin=user.is_admin)
    return json_response({"allowed": level.can_use, "permission": level.name})


async def list_user_roles(request: web.Request) -> web.Response:
    fields = await params(request)
    roles = await auth_store(request).list_user_roles(required_text(fields, "username"))
    return json_response({"roles": [encode_role(r) for r in roles]})


V2_ROUTES = [
    Route("POST", "/users/create", create_user, RoleAdmin()),
    Route("GET", "/users/get", get_user, SelfOrAdmin()),
    Route("GET", "/users/list", list_users, Admin()),
    Route("GET", "/users/current", get_current_user, Authenticated()),
    Route("PATCH", "/users/update-password", update_user_password, SelfOrAdmin()),
    Route("PATCH", "/users/update-admin", update_user_admin, Admin()),
    Route("DELETE", "/users/delete", delete_user, Admin()),
]

V3_ROUTES = [
    Route("GET", "/users/current/permissions", list_current_user_permissions, Authenticated()),
    Route("GET", "/users/permissions/list", list_user_permissions, SelfOrAdmin()),
    Route("POST", "/users/permissions/grant", grant_user_permission, Manages()),
    Route("POST", "/users/permissions/revoke", revoke_user_permission, Manages()),
    Route("GET", "/users/permissions/get", get_user_permission, SelfOrAdmin()),
    Route("GET", "/users/roles/list", list_user_roles, SelfOrAdmin()),
]
