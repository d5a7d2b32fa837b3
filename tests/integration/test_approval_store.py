"""The approval store against a real PostgreSQL (migration 0010_approvals.sql): one pending
request per target, votes serialised on the model row so the quorum applies the change once,
and every step in the registry history with its webhook deliveries."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from metricgate.domain.auth.permissions import Permission
from metricgate.domain.errors import AlreadyExists, Conflict
from metricgate.domain.registry.approvals import ApprovalForbidden, ApprovalRequest
from metricgate.domain.registry.entities import Audit, ModelVersion
from metricgate.stores.postgres.pool import Database
from metricgate.stores.postgres.registry import PgRegistryStore
from metricgate.stores.postgres.registry.approvals import PgApprovalStore

USERS = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"]


def who(name: str, comment: str | None = None) -> Audit:
    return Audit(actor=name, comment=comment, actor_verified=True)


@pytest.fixture
async def store(db: Database, conn: asyncpg.Connection) -> PgApprovalStore:
    for name in USERS:
        await conn.execute(
            "INSERT INTO auth_users (username, password_hash) VALUES ($1, 'x')", name
        )
    registry = PgRegistryStore(db)
    await registry.create_registered_model(who("alice"), "m", [], None)
    for i in (1, 2):
        await registry.create_model_version(
            who("alice"), "m", f"s3://b/{i}", None, [], None, None, None
        )
    return PgApprovalStore(db)


async def _request(store: PgApprovalStore, version: int = 1) -> ApprovalRequest:
    outcome = await store.transition_or_request(who("alice"), "m", version, "Production", True)
    assert isinstance(outcome, ApprovalRequest)
    return outcome


async def test_no_policy_transitions_as_before(store: PgApprovalStore) -> None:
    outcome = await store.transition_or_request(who("alice"), "m", 1, "Staging", False)
    assert isinstance(outcome, ModelVersion) and outcome.current_stage == "Staging"
    assert await store.set_alias_or_request(who("alice"), "m", "champion", 1) is None


async def test_the_models_own_policy_beats_the_wildcard(store: PgApprovalStore) -> None:
    await store.create_policy("*", "stage", "Production", 3, Permission.READ, "alice")
    own = await store.create_policy("m", "stage", "Production", 2, Permission.EDIT, "alice")
    with pytest.raises(AlreadyExists):
        await store.create_policy("m", "stage", "Production", 1, Permission.EDIT, "alice")
    request = await _request(store)
    assert (request.policy_id, request.approvals_needed) == (own.id, 2)
    assert request.approver_permission is Permission.EDIT


async def test_one_pending_request_per_target(
    store: PgApprovalStore, conn: asyncpg.Connection
) -> None:
    await store.create_policy("m", "stage", "Production", 2, Permission.EDIT, "alice")
    first, second = await asyncio.gather(_request(store), _request(store))
    assert first.id == second.id
    other = await _request(store, version=2)
    assert other.id != first.id
    assert (
        await conn.fetchval(
            "SELECT count(*) FROM registry_events WHERE event_type = 'model_version.approval_requested'"
        )
        == 2
    )
    cancelled = await store.cancel(first.id, who("alice"), is_admin=False)
    assert cancelled.state == "cancelled"
    again = await _request(store)
    assert again.id not in (first.id, other.id)


async def test_votes_reject_and_forbid_self_approval(store: PgApprovalStore) -> None:
    await store.create_policy("m", "stage", "Production", 1, Permission.EDIT, "alice")
    request = await _request(store)
    with pytest.raises(ApprovalForbidden):
        await store.vote(request.id, who("alice"), "approve", Permission.MANAGE)
    with pytest.raises(ApprovalForbidden):
        await store.vote(request.id, who("bob"), "approve", Permission.READ)
    with pytest.raises(ApprovalForbidden):
        await store.cancel(request.id, who("bob"), is_admin=False)
    rejected = await store.vote(request.id, who("bob", "not yet"), "reject", Permission.EDIT)
    assert rejected.state == "rejected"
    assert [(v.voter, v.decision, v.comment) for v in rejected.votes] == [
        ("bob", "reject", "not yet")
    ]
    with pytest.raises(Conflict, match="rejected"):
        await store.vote(request.id, who("carol"), "approve", Permission.EDIT)


async def test_concurrent_approvals_apply_once(
    store: PgApprovalStore, conn: asyncpg.Connection
) -> None:
    await conn.execute(
        "INSERT INTO webhooks (url, events, secret) VALUES ('http://x/h', '{model_version.*}', 's')"
    )
    await store.create_policy("m", "stage", "Production", 2, Permission.EDIT, "alice")
    await store.transition_or_request(who("alice"), "m", 2, "Staging", False)
    request = await _request(store)

    async def approve(name: str) -> str:
        try:
            await store.vote(request.id, who(name), "approve", Permission.EDIT)
        except Conflict:
            return "conflict"
        return "ok"

    results = await asyncio.gather(*(approve(n) for n in USERS[1:6]))
    assert sorted(results) == ["conflict"] * 3 + ["ok"] * 2
    done = await store.get_request(request.id)
    assert done.state == "applied" and done.approvals == 2
    stage_events = await conn.fetch(
        """SELECT id, version, after ->> 'current_stage' AS stage, actor, actor_verified
           FROM registry_events WHERE event_type = 'model_version.stage_changed' ORDER BY id"""
    )
    production = [r for r in stage_events if r["stage"] == "Production"]
    assert len(production) == 1 and production[0]["actor"] == "alice"
    assert production[0]["actor_verified"] and production[0]["id"] == done.applied_event_id
    # archive_existing: version 2 left Staging? No: it archives the target stage's others only.
    assert [r["stage"] for r in stage_events if r["version"] == 2] == ["Staging"]
    applied = await conn.fetchval(
        """SELECT count(*) FROM webhook_deliveries
           WHERE event_type = 'model_version.approval_applied'"""
    )
    assert applied == 1
    actions = [r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("approval_applied") == 1 and actions.count("approval_voted") == 2


async def test_alias_policy_and_superseded(
    store: PgApprovalStore, conn: asyncpg.Connection
) -> None:
    await store.create_policy("*", "alias", "champion", 1, Permission.READ, "alice")
    pending = await store.set_alias_or_request(who("alice"), "m", "champion", 1)
    assert pending is not None and pending.kind == "alias"
    done = await store.vote(pending.id, who("bob"), "approve", Permission.READ)
    assert done.state == "applied"
    assert (
        await conn.fetchval("SELECT version FROM registered_model_aliases WHERE alias = 'champion'")
        == 1
    )
    # A request whose change already happened is superseded, not applied twice.
    await store.create_policy("m", "stage", "Staging", 1, Permission.READ, "alice")
    request = await store.transition_or_request(who("alice"), "m", 1, "Staging", False)
    assert isinstance(request, ApprovalRequest)
    await conn.execute("UPDATE model_versions SET current_stage = 'Staging' WHERE version = 1")
    closed = await store.vote(request.id, who("bob"), "approve", Permission.READ)
    assert closed.state == "superseded" and closed.applied_event_id is None


async def test_deleting_a_policy_with_pending_requests_is_refused(store: PgApprovalStore) -> None:
    policy = await store.create_policy("m", "stage", "Production", 2, Permission.EDIT, "alice")
    request = await _request(store)
    with pytest.raises(Conflict, match="pending"):
        await store.delete_policy(policy.id, "alice")
    await store.cancel(request.id, who("grace"), is_admin=True)
    assert (await store.delete_policy(policy.id, "alice")).id == policy.id
    assert await store.list_policies() == []
