"""MLflow's auth API (users, permissions, roles) and metricgate's tokens API, in process with
METRICGATE_AUTH=on over a real PostgreSQL database: the JSON shapes of MLflow's entities, the
errors MLflow answers (missing parameters, unknown users and roles 404, duplicates 400
RESOURCE_ALREADY_EXISTS, short passwords 400, non-admins 403), the audit entries writes leave,
and a generated family of bad input that must answer 4xx, never 500. With auth off every route
answers 404 saying so.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.api.auth_support import ADMIN, ADMIN_PASSWORD, PASSWORD, basic, bearer
from tests.api.auth_support import auth_settings as auth_on
from tests.api.conftest import Api, Reply

from metricgate.api.app import create_app
from metricgate.api.keys import SERVICE
from metricgate.config import Settings

V2 = "/api/2.0/mlflow"
V3 = "/api/3.0/mlflow"
AJAX2 = "/ajax-api/2.0/mlflow"
AJAX3 = "/ajax-api/3.0/mlflow"
OWN = "/api/2.0/metricgate"

_names = itertools.count()


class As:
    """Requests with one user's credentials, at absolute paths."""

    def __init__(
        self, client: TestClient[Any, Any], headers: dict[str, str], username: str = ""
    ) -> None:
        self.api = Api(client, prefix="")
        self.headers = headers
        self.username = username

    async def get(self, path: str, params: Any = None) -> Reply:
        return await self.api.request("GET", path, params=params, headers=self.headers)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        body = {} if body is None and "data" not in kw else body
        return await self.api.request("POST", path, body=body, headers=self.headers, **kw)

    async def patch(self, path: str, body: Any = None) -> Reply:
        return await self.api.request("PATCH", path, body=body or {}, headers=self.headers)

    async def delete(self, path: str, body: Any = None, params: Any = None) -> Reply:
        return await self.api.request(
            "DELETE", path, body=body, params=params, headers=self.headers
        )


@pytest.fixture
def auth_settings(db_url: str, redis_client_url: str, tmp_path: Path) -> Settings:
    return auth_on(db_url, redis_client_url, tmp_path / "artifacts")


