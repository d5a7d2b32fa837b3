"""Registry approval policies over REST with access control on (docs/design-auth.md B6): the
409 a gated transition or alias answers, votes (self-approval refused, the policy's level
needed, a rejection closes), the change applied at quorum exactly once under concurrent
approvals, the history, the admin-only policy routes, bad input, and auth off refusing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.api.auth_support import ADMIN_PASSWORD, auth_settings, basic, store_user
from tests.api.conftest import Api

from metricgate.api.app import create_app
from metricgate.api.keys import SERVICE
from metricgate.config import Settings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.stores.base import AuthStore

OWN = "/api/2.0/metricgate"
POLICIES = f"{OWN}/approval-policies"
APPROVALS = f"{OWN}/approvals"
REVIEWERS = ["bob", "carol", "dave", "erin", "frank"]


@pytest.fixture
def settings(db_url: str, redis_client_url: str, tmp_path: Path) -> Settings:
    return auth_settings(db_url, redis_client_url, tmp_path / "artifacts")


ADMIN = basic("admin", ADMIN_PASSWORD)


@pytest.fixture
async def users(client: TestClient[Any, Any]) -> AuthStore:
    """alice (who registers the model), reviewers with EDIT on it, and mallory with READ."""
    store: AuthStore | None = client.app[SERVICE].auth
    assert store is not None
    model = ResourceType.REGISTERED_MODEL
    await store_user(store, "alice")
    await store_user(store, "mallory", ((model, "m", Permission.READ),))
    for name in REVIEWERS:
        await store_user(store, name, ((model, "m", Permission.EDIT),))
    return store


async def _setup(api: Api, users: AuthStore, approvals: int = 2, target: str = "Production") -> int:
    del users
    alice = basic("alice")
    (await api.post("/registered-models/create", {"name": "m"}, headers=alice)).ok()
    for i in (1, 2):
        body = {"name": "m", "source": f"s3://bucket/m{i}"}
        (await api.post("/model-versions/create", body, headers=alice)).ok()
    policy = {
        "model_pattern": "m",
        "kind": "stage",
        "target": target,
        "approvals": approvals,
        "approver_permission": "EDIT",
    }
    created = (await api.post(POLICIES, policy, absolute=True, headers=ADMIN)).ok()
    return int(created["approval_policy"]["id"])


async def _transition(api: Api, version: str = "1", **extra: Any) -> Any:
    body = {"name": "m", "version": version, "stage": "Production", **extra}
    return await api.post("/model-versions/transition-stage", body, headers=basic("alice"))


async def _stage(api: Api, version: str = "1") -> str:
    reply = await api.get("/model-versions/get", {"name": "m", "version": version}, headers=ADMIN)
    return str(reply.ok()["model_version"]["current_stage"])


async def _vote(api: Api, request_id: int, who: str, decision: str = "approve", **body: Any) -> Any:
    path = f"{APPROVALS}/{request_id}/{decision}"
    return await api.post(
        path, body, absolute=True, headers=ADMIN if who == "admin" else basic(who)
    )


async def test_a_gated_transition_answers_409_naming_the_request(
    api: Api, users: AuthStore
) -> None:
    policy_id = await _setup(api, users)
    reply = await _transition(api)
    message = reply.error(409, "RESOURCE_CONFLICT")
    body = reply.json
    request_id = body["approval_request_id"]
    assert body["approval_policy_id"] == policy_id
    assert message == (
        "Transition of model 'm' version 1 to stage 'Production' needs 2 approvals by users with "
        f"EDIT on the model (approval policy {policy_id}). Approval request {request_id} is "
        f"pending: metricgate approvals approve {request_id}"
    )
    assert await _stage(api) == "None"
    # Asking again joins the pending request.
    assert (await _transition(api)).json["approval_request_id"] == request_id
    # No policy on Staging: as stock.
    staged = await api.post(
        "/model-versions/transition-stage",
        {"name": "m", "version": "2", "stage": "Staging"},
        headers=basic("alice"),
    )
    assert staged.ok()["model_version"]["current_stage"] == "Staging"
    shown = (await api.get(f"{APPROVALS}/{request_id}", absolute=True, headers=basic("bob"))).ok()
    assert shown["approval_request"]["state"] == "pending"
    assert shown["approval_request"]["requester"] == "alice"


async def test_votes_self_approval_level_and_quorum(api: Api, users: AuthStore) -> None:
    await _setup(api, users)
    request_id = (await _transition(api, archive_existing_versions=True)).json[
        "approval_request_id"
    ]
    (await _vote(api, request_id, "alice")).error(403, "PERMISSION_DENIED", "your own approval")
    (await _vote(api, request_id, "mallory")).error(403, "PERMISSION_DENIED", "needs EDIT")
    first = (await _vote(api, request_id, "bob", comment="looks good")).ok()["approval_request"]
    assert (first["state"], first["approvals"]) == ("pending", 1)
    (await _vote(api, request_id, "bob")).error(409, "RESOURCE_CONFLICT", "already voted")
    assert await _stage(api) == "None"
    done = (await _vote(api, request_id, "admin")).ok()["approval_request"]  # admins qualify
    assert done["state"] == "applied" and done["applied_event_id"]
    assert await _stage(api) == "Production"
    (await _vote(api, request_id, "carol")).error(409, "RESOURCE_CONFLICT", "applied")

    history = await api.get(
        f"{OWN}/registry/history", {"name": "m", "version": "1"}, absolute=True, headers=ADMIN
    )
    events = [(e["event_type"], e["actor"]) for e in reversed(history.ok()["events"])]
    assert events[-5:] == [
        ("model_version.approval_requested", "alice"),
        ("model_version.approval_voted", "bob"),
        ("model_version.approval_voted", "admin"),
        ("model_version.stage_changed", "alice"),
        ("model_version.approval_applied", "admin"),
    ]


async def test_a_rejection_closes_and_the_requester_can_cancel(api: Api, users: AuthStore) -> None:
    await _setup(api, users)
    request_id = (await _transition(api)).json["approval_request_id"]
    rejected = (await _vote(api, request_id, "carol", "reject", comment="no")).ok()
    assert rejected["approval_request"]["state"] == "rejected"
    assert await _stage(api) == "None"
    again = (await _transition(api)).json["approval_request_id"]
    assert again != request_id
    (await api.post(f"{APPROVALS}/{again}/cancel", absolute=True, headers=basic("bob"))).error(
        403, "PERMISSION_DENIED"
    )
    cancelled = await api.post(f"{APPROVALS}/{again}/cancel", absolute=True, headers=basic("alice"))
    assert cancelled.ok()["approval_request"]["state"] == "cancelled"
    listed = await api.get(APPROVALS, {"model": "m"}, absolute=True, headers=basic("bob"))
    assert [r["state"] for r in listed.ok()["approval_requests"]] == ["cancelled", "rejected"]
    pending = await api.get(APPROVALS, {"state": "pending"}, absolute=True, headers=ADMIN)
    assert pending.ok()["approval_requests"] == []


async def test_concurrent_approvals_apply_once(api: Api, users: AuthStore) -> None:
    await _setup(api, users)
    request_id = (await _transition(api)).json["approval_request_id"]
    replies = await asyncio.gather(*(_vote(api, request_id, who) for who in REVIEWERS))
    assert sorted(r.status for r in replies) == [200, 200, 409, 409, 409]
    assert await _stage(api) == "Production"
    history = await api.get(
        f"{OWN}/registry/history", {"name": "m", "version": "1"}, absolute=True, headers=ADMIN
    )
    types = [e["event_type"] for e in history.ok()["events"]]
    assert types.count("model_version.approval_applied") == 1
    assert types.count("model_version.stage_changed") == 1


async def test_alias_policy_gates_set_alias(api: Api, users: AuthStore) -> None:
    await _setup(api, users)
    policy = {"model_pattern": "*", "kind": "alias", "target": "champion", "approvals": 1}
    created = (await api.post(POLICIES, policy, absolute=True, headers=ADMIN)).ok()
    assert created["approval_policy"]["approver_permission"] == "EDIT"
    body = {"name": "m", "alias": "champion", "version": "2"}
    reply = await api.post("/registered-models/alias", body, headers=basic("alice"))
    reply.error(409, "RESOURCE_CONFLICT", "Setting alias 'champion' of model 'm' to version 2")
    (await _vote(api, reply.json["approval_request_id"], "dave")).ok()
    got = await api.get(
        "/registered-models/alias", {"name": "m", "alias": "champion"}, headers=ADMIN
    )
    assert got.ok()["model_version"]["version"] == "2"


async def test_policies_are_for_admins(api: Api, users: AuthStore) -> None:
    policy_id = await _setup(api, users)
    listed = (await api.get(POLICIES, absolute=True, headers=ADMIN)).ok()["approval_policies"]
    assert [(p["id"], p["created_by"], p["target"]) for p in listed] == [
        (policy_id, "admin", "Production")
    ]
    body = {"model_pattern": "*", "kind": "stage", "target": "Staging", "approvals": 1}
    (await api.post(POLICIES, body, absolute=True, headers=basic("bob"))).error(403)
    (await api.get(POLICIES, absolute=True, headers=basic("bob"))).error(403)
    (await api.delete(f"{POLICIES}/{policy_id}", absolute=True, headers=basic("bob"))).error(403)
    request_id = (await _transition(api)).json["approval_request_id"]
    (await api.delete(f"{POLICIES}/{policy_id}", absolute=True, headers=ADMIN)).error(
        409, "RESOURCE_CONFLICT", "pending"
    )
    (await api.post(f"{APPROVALS}/{request_id}/cancel", absolute=True, headers=ADMIN)).ok()
    (await api.delete(f"{POLICIES}/{policy_id}", absolute=True, headers=ADMIN)).ok()
    # Without the policy the transition is stock's again.
    assert (await _transition(api)).ok()["model_version"]["current_stage"] == "Production"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"kind": "phase"}, 400),
        ({"target": "Prod"}, 400),
        ({"approvals": 0}, 400),
        ({"approvals": 21}, 400),
        ({"approvals": "2"}, 400),
        ({"approvals": True}, 400),
        ({"approver_permission": "DENY"}, 400),
        ({"model_pattern": "a/b"}, 400),
        ({"model_pattern": ""}, 400),
    ],
)
async def test_bad_policies_are_4xx(
    api: Api, users: AuthStore, change: dict[str, Any], status: int
) -> None:
    del users
    body = {"model_pattern": "m", "kind": "stage", "target": "Production", "approvals": 2, **change}
    (await api.post(POLICIES, body, absolute=True, headers=ADMIN)).error(status)


async def test_bad_request_ids_are_4xx(api: Api, users: AuthStore) -> None:
    del users
    for path in ("abc", "-1", "99999999999999999999", "12"):
        for suffix in ("", "/approve", "/reject", "/cancel"):
            method = api.get if not suffix else api.post
            reply = await method(f"{APPROVALS}/{path}{suffix}", absolute=True, headers=ADMIN)
            reply.error((400, 404))
    (await api.get(APPROVALS, {"state": "open"}, absolute=True, headers=ADMIN)).error(400)
    (await api.get(APPROVALS, {"max_results": "0"}, absolute=True, headers=ADMIN)).error(400)
    (await api.get(APPROVALS, {"page_token": "x"}, absolute=True, headers=ADMIN)).error(400)
    (await api.delete(f"{POLICIES}/7", absolute=True, headers=ADMIN)).error(404)


async def test_with_auth_off_policies_are_refused(
    db_url: str, redis_client_url: str, tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {}, database_url=db_url, redis_url=redis_client_url,
        artifacts_uri="file://" + str(tmp_path / "artifacts"),
    )  # fmt: skip
    async with TestClient(TestServer(create_app(settings))) as client:
        api = Api(client)
        body = {"model_pattern": "m", "kind": "stage", "target": "Production", "approvals": 2}
        message = (await api.post(POLICIES, body, absolute=True)).error(
            400, "INVALID_PARAMETER_VALUE"
        )
        assert "METRICGATE_AUTH=off" in message
        (await api.get(APPROVALS, absolute=True)).error(400)
        # Transitions are stock's.
        (await api.post("/registered-models/create", {"name": "m"})).ok()
        (await api.post("/model-versions/create", {"name": "m", "source": "s3://b/m"})).ok()
        moved = await api.post(
            "/model-versions/transition-stage", {"name": "m", "version": "1", "stage": "Production"}
        )
        assert moved.ok()["model_version"]["current_stage"] == "Production"
