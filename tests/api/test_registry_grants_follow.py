"""With access control on, registered-model grants follow the model (design-auth B2): a DENY on
``m`` still holds once ``m`` is renamed ``m2``, at once in the process that renamed it; a rename
onto a name with grants set in advance is refused (409); a delete removes the model's grants,
so a new model under the name inherits none. Also the approvals list filtered in the SQL (full
pages for a caller denied some models) and a version delete closing its pending approval
requests as superseded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.auth_support import ADMIN_PASSWORD, auth_settings, basic, store_user
from tests.api.conftest import Api

from metricgate.api.keys import SERVICE
from metricgate.config import Settings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.stores.base import AuthStore

MODEL = ResourceType.REGISTERED_MODEL
APPROVALS = "/api/2.0/metricgate/approvals"
POLICIES = "/api/2.0/metricgate/approval-policies"


@pytest.fixture
def settings(db_url: str, redis_client_url: str, tmp_path: Path) -> Settings:
    return auth_settings(db_url, redis_client_url, tmp_path / "artifacts")


ADMIN = basic("admin", ADMIN_PASSWORD)
BOB = basic("bob")


@pytest.fixture
async def store(client: TestClient[Any, Any]) -> AuthStore:
    auth: AuthStore | None = client.app[SERVICE].auth
    assert auth is not None
    for name in ("alice", "bob"):
        await store_user(auth, name)
    return auth


async def _get(api: Api, name: str, headers: dict[str, str]) -> Any:
    return await api.get("/registered-models/get", {"name": name}, headers=headers)


async def test_a_deny_follows_the_renamed_model(api: Api, store: AuthStore) -> None:
    (await api.post("/registered-models/create", {"name": "m"}, headers=ADMIN)).ok()
    await store.grant_user("bob", MODEL, "m", Permission.DENY, replace=False)
    (await _get(api, "m", BOB)).error(403, "PERMISSION_DENIED")
    renamed = {"name": "m", "new_name": "m2"}
    (await api.post("/registered-models/rename", renamed, headers=ADMIN)).ok()
    (await _get(api, "m2", BOB)).error(403, "PERMISSION_DENIED")
    search = await api.get("/registered-models/search", {}, headers=BOB)
    assert search.ok().get("registered_models", []) == []
    # A new model under the old name inherits nothing: bob reads it (the default, READ).
    (await api.post("/registered-models/create", {"name": "m"}, headers=ADMIN)).ok()
    (await _get(api, "m", BOB)).ok()
    # A DENY set on a name no model has must not vanish when a model is renamed to it: 409
    # naming the problem, grants as they were; once the admin revokes it, the rename is allowed.
    await store.grant_user("bob", MODEL, "m3", Permission.DENY, replace=False)
    onto = {"name": "m", "new_name": "m3"}
    message = (await api.post("/registered-models/rename", onto, headers=ADMIN)).error(
        409, "RESOURCE_CONFLICT", "access grants are already set on the name 'm3'"
    )
    assert "revoke" in message
    held = {(r.resource_pattern, r.permission) for r in await store.user_permission_rows("bob")}
    assert held == {("m2", Permission.DENY), ("m3", Permission.DENY)}
    (await _get(api, "m", BOB)).ok()
    revoke = {"username": "bob", "resource_type": "registered_model", "resource_id": "m3"}
    revoked = await api.post(
        "/api/3.0/mlflow/users/permissions/revoke", revoke, absolute=True, headers=ADMIN
    )
    revoked.ok()
    (await api.post("/registered-models/rename", onto, headers=ADMIN)).ok()
    (await _get(api, "m3", BOB)).ok()


async def test_a_creator_keeps_managing_its_renamed_model(api: Api, store: AuthStore) -> None:
    alice = basic("alice")
    (await api.post("/registered-models/create", {"name": "a"}, headers=alice)).ok()
    (
        await api.post("/registered-models/rename", {"name": "a", "new_name": "b"}, headers=alice)
    ).ok()
    # Deleting needs MANAGE: the creator's grant moved to the new name.
    (await api.delete("/registered-models/delete", {"name": "b"}, headers=alice)).ok()
    assert [r for r in await store.user_permission_rows("alice") if r.resource_type is MODEL] == []


async def test_a_delete_removes_the_models_grants(api: Api, store: AuthStore) -> None:
    (await api.post("/registered-models/create", {"name": "d"}, headers=ADMIN)).ok()
    await store.grant_user("bob", MODEL, "d", Permission.EDIT, replace=False)
    update = {"name": "d", "description": "bob's"}
    (await api.patch("/registered-models/update", update, headers=BOB)).ok()
    (await api.delete("/registered-models/delete", {"name": "d"}, headers=ADMIN)).ok()
    assert await store.user_permission_rows("bob") == []
    (await api.post("/registered-models/create", {"name": "d"}, headers=ADMIN)).ok()
    (await api.patch("/registered-models/update", update, headers=BOB)).error(
        403, "PERMISSION_DENIED"
    )


async def _pending(api: Api, model: str, versions: int) -> None:
    (await api.post("/registered-models/create", {"name": model}, headers=ADMIN)).ok()
    policy = {
        "model_pattern": model,
        "kind": "stage",
        "target": "Production",
        "approvals": 1,
        "approver_permission": "EDIT",
    }
    (await api.post(POLICIES, policy, absolute=True, headers=ADMIN)).ok()
    for i in range(1, versions + 1):
        body = {"name": model, "source": f"s3://bucket/{model}{i}"}
        (await api.post("/model-versions/create", body, headers=ADMIN)).ok()
        stage = {"name": model, "version": str(i), "stage": "Production"}
        reply = await api.post("/model-versions/transition-stage", stage, headers=basic("alice"))
        reply.error(409, "RESOURCE_CONFLICT")


async def test_the_approvals_list_pages_are_full_for_a_caller_denied_some(
    api: Api, store: AuthStore
) -> None:
    for name in ("open", "hidden"):
        await store.grant_user("alice", MODEL, name, Permission.EDIT, replace=False)
    await _pending(api, "open", 3)
    await _pending(api, "hidden", 3)  # the newest requests, which bob may not see
    await store.grant_user("bob", MODEL, "hidden", Permission.DENY, replace=False)
    seen: list[str] = []
    token = None
    while True:
        query = {"max_results": "2", **({"page_token": token} if token else {})}
        page = (await api.get(APPROVALS, query, absolute=True, headers=BOB)).ok()
        found = page["approval_requests"]
        assert {r["model_name"] for r in found} <= {"open"}
        seen += [r["version"] for r in found]
        token = page.get("next_page_token")
        if not token:
            break
        assert len(found) == 2
    assert seen == ["3", "2", "1"]
    everything = (await api.get(APPROVALS, {}, absolute=True, headers=ADMIN)).ok()
    assert len(everything["approval_requests"]) == 6


async def test_deleting_a_version_supersedes_its_pending_requests(
    api: Api, store: AuthStore
) -> None:
    await store.grant_user("alice", MODEL, "v", Permission.EDIT, replace=False)
    await _pending(api, "v", 2)
    listed = (await api.get(APPROVALS, {"state": "pending"}, absolute=True, headers=ADMIN)).ok()
    by_version = {r["version"]: r["id"] for r in listed["approval_requests"]}
    (await api.delete("/model-versions/delete", {"name": "v", "version": "1"}, headers=ADMIN)).ok()
    gone = (await api.get(f"{APPROVALS}/{by_version['1']}", {}, absolute=True, headers=ADMIN)).ok()
    assert gone["approval_request"]["state"] == "superseded"
    assert gone["approval_request"]["closed_at"] is not None
    kept = (await api.get(f"{APPROVALS}/{by_version['2']}", {}, absolute=True, headers=ADMIN)).ok()
    assert kept["approval_request"]["state"] == "pending"
    history = await api.get(
        "/api/2.0/metricgate/registry/history", {"name": "v", "version": "1"},
        absolute=True, headers=ADMIN,
    )  # fmt: skip
    types = [e["event_type"] for e in history.ok()["events"]]
    assert types[:2] == ["model_version.approval_superseded", "model_version.deleted"]


GRANT = "/api/3.0/mlflow/users/permissions/grant"
REVOKE = "/api/3.0/mlflow/users/permissions/revoke"
SET = "/api/2.0/metricgate/permissions/set"


async def test_only_an_admin_grants_on_a_model_name_no_model_has(
    api: Api, store: AuthStore
) -> None:
    """Bob holds MANAGE on the name ``gone`` with no model under it: the state a grant write
    sees when its model was deleted after the access check passed it (the check runs outside
    the name lock). A non-admin's grant there would be a grant set in advance, by someone who
    manages nothing there, that a later model of the name inherits: refused, 403, or 404 where
    the caller holds MANAGE on every name through ``*``; an admin may still set it."""
    (await api.post("/registered-models/create", {"name": "kept"}, headers=ADMIN)).ok()
    for name in ("gone", "kept"):
        await store.grant_user("bob", MODEL, name, Permission.MANAGE, replace=False)
    await store_user(store, "carol")
    role = await store.create_role("model-managers", "default", None)
    await store.add_role_permission(role.id, MODEL, "*", Permission.MANAGE)
    await store.assign_role("carol", role.id)

    def body(name: str, **extra: str) -> dict[str, str]:
        return {"username": "alice", "resource_type": "registered_model", "resource_id": name,
                **extra}  # fmt: skip

    async def post(path: str, payload: dict[str, str], who: dict[str, str]) -> Any:
        return await api.post(path, payload, absolute=True, headers=who)

    read = {"permission": "READ"}
    (await post(GRANT, body("gone", **read), BOB)).error(403, "PERMISSION_DENIED")
    (await post(SET, body("gone", **read), BOB)).error(403, "PERMISSION_DENIED")
    (await post(GRANT, body("gone", **read), basic("carol"))).error(
        404, "RESOURCE_DOES_NOT_EXIST", "Registered Model with name=gone not found"
    )
    assert await store.user_permission_rows("alice") == []
    # An admin pre-sets grants on a name; the manager of a model that exists grants as before.
    (await post(GRANT, body("gone", **read), ADMIN)).ok()
    (await post(GRANT, body("kept", **read), BOB)).ok()
    held = {(r.resource_pattern, r.permission) for r in await store.user_permission_rows("alice")}
    assert held == {("gone", Permission.READ), ("kept", Permission.READ)}
    # Nor may bob take the admin's grant on the name away.
    (await post(REVOKE, body("gone"), BOB)).error(403, "PERMISSION_DENIED")
    (await post(REVOKE, body("kept"), BOB)).ok()