@pytest.fixture
async def auth_client(auth_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    async with TestClient(TestServer(create_app(auth_settings))) as test_client:
        yield test_client


@pytest.fixture
def admin(auth_client: TestClient[Any, Any]) -> As:
    return As(auth_client, basic(ADMIN, ADMIN_PASSWORD))


@pytest.fixture
def new_user(auth_client: TestClient[Any, Any], admin: As) -> Callable[[], Awaitable[As]]:
    """Creates a user (through the API, as the admin); the result calls as that user."""

    async def make() -> As:
        name = f"user{next(_names)}"
        (await admin.post(f"{V2}/users/create", {"username": name, "password": PASSWORD})).ok()
        return As(auth_client, basic(name, PASSWORD), name)

    return make


async def settles_to(status: int, call: Callable[[], Awaitable[Reply]]) -> Reply:
    """The reply once it has ``status``: a change of password, token or grant reaches the
    process's credential cache within about a second (docs/design-auth.md B3)."""
    for _ in range(40):
        reply = await call()
        if reply.status == status:
            return reply
        await asyncio.sleep(0.1)
    return reply


def name_of(user: As) -> str:
    assert user.username
    return user.username


# ---------------------------------------------------------------- users


async def test_user_lifecycle_answers_mlflows_shapes_and_errors(admin: As) -> None:
    created = await admin.post(f"{V2}/users/create", {"username": "ann", "password": PASSWORD})
    user = created.ok()["user"]
    assert set(user) == {"id", "username", "is_admin"}
    assert user["username"] == "ann" and user["is_admin"] is False and isinstance(user["id"], int)

    again = await admin.post(f"{V2}/users/create", {"username": "ann", "password": PASSWORD})
    message = again.error(400, "RESOURCE_ALREADY_EXISTS")
    assert "auth_users" not in message and "constraint" not in message  # no database text
    (await admin.post(f"{V2}/users/create", {"username": "bob", "password": "short"})).error(
        400, "INVALID_PARAMETER_VALUE", "at least 12"
    )
    (await admin.post(f"{V2}/users/create", {"password": PASSWORD})).error(
        400, "INVALID_PARAMETER_VALUE", "'username'"
    )
    (await admin.post(f"{V2}/users/create", {"username": "", "password": PASSWORD})).error(
        400, "INVALID_PARAMETER_VALUE", "Username cannot be empty"
    )
    form = {**admin.headers, "Content-Type": "application/x-www-form-urlencoded"}
    (
        await admin.api.request(
            "POST", f"{V2}/users/create", data=b"username=x&password=y", headers=form
        )
    ).error(400, "INVALID_PARAMETER_VALUE", "Content-Type")

    got = (await admin.get(f"{V2}/users/get", {"username": "ann"})).ok()
    assert got == {"user": user}
    (await admin.get(f"{AJAX2}/users/get", {"username": "nobody"})).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )
    (await admin.get(f"{V2}/users/get")).error(400, "INVALID_PARAMETER_VALUE")

    listed = (await admin.get(f"{V2}/users/list")).ok()["users"]
    by_name = {u["username"]: u for u in listed}
    assert set(by_name) == {ADMIN, "ann"}
    assert by_name[ADMIN]["is_admin"] is True
    assert set(by_name["ann"]) == {"id", "username", "is_admin", "roles"}

    current = (await admin.get(f"{AJAX2}/users/current")).ok()
    assert current["is_basic_auth"] is True
    assert current["user"]["username"] == ADMIN and current["user"]["is_admin"] is True

    (await admin.patch(f"{V2}/users/update-admin", {"username": "ann", "is_admin": "yes"})).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await admin.patch(f"{V2}/users/update-admin", {"username": "zed", "is_admin": True})).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )
    assert (
        await admin.patch(f"{V2}/users/update-admin", {"username": "ann", "is_admin": True})
    ).ok() == {}
    assert (await admin.get(f"{V2}/users/get", {"username": "ann"})).ok()["user"]["is_admin"]
    (await admin.patch(f"{V2}/users/update-admin", {"username": ADMIN, "is_admin": False})).error(
        400, "BAD_REQUEST"
    )

    (await admin.delete(f"{V2}/users/delete", {"username": ADMIN})).error(400, "BAD_REQUEST")
    (await admin.delete(f"{V2}/users/delete", {"username": "zed"})).error(404)
    # A DELETE without a body reads the query string, as stock's _get_request_param does.
    assert (await admin.delete(f"{V2}/users/delete", params={"username": "ann"})).ok() == {}
    (await admin.get(f"{V2}/users/get", {"username": "ann"})).error(404)


async def test_password_changes(
    admin: As, new_user: Callable[[], Awaitable[As]], auth_client: TestClient[Any, Any]
) -> None:
    user = await new_user()
    name = name_of(user)
    path = f"{V2}/users/update-password"
    new_password = "another-password-42"
    (await user.patch(path, {"username": name, "password": new_password})).error(
        400, "INVALID_PARAMETER_VALUE", "Current password is required"
    )
    wrong = {"username": name, "password": new_password, "current_password": "not-it-at-all"}
    (await user.patch(path, wrong)).error(400, "INVALID_PARAMETER_VALUE", "does not match")
    same = {"username": name, "password": PASSWORD, "current_password": PASSWORD}
    (await user.patch(path, same)).error(400, "INVALID_PARAMETER_VALUE", "must differ")
    short = {"username": name, "password": "tiny", "current_password": PASSWORD}
    (await user.patch(path, short)).error(400, "INVALID_PARAMETER_VALUE", "at least 12")
    good = {"username": name, "password": new_password, "current_password": PASSWORD}
    assert (await user.patch(path, good)).ok() == {}

    renewed = As(auth_client, basic(name, new_password))
    assert (await renewed.get(f"{V2}/users/current")).ok()["user"]["username"] == name
    stale = As(auth_client, basic(name, PASSWORD))
    assert (await settles_to(401, lambda: stale.get(f"{V2}/users/current"))).status == 401

    # An admin resets someone else's password without theirs; another user may not.
    third = "third-password-123"
    assert (await admin.patch(path, {"username": name, "password": third})).ok() == {}
    other = await new_user()
    (await other.patch(path, {"username": name, "password": "x" * 20})).error(403)
    (await admin.patch(path, {"username": "nobody", "password": third})).error(404)


