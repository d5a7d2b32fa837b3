"""PgAuthStore's audited writes against real PostgreSQL (docs/design-auth.md B7): given an
``AuditContext``, each change to users, tokens, roles and grants appends its audit entry in its
own transaction, so the change and the entry commit together or not at all."""

from __future__ import annotations

import os
import time

import asyncpg
import pytest

from metricgate.auth.bootstrap import ensure_admin
from metricgate.cli.auth import _create_admin
from metricgate.config import AuthSettings, PostgresSettings, Settings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.auth.rules import token_digest, token_hint
from metricgate.domain.errors import AlreadyExists, NotFound
from metricgate.domain.registry.entities import Audit
from metricgate.domain.uploads.entities import ArtifactReference
from metricgate.stores.base import AuditContext, AuditEntry
from metricgate.stores.postgres import auth as pg_auth
from metricgate.stores.postgres.artifact_refs import PgReferenceStore
from metricgate.stores.postgres.auth import PgAuthStore
from metricgate.stores.postgres.experiments import PgExperimentStore
from metricgate.stores.postgres.logged_models import PgLoggedModelStore
from metricgate.stores.postgres.pool import Database, create_pool
from metricgate.stores.postgres.registry.store import PgRegistryStore
from metricgate.stores.postgres.runs import PgRunStore
from metricgate.stores.postgres.webhooks import PgWebhookStore

EXP = ResourceType.EXPERIMENT
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"
ADMIN = AuditContext(1, "root", "basic", "10.1.2.3")
# The audit_log's CHECK refuses this method: the entry cannot be written.
BROKEN = AuditContext(1, "root", "carrier-pigeon", None)
TOKEN = "mgt_" + "7" * 43


@pytest.fixture
def store(db: Database) -> PgAuthStore:
    return PgAuthStore(db)


async def entries(store: PgAuthStore) -> list[AuditEntry]:
    found, _ = await store.list_audit(1000, None)
    return list(reversed(found))  # oldest first


def summary(entry: AuditEntry) -> tuple[str, str | None, str | None]:
    return entry.action, entry.target_type, entry.target_id


async def test_every_write_leaves_its_entry(store: PgAuthStore) -> None:
    alice = await store.create_user("alice", HASH, False, audit=ADMIN)
    await store.set_password("alice", HASH, audit=ADMIN)
    await store.set_admin("alice", True, audit=ADMIN)
    token = await store.create_token(
        alice.id, "ci", token_digest(TOKEN), token_hint(TOKEN), None, audit=ADMIN
    )
    await store.revoke_token(None, token.id, audit=ADMIN)
    await store.grant_user("alice", EXP, "7", Permission.READ, replace=False, audit=ADMIN)
    await store.grant_user("alice", EXP, "7", Permission.EDIT, replace=True, audit=ADMIN)
    await store.revoke_user("alice", EXP, "7", audit=ADMIN)
    role = await store.create_role("readers", "default", None, audit=ADMIN)
    await store.update_role(role.id, "viewers", "d", audit=ADMIN)
    rp = await store.add_role_permission(role.id, EXP, "1", Permission.READ, audit=ADMIN)
    await store.update_role_permission(rp.id, Permission.EDIT, audit=ADMIN)
    set_rp, old = await store.set_role_permission(role.id, EXP, "1", Permission.MANAGE, audit=ADMIN)
    assert (set_rp.id, old) == (rp.id, Permission.EDIT)  # in place
    await store.remove_role_permission(rp.id, audit=ADMIN)
    await store.assign_role("alice", role.id, audit=ADMIN)
    await store.unassign_role("alice", role.id, audit=ADMIN)
    await store.delete_role(role.id, audit=ADMIN)
    await store.delete_user("alice", audit=ADMIN)

    found = await entries(store)
    rid, tid = str(role.id), str(token.id)
    assert [summary(e) for e in found] == [
        ("user.created", "user", "alice"),
        ("user.password_changed", "user", "alice"),
        ("user.admin_changed", "user", "alice"),
        ("token.created", "token", tid),
        ("token.revoked", "token", tid),
        ("grant.created", "user", "alice"),
        ("grant.set", "user", "alice"),
        ("grant.revoked", "user", "alice"),
        ("role.created", "role", rid),
        ("role.updated", "role", rid),
        ("role.permission_added", "role", rid),
        ("role.permission_updated", "role", rid),
        ("grant.set", "role", rid),
        ("role.permission_removed", "role_permission", str(rp.id)),
        ("role.assigned", "user", "alice"),
        ("role.unassigned", "user", "alice"),
        ("role.deleted", "role", rid),
        ("user.deleted", "user", "alice"),
    ]
    assert all(
        (e.actor_id, e.actor, e.auth_method, e.client_addr) == (1, "root", "basic", "10.1.2.3")
        for e in found
    )
    by = {(e.action, e.target_type): e.details for e in found}
    assert by[("grant.set", "user")] == {
        "resource_type": "experiment",
        "resource_id": "7",
        "permission": "EDIT",
        "old": "READ",
    }
    assert by[("grant.revoked", "user")]["old"] == "EDIT"
    assert by[("role.permission_updated", "role")]["old"] == "READ"
    assert by[("grant.set", "role")]["old"] == "EDIT"
    assert by[("role.permission_removed", "role_permission")]["permission"] == "MANAGE"
    assert by[("role.updated", "role")] == {
        "name": "viewers",
        "description": "d",
        "old_name": "readers",
    }
    assert by[("token.created", "token")]["hint"] == token.hint
    assert TOKEN not in str(found) and HASH not in str(found)


