"""The audit log and the permission admin routes with auth on, in process over real PostgreSQL
(docs/design-auth.md B7): ``GET /api/2.0/metricgate/audit`` (admins; newest first, keyset
pages, filters), ``permissions/set`` (upsert in place, MANAGE on the resource, ``*`` for
admins) and ``permissions/who``; auth writes commit with their entry; deletions of experiments,
runs, models and versions are recorded with who deleted them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.auth_support import (
    ADMIN_PASSWORD,
    PASSWORD,
    As,
    auth_settings,
    basic,
    bearer,
    user,
)

from metricgate.api.keys import SERVICE
from metricgate.config import Settings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.errors import Unavailable
from metricgate.stores.base import AuditEntry, AuthStore

OWN = "/api/2.0/metricgate"
V2 = "/api/2.0/mlflow"


@pytest.fixture
def settings(db_url: str, redis_client_url: str, tmp_path: Path) -> Settings:
    return auth_settings(db_url, redis_client_url, tmp_path / "artifacts")


@pytest.fixture
def store(client: TestClient[Any, Any]) -> AuthStore:
    auth = client.app[SERVICE].auth
    assert auth is not None
    return auth


@pytest.fixture
def admin(client: TestClient[Any, Any]) -> As:
    return As(client, basic("admin", ADMIN_PASSWORD))


async def audit_page(caller: As, **query: Any) -> dict[str, Any]:
    params = {k: str(v) for k, v in query.items()}
    return (await caller.get(f"{OWN}/audit", params, absolute=True)).ok()  # type: ignore[no-any-return]


async def latest(store: AuthStore, action: str) -> AuditEntry:
    found, _ = await store.list_audit(1, None, action=action)
    assert found, action
    return found[0]


# ---------------------------------------------------------------- the audit log


async def test_the_audit_log_pages_newest_first_and_filters(
    client: TestClient[Any, Any], store: AuthStore, admin: As
) -> None:
    start = int(time.time() * 1000) - 1
    for name in ("ann", "ben", "cid"):
        body = {"username": name, "password": PASSWORD}
        (await admin.post(f"{V2}/users/create", body, absolute=True)).ok()
    ann = As(client, basic("ann", PASSWORD))
    (await ann.post(f"{OWN}/tokens/create", {"name": "ci"}, absolute=True)).ok()

    everything = await audit_page(admin)
    actions = [e["action"] for e in everything["entries"]]
    # The oldest: the bootstrap admin, made by the server itself at start.
    assert actions == ["token.created"] + ["user.created"] * 4
    bootstrap = everything["entries"][-1]
    assert (bootstrap["target_id"], bootstrap["actor"], bootstrap["auth_method"]) == (
        "admin",
        None,
        "system",
    )
    assert bootstrap["details"]["via"] == "bootstrap" and bootstrap["request_id"] is None
    assert "next_page_token" not in everything
    first = everything["entries"][0]
    assert (first["actor"], first["auth_method"], first["client_addr"]) == (
        "ann",
        "basic",
        "127.0.0.1",
    )
    assert set(first) == {
        "id", "timestamp", "actor_id", "actor", "auth_method", "client_addr", "action",
        "target_type", "target_id", "details", "request_id",
    }  # fmt: skip
    assert first["timestamp"] >= start

    # Keyset pages: every entry once, newest first.
    seen: list[int] = []
    token: str | None = None
    while True:
        page = await audit_page(admin, max_results=3, **({"page_token": token} if token else {}))
        seen.extend(e["id"] for e in page["entries"])
        token = page.get("next_page_token")
        if token is None:
            break
    assert seen == [e["id"] for e in everything["entries"]]

    by_admin = await audit_page(admin, actor="admin")
    assert [e["target_id"] for e in by_admin["entries"]] == ["cid", "ben", "ann"]
    assert len((await audit_page(admin, action="token.created"))["entries"]) == 1
    assert len((await audit_page(admin, since=start))["entries"]) == 4
    before_start = (await audit_page(admin, until=start))["entries"]
    assert [e["id"] for e in before_start] == [bootstrap["id"]]
    assert (await audit_page(admin, since=start + 3_600_000))["entries"] == []

    # Admins only; bad input is a 400, never a 500.
    (await ann.get(f"{OWN}/audit", absolute=True)).error(403, "PERMISSION_DENIED")
    for query in (
        {"max_results": "0"},
        {"max_results": "1001"},
        {"max_results": "x"},
        {"since": "-1"},
        {"until": str(2**63 - 1)},
        {"page_token": "garbage!"},
        {"actor": "x" * 300},
    ):
        (await admin.get(f"{OWN}/audit", query, absolute=True)).error(400)
    ajax = await admin.get("/ajax-api/2.0/metricgate/audit", absolute=True)
    assert ajax.ok()["entries"]


async def test_an_auth_write_and_its_entry_commit_together(
    client: TestClient[Any, Any], store: AuthStore, admin: As
) -> None:
    body = {"username": "dana", "password": PASSWORD}
    # Not from a trusted proxy: the client's own id is ignored, the server's is answered.
    picked = {"X-Request-Id": "client-picked"}
    reply = await admin.post(f"{V2}/users/create", body, absolute=True, headers=picked)
    reply.ok()
    request_id = reply.headers["X-Request-Id"]
    assert len(request_id) == 32 and request_id != "client-picked"
    created = await latest(store, "user.created")
    assert (created.actor, created.target_id) == ("admin", "dana")
    assert created.request_id == request_id  # the entry is filed under its request
    # A refused write leaves no entry; its error answer names its own request all the same.
    refused = await admin.post(f"{V2}/users/create", body, absolute=True)
    refused.error(400)
    assert refused.headers["X-Request-Id"] not in ("", request_id)
    (await admin.delete(f"{V2}/users/delete", {"username": "nobody"}, absolute=True)).error(404)
    entries, _ = await store.list_audit(100, None, actor="admin")
    assert [e.action for e in entries] == ["user.created"]


# ---------------------------------------------------------------- permissions/set and who


async def test_permissions_set_upserts_and_who_lists_the_holders(
    client: TestClient[Any, Any], store: AuthStore, admin: As
) -> None:
    owner = await user(client, store, "owner")
    await user(client, store, "bob")
    reader = As(client, basic("bob", PASSWORD))
    experiment_id = await owner.create_experiment()  # the creator holds MANAGE
    grant = {"resource_type": "experiment", "resource_id": experiment_id}

    first = await owner.post(
        f"{OWN}/permissions/set", {**grant, "username": "bob", "permission": "READ"}, absolute=True
    )
    assert first.ok() == {
        "permission": {"username": "bob", **grant, "permission": "READ"},
        "previous_permission": None,
    }
    again = await owner.post(
        f"{OWN}/permissions/set", {**grant, "username": "bob", "permission": "EDIT"}, absolute=True
    )
    assert again.ok()["previous_permission"] == "READ"
    rows = (await admin.get("/api/3.0/mlflow/users/permissions/list", {"username": "bob"},
                            absolute=True)).ok()["permissions"]  # fmt: skip
    assert [(r["resource_pattern"], r["permission"]) for r in rows] == [(experiment_id, "EDIT")]

    role = (
        await admin.post(
            "/api/3.0/mlflow/roles/create", {"name": "team", "workspace": "default"}, absolute=True
        )
    ).ok()["role"]
    await admin.post(
        "/api/3.0/mlflow/roles/assign", {"username": "bob", "role_id": role["id"]}, absolute=True
    )
    # A role is shared: managing the resource is not enough to change what the role grants.
    role_read = {**grant, "role_id": role["id"], "permission": "READ"}
    (await owner.post(f"{OWN}/permissions/set", role_read, absolute=True)).error(403)
    by_role = await admin.post(f"{OWN}/permissions/set", role_read, absolute=True)
    assert by_role.ok()["permission"]["role_id"] == role["id"]
    by_role_again = await admin.post(
        f"{OWN}/permissions/set",
        {**grant, "role_id": role["id"], "permission": "USE"},
        absolute=True,
    )
    assert by_role_again.ok()["previous_permission"] == "READ"
    assert (
        by_role_again.json["permission"]["role_permission_id"]
        == by_role.json["permission"]["role_permission_id"]
    )

    who = (await owner.get(f"{OWN}/permissions/who", grant, absolute=True)).ok()
    assert sorted((u["username"], u["permission"]) for u in who["users"]) == [
        ("bob", "EDIT"),
        ("owner", "MANAGE"),
    ]
    assert [(r["role_name"], r["permission"], r["usernames"]) for r in who["roles"]] == [
        ("team", "USE", ["bob"])
    ]
    assert who["default_permission"] == "READ" and "admins" in who["note"].lower()
    (await admin.get(f"{OWN}/permissions/who", grant, absolute=True)).ok()

    # Without MANAGE on it: 403, for set and who alike; '*' is for admins.
    body = {**grant, "username": "bob", "permission": "MANAGE"}
    (await reader.post(f"{OWN}/permissions/set", body, absolute=True)).error(403)
    (await reader.get(f"{OWN}/permissions/who", grant, absolute=True)).error(403)
    star = {"resource_type": "experiment", "resource_id": "*", "username": "bob"}
    (await owner.post(f"{OWN}/permissions/set", {**star, "permission": "READ"},
                      absolute=True)).error(403)  # fmt: skip
    (await admin.post(f"{OWN}/permissions/set", {**star, "permission": "READ"},
                      absolute=True)).ok()  # fmt: skip

    # Exactly one holder; a user's grant is not a workspace grant.
    for bad in (
        {**grant, "permission": "READ"},
        {**grant, "username": "bob", "role_id": role["id"], "permission": "READ"},
        {**grant, "username": "bob", "permission": "NO_PERMISSIONS"},
        {"resource_type": "workspace", "resource_id": "*", "username": "bob", "permission": "USE"},
    ):
        (await admin.post(f"{OWN}/permissions/set", bad, absolute=True)).error(400)
    missing = {**grant, "username": "nobody", "permission": "READ"}
    (await admin.post(f"{OWN}/permissions/set", missing, absolute=True)).error(404)

    entries, _ = await store.list_audit(100, None, action="grant.set")
    assert [(e.actor, e.target_type, e.details["permission"], e.details["old"])
            for e in reversed(entries)] == [
        ("owner", "user", "READ", None),
        ("owner", "user", "EDIT", "READ"),
        ("admin", "role", "READ", None),
        ("admin", "role", "USE", "READ"),
        ("admin", "user", "READ", None),
    ]  # fmt: skip


# ---------------------------------------------------------------- deletions


async def test_deletions_record_who_deleted(client: TestClient[Any, Any], store: AuthStore) -> None:
    owner = await user(client, store, "deleter")
    experiment_id = await owner.create_experiment()
    run_id = await owner.new_run_id(experiment_id)
    await owner.create_registered_model("doomed")
    await owner.create_model_version("doomed", "s3://bucket/m")
    (await owner.delete("/model-versions/delete", {"name": "doomed", "version": "1"})).ok()
    (await owner.delete("/registered-models/delete", {"name": "doomed"})).ok()
    (await owner.post("/runs/delete", {"run_id": run_id})).ok()
    (await owner.post("/experiments/delete", {"experiment_id": experiment_id})).ok()

    entries, _ = await store.list_audit(100, None, actor="deleter")
    assert [(e.action, e.target_type, e.target_id) for e in reversed(entries)] == [
        ("version.deleted", "model_version", "doomed/1"),
        ("model.deleted", "registered_model", "doomed"),
        ("run.deleted", "run", run_id),
        ("experiment.deleted", "experiment", experiment_id),
    ]
    assert all(e.auth_method == "basic" and e.client_addr == "127.0.0.1" for e in entries)
    # A delete that fails records nothing.
    (await owner.post("/runs/delete", {"run_id": "f" * 32})).error((403, 404))
    assert len((await store.list_audit(100, None, actor="deleter"))[0]) == 4


async def test_artifact_deletes_are_audited_before_the_bytes_go(
    client: TestClient[Any, Any], store: AuthStore, tmp_path: Path
) -> None:
    owner = await user(client, store, "pruner")
    experiment_id = await owner.create_experiment()
    run_id = await owner.new_run_id(experiment_id)
    base = "/api/2.0/mlflow-artifacts/artifacts"
    path = f"{experiment_id}/{run_id}/artifacts/a.txt"
    (await owner.request("PUT", f"{base}/{path}", data=b"hello", absolute=True)).ok()
    deleted = await owner.request("DELETE", f"{base}/{path}", absolute=True)
    deleted.ok()
    intent = await latest(store, "artifact.deleted")
    assert (intent.actor, intent.auth_method, intent.client_addr) == (
        "pruner",
        "basic",
        "127.0.0.1",
    )
    assert (intent.target_type, intent.target_id, intent.request_id) == (
        "artifact", path, deleted.headers["X-Request-Id"],
    )  # fmt: skip
    assert intent.details == {
        "path": path, "experiment_id": experiment_id, "run_id": run_id, "intent": True,
    }  # fmt: skip

    # A delete that fails after its intent was written says so in a second entry.
    artifacts = client.app[SERVICE].artifacts
    (await owner.request("PUT", f"{base}/{path}", data=b"again", absolute=True)).ok()

    async def broken(_path: str) -> None:
        raise Unavailable("The artifact store cannot be reached; retry later")

    real, artifacts.delete = artifacts.delete, broken  # type: ignore[method-assign]
    try:
        (await owner.request("DELETE", f"{base}/{path}", absolute=True)).error(503)
    finally:
        artifacts.delete = real  # type: ignore[method-assign]
    failed = await latest(store, "artifact.delete_failed")
    assert (failed.actor, failed.target_id, failed.details["error"]) == (
        "pruner",
        path,
        "Unavailable",
    )
    assert (await latest(store, "artifact.deleted")).id == failed.id - 1  # its intent

    # A reference lives in the database: its delete and entry commit together.
    external = tmp_path / "artifacts" / "external" / "obj.bin"  # under the root: referable
    external.parent.mkdir(parents=True, exist_ok=True)
    external.write_bytes(b"0123456789")
    refs = f"{OWN}/artifact-references"
    ref = {"run_id": run_id, "path": "refs/obj.bin", "uri": external.as_uri(), "size": 10}
    (await owner.post(refs, ref, absolute=True)).ok()
    query = {"run_id": run_id, "path": "refs/obj.bin"}
    (await owner.request("DELETE", refs, params=query, absolute=True)).ok()
    dropped = await latest(store, "artifact_reference.deleted")
    assert (dropped.actor, dropped.auth_method, dropped.target_type) == (
        "pruner",
        "basic",
        "artifact",
    )
    assert dropped.target_id == f"{experiment_id}/{run_id}/artifacts/refs/obj.bin"
    assert dropped.details == {"run_id": run_id, "path": "refs/obj.bin", "uri": ref["uri"]}


async def test_a_webhook_delete_is_audited(
    client: TestClient[Any, Any], store: AuthStore, admin: As
) -> None:
    hooks = f"{OWN}/webhooks"
    body = {"url": "http://127.0.0.1:9/hook?token=s3cret", "events": ["model_version.created"],
            "model_name": "m", "active": False}  # fmt: skip
    hook_id = (await admin.post(hooks, body, absolute=True)).ok()["webhook"]["id"]
    (await admin.request("DELETE", f"{hooks}/{hook_id}", absolute=True)).ok()
    entry = await latest(store, "webhook.deleted")
    assert (entry.actor, entry.auth_method, entry.client_addr) == ("admin", "basic", "127.0.0.1")
    assert (entry.target_type, entry.target_id) == ("webhook", hook_id)
    assert entry.details == {
        "url_host": "127.0.0.1", "events": ["model_version.created"], "model_name": "m",
    }  # fmt: skip
    (await admin.request("DELETE", f"{hooks}/{hook_id}", absolute=True)).error(404)
    assert len((await store.list_audit(10, None, action="webhook.deleted"))[0]) == 1


async def test_approval_and_policy_entries_say_how_and_from_where(
    client: TestClient[Any, Any], store: AuthStore, admin: As
) -> None:
    alice = await user(client, store, "alice")
    await user(client, store, "bob")
    await store.grant_user(
        "bob", ResourceType.REGISTERED_MODEL, "m", Permission.EDIT, replace=False
    )
    bob_token = (await As(client, basic("bob")).post(f"{OWN}/tokens/create", {"name": "ci"},
                                                      absolute=True)).ok()["secret"]  # fmt: skip
    bob = As(client, bearer(bob_token))
    policy = {"model_pattern": "m", "kind": "stage", "target": "Production", "approvals": 1}
    policy_id = (await admin.post(f"{OWN}/approval-policies", policy, absolute=True)).ok()[
        "approval_policy"
    ]["id"]
    await alice.create_registered_model("m")
    await alice.create_model_version("m", "s3://bucket/m")
    gated = {"name": "m", "version": "1", "stage": "Production"}
    refused = await alice.post("/model-versions/transition-stage", gated)
    refused.error(409)
    request_id = refused.json["approval_request_id"]
    (await bob.post(f"{OWN}/approvals/{request_id}/approve", {}, absolute=True)).ok()
    (await admin.delete(f"{OWN}/approval-policies/{policy_id}", absolute=True)).ok()

    entries, _ = await store.list_audit(100, None)
    steps = [e for e in reversed(entries) if "approval" in e.action]
    assert [(e.action, e.actor, e.auth_method, e.client_addr) for e in steps] == [
        ("approval_policy.created", "admin", "basic", "127.0.0.1"),
        ("approval_requested", "alice", "basic", "127.0.0.1"),
        ("approval_voted", "bob", "token", "127.0.0.1"),
        ("approval_applied", "bob", "token", "127.0.0.1"),
        ("approval_policy.deleted", "admin", "basic", "127.0.0.1"),
    ]
    assert all(e.actor_id is not None and e.request_id for e in steps)