async def test_non_admins_get_403_where_mlflow_gates_them(
    admin: As, new_user: Callable[[], Awaitable[As]]
) -> None:
    user = await new_user()
    other = await new_user()
    me, them = name_of(user), name_of(other)
    refused = [
        user.get(f"{V2}/users/list"),
        user.post(f"{V2}/users/create", {"username": "x1", "password": PASSWORD}),
        user.get(f"{V2}/users/get", {"username": them}),
        user.get(f"{V2}/users/get", {"username": "no-such-user"}),  # 403, not an oracle
        user.patch(f"{V2}/users/update-admin", {"username": me, "is_admin": True}),
        user.delete(f"{V2}/users/delete", {"username": them}),
        user.get(f"{V3}/users/permissions/list", {"username": them}),
        user.get(f"{V3}/users/roles/list", {"username": them}),
        user.post(f"{V3}/roles/create", {"workspace": "default", "name": "r"}),
        user.get(f"{V3}/roles/list"),
        user.get(f"{V3}/roles/get", {"role_id": "1"}),
        user.post(
            f"{V3}/users/permissions/grant",
            {
                "username": me,
                "resource_type": "experiment",
                "resource_id": "*",
                "permission": "MANAGE",
            },
        ),
        user.get(f"{OWN}/tokens/list", {"username": them}),
    ]
    for reply in await asyncio.gather(*refused):
        reply.error(403, "PERMISSION_DENIED")

    assert (await user.get(f"{V2}/users/get", {"username": me})).ok()["user"]["username"] == me
    mine = (await user.get(f"{V3}/users/current/permissions")).ok()
    assert mine == {"is_admin": False, "permissions": []}
    assert (await user.get(f"{V3}/users/roles/list", {"username": me})).ok() == {"roles": []}
    listed = (await user.get(f"{V3}/users/permissions/list", {"username": me})).ok()
    assert listed == {"is_admin": False, "permissions": []}


async def test_user_permissions_grant_get_list_revoke(
    admin: As, new_user: Callable[[], Awaitable[As]]
) -> None:
    user = await new_user()
    name = name_of(user)
    grant = f"{V3}/users/permissions/grant"
    body = {
        "username": name,
        "resource_type": "experiment",
        "resource_id": "17",
        "permission": "EDIT",
    }
    assert (await admin.post(grant, body)).ok() == {}
    (await admin.post(grant, body)).error(400, "RESOURCE_ALREADY_EXISTS")
    for field, bad in [
        ("resource_type", "prompt"),
        ("resource_type", "workspace"),
        ("permission", "NO_PERMISSIONS"),
        ("permission", "WRITE"),
        ("permission", 3),
    ]:
        (await admin.post(grant, {**body, field: bad})).error(400, "INVALID_PARAMETER_VALUE")
    (await admin.post(grant, {**body, "username": "nobody"})).error(404)
    for missing in body:
        partial = {k: v for k, v in body.items() if k != missing}
        (await admin.post(grant, partial)).error(400, "INVALID_PARAMETER_VALUE")

    get = f"{V3}/users/permissions/get"
    query = {"username": name, "resource_type": "experiment", "resource_id": "17"}
    assert (await user.get(get, query)).ok() == {"allowed": True, "permission": "EDIT"}
    # An unknown resource is an answer (the default level), not a 404.
    unknown = (await admin.get(get, {**query, "resource_id": "999999"})).ok()
    assert unknown == {"allowed": False, "permission": "READ"}
    admin_level = (await admin.get(get, {**query, "username": ADMIN})).ok()
    assert admin_level == {"allowed": True, "permission": "MANAGE"}
    (await admin.get(get, {**query, "username": "nobody"})).error(404)

    rows = (await user.get(f"{AJAX3}/users/current/permissions")).ok()
    assert rows["is_admin"] is False
    [row] = rows["permissions"]
    assert set(row) == {
        "role_id",
        "role_name",
        "workspace",
        "resource_type",
        "resource_pattern",
        "permission",
    }
    assert row["role_name"].startswith("__user_") and row["role_name"].endswith("__")
    assert (row["workspace"], row["resource_type"], row["resource_pattern"], row["permission"]) == (
        "default",
        "experiment",
        "17",
        "EDIT",
    )
    listed = (await admin.get(f"{V3}/users/permissions/list", {"username": name})).ok()
    assert listed["permissions"] == rows["permissions"]
    roles = (await user.get(f"{V3}/users/roles/list", {"username": name})).ok()["roles"]
    assert [r["name"] for r in roles] == [row["role_name"]]

    # MANAGE on one experiment lets a user share that experiment, nothing else.
    manager = await new_user()
    manage = {**body, "username": name_of(manager), "permission": "MANAGE"}
    assert (await admin.post(grant, manage)).ok() == {}
    share = {**body, "username": name, "resource_id": "17", "permission": "READ"}
    (await manager.post(grant, share)).error(400, "RESOURCE_ALREADY_EXISTS")
    third = await new_user()
    assert (await manager.post(grant, {**share, "username": name_of(third)})).ok() == {}
    (await manager.post(grant, {**share, "username": name_of(third), "resource_id": "18"})).error(
        403
    )

    revoke = f"{V3}/users/permissions/revoke"
    target = {"username": name, "resource_type": "experiment", "resource_id": "17"}
    assert (await admin.post(revoke, target)).ok() == {}
    (await admin.post(revoke, target)).error(404, "RESOURCE_DOES_NOT_EXIST")
    assert (await user.get(get, query)).ok() == {"allowed": False, "permission": "READ"}