async def test_a_change_that_fails_writes_no_entry(store: PgAuthStore) -> None:
    await store.create_user("bob", HASH, False, audit=ADMIN)
    with pytest.raises(AlreadyExists):
        await store.create_user("bob", HASH, False, audit=ADMIN)
    with pytest.raises(NotFound):
        await store.revoke_user("bob", EXP, "9", audit=ADMIN)
    with pytest.raises(NotFound):
        await store.delete_role(987654, audit=ADMIN)
    with pytest.raises(AlreadyExists):
        await store.grant_user("bob", EXP, "1", Permission.READ, replace=False, audit=ADMIN)
        await store.grant_user("bob", EXP, "1", Permission.READ, replace=False, audit=ADMIN)
    assert [e.action for e in await entries(store)] == ["user.created", "grant.created"]


async def test_an_entry_that_cannot_be_written_undoes_the_change(store: PgAuthStore) -> None:
    before = await store.auth_epochs()
    with pytest.raises(asyncpg.CheckViolationError):
        await store.create_user("carol", HASH, False, audit=BROKEN)
    with pytest.raises(NotFound):
        await store.get_user("carol")

    dave = await store.create_user("dave", HASH, False)
    with pytest.raises(asyncpg.CheckViolationError):
        await store.set_admin("dave", True, audit=BROKEN)
    assert not (await store.get_user("dave")).is_admin
    with pytest.raises(asyncpg.CheckViolationError):
        await store.grant_user("dave", EXP, "3", Permission.MANAGE, replace=True, audit=BROKEN)
    assert await store.user_grants(dave.id) == []
    role = await store.create_role("r", "default", None)
    with pytest.raises(asyncpg.CheckViolationError):
        await store.set_role_permission(role.id, EXP, "3", Permission.READ, audit=BROKEN)
    assert (await store.get_role(role.id)).permissions == ()
    # The rolled-back epoch bumps moved nothing either: no cache was told to drop anything.
    assert await store.auth_epochs() == before
    assert await entries(store) == []


async def test_without_a_context_nothing_is_written(store: PgAuthStore) -> None:
    await store.create_user("erin", HASH, False)
    await store.grant_user("erin", EXP, "1", Permission.READ, replace=False)
    assert await entries(store) == []


async def test_listing_filters_by_time(store: PgAuthStore) -> None:
    await store.create_user("frank", HASH, False, audit=ADMIN)
    now = int(time.time() * 1000)
    assert len((await store.list_audit(10, None, until_ms=now + 60_000))[0]) == 1
    assert (await store.list_audit(10, None, until_ms=now - 60_000))[0] == []
    assert (await store.list_audit(10, None, since_ms=now - 60_000, until_ms=now + 60_000))[0]


# ---------------------------------------------------------------- admins made by the system