# ---------------------------------------------------------------- roles


async def test_roles_end_to_end(admin: As, new_user: Callable[[], Awaitable[As]]) -> None:
    create = f"{V3}/roles/create"
    made = (
        await admin.post(create, {"workspace": "default", "name": "readers", "description": "d"})
    ).ok()["role"]
    assert made == {
        "id": made["id"],
        "name": "readers",
        "workspace": "default",
        "description": "d",
        "permissions": [],
    }
    role_id = made["id"]
    (await admin.post(create, {"workspace": "default", "name": "readers"})).error(
        400, "RESOURCE_ALREADY_EXISTS"
    )
    for bad in [
        {"workspace": "default", "name": "__user_9__"},
        {"workspace": "default", "name": ""},
        {"workspace": "elsewhere", "name": "x"},
        {"workspace": "", "name": "x"},
        {"name": "x"},
        {"workspace": "default"},
        {"workspace": "default", "name": "x", "description": 5},
    ]:
        (await admin.post(create, bad)).error(400, "INVALID_PARAMETER_VALUE")

    get = f"{V3}/roles/get"
    assert (await admin.get(get, {"role_id": str(role_id)})).ok() == {"role": made}
    (await admin.get(get, {"role_id": "abc"})).error(400, "INVALID_PARAMETER_VALUE")
    (await admin.get(get, {"role_id": "987654"})).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await admin.get(get)).error(400, "INVALID_PARAMETER_VALUE")

    lst = f"{V3}/roles/list"
    assert [r["id"] for r in (await admin.get(lst)).ok()["roles"]] == [role_id]
    scoped = (await admin.get(lst, {"workspace": "default"})).ok()["roles"]
    assert [r["id"] for r in scoped] == [role_id]
    assert (await admin.get(lst, {"workspace": "elsewhere"})).ok() == {"roles": []}
    (await admin.get(lst, {"workspace": ""})).error(400)

    update = f"{V3}/roles/update"
    renamed = (await admin.patch(update, {"role_id": role_id, "name": "viewers"})).ok()["role"]
    assert renamed["name"] == "viewers" and renamed["description"] == "d"
    (await admin.patch(update, {"role_id": role_id})).error(400, "INVALID_PARAMETER_VALUE")
    other = (await admin.post(create, {"workspace": "default", "name": "other"})).ok()["role"]
    (await admin.patch(update, {"role_id": other["id"], "name": "viewers"})).error(
        400, "RESOURCE_ALREADY_EXISTS"
    )

    add = f"{V3}/roles/permissions/add"
    perm = {
        "role_id": role_id,
        "resource_type": "registered_model",
        "resource_pattern": "m1",
        "permission": "READ",
    }
    rp = (await admin.post(add, perm)).ok()["role_permission"]
    assert rp == {
        "id": rp["id"],
        "role_id": role_id,
        "resource_type": "registered_model",
        "resource_pattern": "m1",
        "permission": "READ",
    }
    (await admin.post(add, perm)).error(400, "RESOURCE_ALREADY_EXISTS")
    (await admin.post(add, {**perm, "permission": "ALL"})).error(400)
    (await admin.post(add, {**perm, "resource_type": "workspace", "resource_pattern": "*"})).error(
        400
    )  # workspace grants are USE or MANAGE
    (await admin.post(add, {**perm, "role_id": 987654})).error(404)
    listed = (await admin.get(f"{V3}/roles/permissions/list", {"role_id": str(role_id)})).ok()
    assert listed == {"role_permissions": [rp]}
    (await admin.get(f"{V3}/roles/permissions/list", {"role_id": "987654"})).error(404)
    upd = f"{V3}/roles/permissions/update"
    changed = await admin.patch(upd, {"role_permission_id": rp["id"], "permission": "EDIT"})
    assert changed.ok()["role_permission"] == {**rp, "permission": "EDIT"}
    (await admin.patch(upd, {"role_permission_id": rp["id"], "permission": "x"})).error(400)
    (await admin.patch(upd, {"role_permission_id": 987654, "permission": "READ"})).error(404)

    user = await new_user()
    name = name_of(user)
    assign = f"{V3}/roles/assign"
    assignment = (await admin.post(assign, {"username": name, "role_id": role_id})).ok()
    assert set(assignment["assignment"]) == {"id", "user_id", "role_id"}
    assert assignment["assignment"]["role_id"] == role_id
    (await admin.post(assign, {"username": name, "role_id": role_id})).error(
        400, "RESOURCE_ALREADY_EXISTS"
    )
    (await admin.post(assign, {"username": "nobody", "role_id": role_id})).error(404)
    (await admin.post(assign, {"username": name, "role_id": 987654})).error(404)
    users = (await admin.get(f"{V3}/roles/users/list", {"role_id": str(role_id)})).ok()
    assert users == {"assignments": [assignment["assignment"]]}
    mine = (await user.get(f"{V3}/users/roles/list", {"username": name})).ok()["roles"]
    assert [r["id"] for r in mine] == [role_id]
    level = (
        await user.get(
            f"{V3}/users/permissions/get",
            {"username": name, "resource_type": "registered_model", "resource_id": "m1"},
        )
    ).ok()
    assert level == {"allowed": True, "permission": "EDIT"}

    unassign = f"{V3}/roles/unassign"
    assert (await admin.delete(unassign, {"username": name, "role_id": role_id})).ok() == {}
    (await admin.delete(unassign, {"username": name, "role_id": role_id})).error(404)
    remove = f"{V3}/roles/permissions/remove"
    assert (await admin.delete(remove, {"role_permission_id": rp["id"]})).ok() == {}
    (await admin.delete(remove, {"role_permission_id": rp["id"]})).error(404)
    assert (await admin.delete(f"{V3}/roles/delete", {"role_id": role_id})).ok() == {}
    (await admin.delete(f"{V3}/roles/delete", {"role_id": role_id})).error(404)
    (await admin.get(get, {"role_id": str(role_id)})).error(404)


async def test_a_workspace_admin_manages_roles_and_creates_users_but_is_no_admin(
    admin: As, new_user: Callable[[], Awaitable[As]]
) -> None:
    role = (await admin.post(f"{V3}/roles/create", {"workspace": "default", "name": "ws"})).ok()
    role_id = role["role"]["id"]
    ws_grant = {
        "role_id": role_id,
        "resource_type": "workspace",
        "resource_pattern": "*",
        "permission": "MANAGE",
    }
    (await admin.post(f"{V3}/roles/permissions/add", ws_grant)).ok()
    lead = await new_user()
    (await admin.post(f"{V3}/roles/assign", {"username": name_of(lead), "role_id": role_id})).ok()

    made = await settles_to(
        200, lambda: lead.post(f"{V3}/roles/create", {"workspace": "default", "name": "team"})
    )
    made.ok()
    (await lead.post(f"{V2}/users/create", {"username": "hired", "password": PASSWORD})).ok()
    (await lead.delete(f"{V2}/users/delete", {"username": "hired"})).error(403)
    (await lead.patch(f"{V2}/users/update-admin", {"username": "hired", "is_admin": True})).error(
        403
    )
    (await lead.get(f"{V2}/users/list")).error(403)


# ---------------------------------------------------------------- tokens


async def test_tokens_create_use_list_revoke(
    admin: As, new_user: Callable[[], Awaitable[As]], auth_client: TestClient[Any, Any]
) -> None:
    user = await new_user()
    name = name_of(user)
    created = await user.post(f"{OWN}/tokens/create", {"name": "ci", "expires_in_days": 30})
    body = created.ok()
    secret = body["secret"]
    assert secret.startswith("mgt_") and len(secret) == 47
    token = body["token"]
    assert token["name"] == "ci" and token["hint"] == secret[:10]
    assert token["expires_at"] > token["created_at"] and token["revoked_at"] is None
    assert secret not in str(token)

    by_bearer = As(auth_client, bearer(secret))
    assert (await by_bearer.get(f"{V2}/users/current")).ok()["user"]["username"] == name
    by_basic = As(auth_client, basic(name, secret))
    assert (await by_basic.get(f"{V2}/users/current")).ok()["user"]["username"] == name
    assert (await As(auth_client, basic(ADMIN, secret)).get(f"{V2}/users/current")).status == 401

    (await user.post(f"{OWN}/tokens/create", {"name": "ci"})).error(400, "RESOURCE_ALREADY_EXISTS")
    for bad in [
        {},
        {"name": ""},
        {"name": 5},
        {"name": "x", "expires_in_days": 0},
        {"name": "x", "expires_in_days": "soon"},
        {"name": "x", "expires_in_days": 10**6},
    ]:
        (await user.post(f"{OWN}/tokens/create", bad)).error(400, "INVALID_PARAMETER_VALUE")

    listed = (await user.get(f"{OWN}/tokens/list")).ok()["tokens"]
    assert [t["id"] for t in listed] == [token["id"]]
    assert "secret" not in listed[0] and secret not in str(listed)
    assert (await admin.get(f"{OWN}/tokens/list", {"username": name})).ok()["tokens"] == listed
    (await admin.get(f"{OWN}/tokens/list", {"username": "nobody"})).error(404)

    other = await new_user()
    (await other.post(f"{OWN}/tokens/revoke", {"token_id": token["id"]})).error(404)
    (await user.post(f"{OWN}/tokens/revoke", {"token_id": "x"})).error(400)
    revoked = (await user.post(f"{OWN}/tokens/revoke", {"token_id": token["id"]})).ok()
    assert revoked["token"]["revoked_at"] is not None
    (await user.post(f"{OWN}/tokens/revoke", {"token_id": token["id"]})).error(404)
    assert (await settles_to(401, lambda: by_bearer.get(f"{V2}/users/current"))).status == 401
    # The name is free again once the token is revoked.
    (await user.post(f"{OWN}/tokens/create", {"name": "ci"})).ok()