def _fail_audit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every audit write fails, as a crash between a change and its entry would."""

    async def refuse(*_: object) -> int:
        raise asyncpg.CheckViolationError("audit entry refused")

    monkeypatch.setattr(pg_auth, "_insert_audit", refuse)


async def test_the_bootstrap_admin_commits_with_its_entry(
    store: PgAuthStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = AuthSettings(mode="on", admin_username="boot", admin_password="a-long-password-1")
    with monkeypatch.context() as patch:
        _fail_audit(patch)
        with pytest.raises(asyncpg.CheckViolationError):
            await ensure_admin(store, settings)
    assert not await store.any_admin()  # no admin without its entry

    assert await ensure_admin(store, settings) is True
    [entry] = await entries(store)
    assert summary(entry) == ("user.created", "user", "boot")
    assert (entry.actor_id, entry.actor, entry.auth_method) == (None, None, "system")
    assert entry.details["via"] == "bootstrap" and entry.details["is_admin"] is True
    assert entry.details["pid"] == os.getpid() and entry.details["host"]


async def test_create_admin_commits_with_its_entry(
    store: PgAuthStore, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings.from_env({}, database_url=db_url)
    with monkeypatch.context() as patch:
        _fail_audit(patch)
        assert await _create_admin(settings, "root", "a-long-password-1", reset=False) == 1
    with pytest.raises(NotFound):
        await store.get_user("root")  # before, the admin was there and its entry was not

    assert await _create_admin(settings, "root", "a-long-password-1", reset=False) == 0
    await store.set_admin("root", False)
    with monkeypatch.context() as patch:
        _fail_audit(patch)
        assert await _create_admin(settings, "root", "a-long-password-2", reset=True) == 1
    assert not (await store.get_user("root")).is_admin  # the reset is undone with its entry
    assert await _create_admin(settings, "root", "a-long-password-2", reset=True) == 0
    assert (await store.get_user("root")).is_admin

    found = await entries(store)
    assert [summary(e) for e in found] == [
        ("user.created", "user", "root"),
        ("user.admin_reset", "user", "root"),
    ]
    assert all(e.auth_method == "system" and e.actor is None for e in found)
    assert {e.details["via"] for e in found} == {"metricgate users create-admin"}


# ---------------------------------------------------------------- deletions


async def test_a_deletion_and_its_entry_commit_together(store: PgAuthStore, db_url: str) -> None:
    settings = PostgresSettings(url=db_url, pool_min_size=1, pool_max_size=2)
    db = Database(await create_pool(settings), settings.acquire_timeout_s)
    try:
        experiments = PgExperimentStore(db, "mlflow-artifacts:")
        runs, models, registry = PgRunStore(db), PgLoggedModelStore(db), PgRegistryStore(db)
        experiment_id = int(await experiments.create("doomed", None, []))
        run_id = (await runs.create(experiment_id, "u", None, None, [])).info.run_id
        model_id = (await models.create(experiment_id, None, None, None, [], [])).model_id
        who = Audit(actor="root", actor_verified=True)
        await registry.create_registered_model(who, "m", [], None)
        await registry.create_model_version(who, "m", "s3://b/m", None, [], None, None, None)

        # An entry that cannot be written undoes its delete (before, the delete stood).
        deletes = [
            lambda log: registry.delete_model_version(who, "m", 1, audit_log=log),
            lambda log: registry.delete_registered_model(who, "m", audit_log=log),
            lambda log: models.delete(model_id, audit=log),
            lambda log: runs.delete(run_id, audit=log),
            lambda log: experiments.delete(experiment_id, audit=log),
        ]
        for delete in deletes:
            with pytest.raises(asyncpg.CheckViolationError):
                await delete(BROKEN)
        assert (await registry.get_model_version("m", 1)).version == 1
        assert (await models.get(model_id)).model_id == model_id  # NotFound once deleted
        assert (await runs.get(run_id)).info.lifecycle_stage == "active"
        assert (await experiments.get(experiment_id)).lifecycle_stage == "active"

        for delete in deletes:
            await delete(ADMIN)
        found = await entries(store)
        assert [summary(e) for e in found] == [
            ("version.deleted", "model_version", "m/1"),
            ("model.deleted", "registered_model", "m"),
            ("logged_model.deleted", "logged_model", model_id),
            ("run.deleted", "run", run_id),
            ("experiment.deleted", "experiment", str(experiment_id)),
        ]
        assert all((e.actor, e.client_addr) == ("root", "10.1.2.3") for e in found)
        assert found[0].details == {"name": "m", "version": 1}
    finally:
        await db.aclose()


async def test_webhook_and_reference_deletes_commit_with_their_entry(
    store: PgAuthStore, db_url: str
) -> None:
    settings = PostgresSettings(url=db_url, pool_min_size=1, pool_max_size=2)
    db = Database(await create_pool(settings), settings.acquire_timeout_s)
    try:
        hooks, refs = PgWebhookStore(db), PgReferenceStore(db)
        hook, _ = await hooks.create("https://hooks.example/x?t=1", ["*"], None, None, False)
        experiments = PgExperimentStore(db, "mlflow-artifacts:")
        experiment_id = int(await experiments.create("refs", None, []))
        run_id = (await PgRunStore(db).create(experiment_id, "u", None, None, [])).info.run_id
        dest = f"{experiment_id}/{run_id}/artifacts/r.bin"
        await refs.put(ArtifactReference(run_id, "r.bin", dest, "s3://b/r.bin", 1, None, None))

        # An entry that cannot be written undoes its delete (before, the delete stood).
        with pytest.raises(asyncpg.CheckViolationError):
            await hooks.delete(hook.id, audit=BROKEN)
        assert (await hooks.get(hook.id)).id == hook.id
        with pytest.raises(asyncpg.CheckViolationError):
            await refs.delete(run_id, "r.bin", audit=BROKEN)
        assert [r.rel_path for r in await refs.list_for_run(run_id)] == ["r.bin"]

        await hooks.delete(hook.id, audit=ADMIN)
        await refs.delete(run_id, "r.bin", audit=ADMIN)
        found = await entries(store)
        assert [summary(e) for e in found] == [
            ("webhook.deleted", "webhook", hook.id),
            ("artifact_reference.deleted", "artifact", dest),
        ]
        assert found[0].details == {
            "url_host": "hooks.example",
            "events": ["*"],
            "model_name": None,
        }
        with pytest.raises(NotFound):
            await hooks.get(hook.id)
    finally:
        await db.aclose()