async def test_writes_are_audited(
    admin: As, auth_client: TestClient[Any, Any], new_user: Callable[[], Awaitable[As]]
) -> None:
    user = await new_user()
    name = name_of(user)
    secret = (await user.post(f"{OWN}/tokens/create", {"name": "t"})).ok()
    role = (await admin.post(f"{V3}/roles/create", {"workspace": "default", "name": "a"})).ok()
    await admin.post(
        f"{V3}/users/permissions/grant",
        {"username": name, "resource_type": "experiment", "resource_id": "1", "permission": "READ"},
    )
    (await admin.delete(f"{V3}/roles/delete", {"role_id": role["role"]["id"]})).ok()
    store = auth_client.app[SERVICE].auth
    assert store is not None
    entries, _ = await store.list_audit(100, None)
    by_action = {e.action: e for e in entries}
    for action in (
        "user.created",
        "token.created",
        "role.created",
        "grant.created",
        "role.deleted",
    ):
        assert action in by_action, (action, sorted(by_action))
    # The bootstrap admin's own (system) user.created entry is there too: pick this user's.
    (created,) = [e for e in entries if e.action == "user.created" and e.target_id == name]
    assert (created.actor, created.auth_method, created.target_id) == (ADMIN, "basic", name)
    assert created.client_addr == "127.0.0.1"
    assert by_action["token.created"].actor == name
    assert secret["secret"] not in str(entries) and PASSWORD not in str(entries)


# ---------------------------------------------------------------- bad input, never a 500

# One valid request per endpoint (after ``_world``); each field is then dropped and replaced
# with wrong values. Paths under /api/<V>/mlflow or the metricgate prefix.
WRONG_VALUES: list[Any] = [None, 0, -1, 2**64 - 1, 1.5, True, "", "x" * 5000, "\x00", [], {}, ["a"]]


def _templates(world: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    u, rid, rpid = world["username"], world["role_id"], world["role_permission_id"]
    return [
        ("POST", f"{V2}/users/create", {"username": "fuzzed", "password": PASSWORD}),
        ("GET", f"{V2}/users/get", {"username": u}),
        ("PATCH", f"{V2}/users/update-password", {"username": u, "password": PASSWORD + "x"}),
        ("PATCH", f"{V2}/users/update-admin", {"username": u, "is_admin": False}),
        ("DELETE", f"{V2}/users/delete", {"username": "fuzzed"}),
        ("GET", f"{V3}/users/permissions/list", {"username": u}),
        (
            "POST",
            f"{V3}/users/permissions/grant",
            {
                "username": u,
                "resource_type": "experiment",
                "resource_id": "5",
                "permission": "READ",
            },
        ),
        (
            "POST",
            f"{V3}/users/permissions/revoke",
            {"username": u, "resource_type": "experiment", "resource_id": "5"},
        ),
        (
            "GET",
            f"{V3}/users/permissions/get",
            {"username": u, "resource_type": "experiment", "resource_id": "5"},
        ),
        ("GET", f"{V3}/users/roles/list", {"username": u}),
        ("POST", f"{V3}/roles/create", {"workspace": "default", "name": "fz", "description": "d"}),
        ("GET", f"{V3}/roles/get", {"role_id": rid}),
        ("GET", f"{V3}/roles/list", {"workspace": "default"}),
        ("PATCH", f"{V3}/roles/update", {"role_id": rid, "name": "fz2", "description": "d"}),
        ("DELETE", f"{V3}/roles/delete", {"role_id": 987654}),
        (
            "POST",
            f"{V3}/roles/permissions/add",
            {
                "role_id": rid,
                "resource_type": "experiment",
                "resource_pattern": "9",
                "permission": "READ",
            },
        ),
        ("DELETE", f"{V3}/roles/permissions/remove", {"role_permission_id": 987654}),
        ("GET", f"{V3}/roles/permissions/list", {"role_id": rid}),
        (
            "PATCH",
            f"{V3}/roles/permissions/update",
            {"role_permission_id": rpid, "permission": "EDIT"},
        ),
        ("POST", f"{V3}/roles/assign", {"username": u, "role_id": rid}),
        ("DELETE", f"{V3}/roles/unassign", {"username": u, "role_id": rid}),
        ("GET", f"{V3}/roles/users/list", {"role_id": rid}),
        ("POST", f"{OWN}/tokens/create", {"name": "fz", "expires_in_days": 3}),
        ("GET", f"{OWN}/tokens/list", {"username": ADMIN}),
        ("POST", f"{OWN}/tokens/revoke", {"token_id": 987654}),
        (
            "POST",
            f"{OWN}/permissions/set",
            {
                "username": u,
                "resource_type": "experiment",
                "resource_id": "5",
                "permission": "EDIT",
            },
        ),
        (
            "POST",
            f"{OWN}/permissions/set",
            {
                "role_id": rid,
                "resource_type": "experiment",
                "resource_id": "5",
                "permission": "USE",
            },
        ),
        ("GET", f"{OWN}/permissions/who", {"resource_type": "experiment", "resource_id": "5"}),
        (
            "GET",
            f"{OWN}/audit",
            {"max_results": 5, "actor": ADMIN, "action": "user.created", "since": 0, "until": 1},
        ),
    ]


async def _send(who: As, method: str, path: str, fields: dict[str, Any]) -> Reply:
    if method == "GET":
        query = {k: v if isinstance(v, str) else str(v) for k, v in fields.items() if v is not None}
        return await who.get(path, query)
    if method == "DELETE":
        return await who.delete(path, fields)
    if method == "PATCH":
        return await who.api.request("PATCH", path, body=fields, headers=who.headers)
    return await who.post(path, fields)


async def test_bad_input_answers_4xx_never_500(
    admin: As, new_user: Callable[[], Awaitable[As]]
) -> None:
    user = await new_user()
    role = (await admin.post(f"{V3}/roles/create", {"workspace": "default", "name": "w"})).ok()
    rid = role["role"]["id"]
    rp = (
        await admin.post(
            f"{V3}/roles/permissions/add",
            {
                "role_id": rid,
                "resource_type": "experiment",
                "resource_pattern": "1",
                "permission": "READ",
            },
        )
    ).ok()
    world = {
        "username": name_of(user),
        "role_id": rid,
        "role_permission_id": rp["role_permission"]["id"],
    }
    checked = 0
    for method, path, valid in _templates(world):
        variants: list[dict[str, Any]] = []
        for field in valid:
            variants.append({k: v for k, v in valid.items() if k != field})
            variants.extend({**valid, field: wrong} for wrong in WRONG_VALUES)
        for fields in variants:
            reply = await _send(admin, method, path, fields)
            assert reply.status < 500, (method, path, fields, reply)
            if reply.status >= 400:
                reply.error(reply.status)  # MLflow's JSON error body
            checked += 1
        if method != "GET":
            for raw, ctype in [
                (b"[1, 2]", "application/json"),
                (b"{", "application/json"),
                (b"username=x", "application/x-www-form-urlencoded"),
            ]:
                reply = await admin.api.request(
                    method, path, data=raw, headers={**admin.headers, "Content-Type": ctype}
                )
                reply.error((400, 404))
    assert checked > 500


# ---------------------------------------------------------------- auth off


async def test_with_auth_off_every_auth_route_says_so(client: TestClient[Any, Any]) -> None:
    anyone = As(client, {})
    for method, path, fields in _templates(
        {"username": "u", "role_id": 1, "role_permission_id": 1}
    ):
        reply = await _send(anyone, method, path, fields)
        message = reply.error(404, "ENDPOINT_NOT_FOUND")
        assert "METRICGATE_AUTH" in message, (method, path)
    for path in (
        f"{V2}/users/current",
        f"{AJAX2}/users/current",
        f"{V2}/users/list",
        f"{AJAX3}/users/current/permissions",
    ):
        (await anyone.get(path)).error(404, "ENDPOINT_NOT_FOUND", "METRICGATE_AUTH=off")


async def test_int64_fields_of_auth_routes_refuse_out_of_range(admin: As) -> None:
    """The int64 guard (tests/api/test_int64_bounds.py) for fields that exist only with auth on:
    the out-of-range value is refused by the int parser itself, naming the field."""
    too_big, too_small = str(2**63), str(-(2**63) - 1)
    cases = [
        ("GET", f"{OWN}/audit", "max_results"),
        ("GET", f"{OWN}/audit", "since"),
        ("GET", f"{OWN}/audit", "until"),
        ("GET", f"{OWN}/approvals", "max_results"),
    ]
    for _method, path, field in cases:
        for text in (too_big, too_small):
            reply = await admin.get(path, {field: text})
            message = reply.error(400, "INVALID_PARAMETER_VALUE")
            assert f"'{field}'" in message and "integer" in message, (path, field, message)
    for literal in (too_big, too_small):  # as strings: the client cannot send the JSON number
        reply = await admin.post(f"{OWN}/tokens/create", {"name": "x", "expires_in_days": literal})
        message = reply.error(400, "INVALID_PARAMETER_VALUE")
        assert "'expires_in_days'" in message and "integer" in message, message
