"""PgAuthStore against real PostgreSQL: users, per-user and role grants, tokens, the
invalidation counters and the append-only audit log (migration 0009_auth.sql)."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest

from metricgate.domain.auth.entities import user_role_name
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.auth.rules import token_digest, token_hint
from metricgate.domain.errors import AlreadyExists, InvalidParameter, NotFound
from metricgate.stores.base import AuthStore
from metricgate.stores.postgres.auth import PgAuthStore
from metricgate.stores.postgres.pool import Database

EXP = ResourceType.EXPERIMENT
MODEL = ResourceType.REGISTERED_MODEL
HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"  # the store never parses it


@pytest.fixture
def store(db: Database) -> PgAuthStore:
    return PgAuthStore(db)


def _token(n: int) -> str:
    return "mgt_" + f"{n:043d}"


async def test_satisfies_the_protocol(store: PgAuthStore) -> None:
    seam: AuthStore = store  # mypy checks the structural match
    assert min(await seam.auth_epochs()) >= 1


async def test_users_crud(store: PgAuthStore) -> None:
    alice = await store.create_user("alice", HASH, False)
    assert (alice.username, alice.is_admin) == ("alice", False)
    with pytest.raises(AlreadyExists, match="alice"):
        await store.create_user("alice", HASH, True)
    assert await store.get_user("alice") == alice
    assert await store.get_user_by_id(alice.id) == alice
    with pytest.raises(NotFound):
        await store.get_user("nobody")
    with pytest.raises(NotFound):
        await store.get_user_by_id(alice.id + 1000)

    creds = await store.user_credentials("alice")
    assert creds is not None
    user, password_hash, version = creds
    assert (user, password_hash) == (alice, HASH)
    assert await store.user_credentials("nobody") is None

    epochs = await store.auth_epochs()
    await store.set_password("alice", HASH + "2")
    creds2 = await store.user_credentials("alice")
    assert creds2 is not None and creds2.password_hash == HASH + "2"
    assert creds2.cred_version == version + 1
    assert await store.user_cred_version(alice.id) == version + 1
    # A credential change moves the credentials epoch only.
    assert await store.auth_epochs() == (epochs.credentials + 1, epochs.grants)

    assert not await store.any_admin()
    await store.set_admin("alice", True)
    assert (await store.get_user("alice")).is_admin
    assert await store.any_admin()
    assert await store.user_cred_version(alice.id) == version + 2
    with pytest.raises(NotFound):
        await store.set_password("nobody", HASH)
    with pytest.raises(NotFound):
        await store.set_admin("nobody", True)

    bob = await store.create_user("bob", HASH, False)
    assert [u.username for u in await store.list_users()] == ["alice", "bob"]
    await store.delete_user("bob")
    with pytest.raises(NotFound):
        await store.delete_user("bob")
    assert [u.id for u in await store.list_users()] == [alice.id]
    with pytest.raises(NotFound):
        await store.user_cred_version(bob.id)


async def test_bootstrap_admin_created_once(store: PgAuthStore) -> None:
    results = await asyncio.gather(*(store.create_admin_if_none("admin", HASH) for _ in range(5)))
    assert sorted(results) == [False, False, False, False, True]
    assert (await store.get_user("admin")).is_admin
    assert not await store.create_admin_if_none("other", HASH)


async def test_bootstrap_refuses_a_non_admin_of_that_name(store: PgAuthStore) -> None:
    await store.create_user("admin", HASH, False)
    with pytest.raises(AlreadyExists, match="not an admin"):
        await store.create_admin_if_none("admin", HASH)
    assert not (await store.get_user("admin")).is_admin


async def test_per_user_grants_on_the_hidden_role(store: PgAuthStore) -> None:
    alice = await store.create_user("alice", HASH, False)
    assert await store.user_grants(alice.id) == []
    version = await store.user_cred_version(alice.id)
    epochs = await store.auth_epochs()

    assert await store.grant_user("alice", EXP, "1", Permission.READ, replace=False) is None
    # A grant change moves the grants epoch only: no cached credential goes stale.
    assert await store.user_cred_version(alice.id) == version
    assert await store.auth_epochs() == (epochs.credentials, epochs.grants + 1)
    with pytest.raises(AlreadyExists):
        await store.grant_user("alice", EXP, "1", Permission.EDIT, replace=False)
    assert (
        await store.grant_user("alice", EXP, "1", Permission.EDIT, replace=True) is Permission.READ
    )
    await store.grant_user("alice", EXP, "*", Permission.DENY, replace=False)
    await store.grant_user("alice", MODEL, "m", Permission.MANAGE, replace=False)
    assert await store.user_grants(alice.id) == [
        Grant(EXP, "1", Permission.EDIT),
        Grant(EXP, "*", Permission.DENY),
        Grant(MODEL, "m", Permission.MANAGE),
    ]
    with pytest.raises(NotFound):
        await store.grant_user("nobody", EXP, "1", Permission.READ, replace=False)
    with pytest.raises(InvalidParameter):
        await store.grant_user("alice", ResourceType.WORKSPACE, "1", Permission.READ, replace=True)

    roles = await store.list_user_roles("alice")
    assert [r.name for r in roles] == [user_role_name(alice.id)]
    assert len(roles[0].permissions) == 3
    rows = await store.user_permission_rows("alice")
    assert [(r.role_name, r.resource_type, r.resource_pattern, r.permission) for r in rows] == [
        (user_role_name(alice.id), EXP, "1", Permission.EDIT),
        (user_role_name(alice.id), EXP, "*", Permission.DENY),
        (user_role_name(alice.id), MODEL, "m", Permission.MANAGE),
    ]
    assert {r.workspace for r in rows} == {"default"}

    grants = (await store.auth_epochs()).grants
    assert await store.revoke_user("alice", EXP, "*") is Permission.DENY
    assert (await store.auth_epochs()).grants == grants + 1
    with pytest.raises(NotFound):
        await store.revoke_user("alice", EXP, "*")
    assert Grant(EXP, "*", Permission.DENY) not in await store.user_grants(alice.id)

    # The hidden role is the user's alone.
    bob = await store.create_user("bob", HASH, False)
    with pytest.raises(InvalidParameter):
        await store.assign_role("bob", roles[0].id)
    with pytest.raises(InvalidParameter):
        await store.unassign_role("alice", roles[0].id)
    with pytest.raises(InvalidParameter):
        await store.create_role(user_role_name(bob.id), "default", None)

    await store.grant_creator_manage(bob.id, EXP, "7")
    await store.grant_creator_manage(bob.id, EXP, "7")  # idempotent
    assert await store.user_grants(bob.id) == [Grant(EXP, "7", Permission.MANAGE)]

    holders = await store.who_holds(EXP, "7")
    assert [(h.role_name, h.resource_pattern, h.permission, h.usernames) for h in holders] == [
        (user_role_name(bob.id), "7", Permission.MANAGE, ("bob",))
    ]
    assert [h.resource_pattern for h in await store.who_holds(EXP, "1")] == ["1"]

    # Deleting the user takes its hidden role and grants with it.
    hidden = roles[0].id
    await store.delete_user("alice")
    with pytest.raises(NotFound):
        await store.get_role(hidden)
    assert await store.who_holds(EXP, "1") == []


async def test_roles_permissions_and_assignments(store: PgAuthStore) -> None:
    alice = await store.create_user("alice", HASH, False)
    bob = await store.create_user("bob", HASH, False)
    role = await store.create_role("readers", "default", "read everything")
    assert (role.name, role.workspace, role.description, role.permissions) == (
        "readers",
        "default",
        "read everything",
        (),
    )
    with pytest.raises(AlreadyExists):
        await store.create_role("readers", "default", None)
    with pytest.raises(InvalidParameter):
        await store.create_role("other", "elsewhere", None)
    with pytest.raises(InvalidParameter):
        await store.create_role("", "default", None)

    star = await store.add_role_permission(role.id, EXP, "*", Permission.READ)
    deny = await store.add_role_permission(role.id, MODEL, "secret", Permission.DENY)
    ws = await store.add_role_permission(role.id, ResourceType.WORKSPACE, "*", Permission.USE)
    with pytest.raises(AlreadyExists):
        await store.add_role_permission(role.id, EXP, "*", Permission.EDIT)
    with pytest.raises(NotFound):
        await store.add_role_permission(role.id + 999, EXP, "*", Permission.EDIT)
    with pytest.raises(InvalidParameter):
        await store.add_role_permission(role.id, EXP, "1", Permission.NO_PERMISSIONS)
    assert await store.list_role_permissions(role.id) == [star, deny, ws]

    grants = (await store.auth_epochs()).grants
    assignment = await store.assign_role("alice", role.id)
    assert (assignment.user_id, assignment.role_id) == (alice.id, role.id)
    assert (await store.auth_epochs()).grants == grants + 1
    with pytest.raises(AlreadyExists):
        await store.assign_role("alice", role.id)
    with pytest.raises(NotFound):
        await store.assign_role("nobody", role.id)
    with pytest.raises(NotFound):
        await store.assign_role("alice", role.id + 999)
    await store.assign_role("bob", role.id)
    assert [a.user_id for a in await store.list_role_users(role.id)] == [alice.id, bob.id]
    assert Grant(MODEL, "secret", Permission.DENY) in await store.user_grants(alice.id)

    # A change to the role's grants moves the grants epoch, not its holders' cred_version.
    versions = [await store.user_cred_version(u) for u in (alice.id, bob.id)]
    epochs = await store.auth_epochs()
    updated = await store.update_role_permission(star.id, Permission.EDIT)
    assert updated.permission is Permission.EDIT
    assert [await store.user_cred_version(u) for u in (alice.id, bob.id)] == versions
    assert await store.auth_epochs() == (epochs.credentials, epochs.grants + 1)
    with pytest.raises(InvalidParameter):
        await store.update_role_permission(ws.id, Permission.READ)  # workspace: USE or MANAGE
    with pytest.raises(NotFound):
        await store.update_role_permission(star.id + 999, Permission.READ)

    await store.remove_role_permission(deny.id)
    with pytest.raises(NotFound):
        await store.remove_role_permission(deny.id)
    assert [p.id for p in (await store.get_role(role.id)).permissions] == [star.id, ws.id]

    renamed = await store.update_role(role.id, "editors", None)
    assert (renamed.name, renamed.description) == ("editors", "read everything")
    await store.create_role("other", "default", None)
    with pytest.raises(AlreadyExists):
        await store.update_role(role.id, "other", None)
    with pytest.raises(NotFound):
        await store.update_role(role.id + 999, None, "x")
    assert [r.name for r in await store.list_roles()] == ["editors", "other"]
    assert [r.name for r in await store.list_roles("default")] == ["editors", "other"]
    by_user = await store.roles_by_user()
    assert [r.name for r in by_user[alice.id]] == ["editors"]

    await store.unassign_role("bob", role.id)
    with pytest.raises(NotFound):
        await store.unassign_role("bob", role.id)
    assert [a.user_id for a in await store.list_role_users(role.id)] == [alice.id]

    grants = (await store.auth_epochs()).grants
    await store.delete_role(role.id)
    assert (await store.auth_epochs()).grants == grants + 1
    with pytest.raises(NotFound):
        await store.delete_role(role.id)
    with pytest.raises(NotFound):
        await store.get_role(role.id)
    with pytest.raises(NotFound):
        await store.list_role_users(role.id)
    assert await store.user_grants(alice.id) == []


async def test_tokens(store: PgAuthStore) -> None:
    alice = await store.create_user("alice", HASH, False)
    secret = _token(1)
    digest = token_digest(secret)
    token = await store.create_token(alice.id, "ci", digest, token_hint(secret), None)
    assert (token.user_id, token.name, token.hint) == (alice.id, "ci", secret[:10])
    assert token.revoked_at_ms is None and token.expires_at_ms is None

    found = await store.token_credentials(digest)
    assert found is not None
    assert (found.user, found.token) == (alice, token)
    assert await store.token_credentials(token_digest(_token(2))) is None
    assert await store.dead_token_reason(token_digest(_token(2))) is None

    with pytest.raises(AlreadyExists, match="ci"):
        await store.create_token(alice.id, "ci", token_digest(_token(3)), "mgt_000000", None)
    with pytest.raises(NotFound):
        await store.create_token(alice.id + 99, "x", token_digest(_token(4)), "mgt_000000", None)

    # Expired: still listed, no longer accepted.
    past = int(time.time() * 1000) - 1000
    expired = await store.create_token(alice.id, "old", token_digest(_token(5)), "mgt_00", past)
    assert expired.expires_at_ms == past
    assert await store.token_credentials(token_digest(_token(5))) is None
    assert await store.dead_token_reason(token_digest(_token(5))) == "expired"
    future = int(time.time() * 1000) + 3_600_000
    await store.create_token(alice.id, "soon", token_digest(_token(6)), "mgt_00", future)
    assert await store.token_credentials(token_digest(_token(6))) is not None

    await store.touch_token(token.id)
    first = (await store.list_tokens(alice.id))[0].last_used_at_ms
    assert first is not None
    await store.touch_token(token.id)  # within the minute: not written again
    assert (await store.list_tokens(alice.id))[0].last_used_at_ms == first

    bob = await store.create_user("bob", HASH, False)
    with pytest.raises(NotFound):
        await store.revoke_token(bob.id, token.id)  # not bob's
    version = await store.user_cred_version(alice.id)
    epochs = await store.auth_epochs()
    revoked = await store.revoke_token(alice.id, token.id)
    assert revoked.revoked_at_ms is not None
    assert await store.user_cred_version(alice.id) == version + 1
    assert await store.auth_epochs() == (epochs.credentials + 1, epochs.grants)
    assert await store.token_credentials(digest) is None
    assert await store.dead_token_reason(digest) == "revoked"
    with pytest.raises(NotFound):
        await store.revoke_token(alice.id, token.id)

    # A revoked token frees its name; an admin revokes without naming the owner.
    again = await store.create_token(alice.id, "ci", token_digest(_token(7)), "mgt_00", None)
    await store.revoke_token(None, again.id)
    assert [t.name for t in await store.list_tokens(alice.id)] == ["ci", "old", "soon", "ci"]
    assert await store.list_tokens(bob.id) == []

    await store.delete_user("alice")
    assert await store.token_credentials(token_digest(_token(6))) is None


async def test_audit_append_and_keyset_listing(store: PgAuthStore) -> None:
    ids = [
        await store.append_audit(
            1,
            "alice",
            "basic",
            "10.0.0.1",
            "grant.created" if i % 2 else "login.failed",
            "experiment",
            str(i),
            {"i": i, "new": "READ"},
        )
        for i in range(7)
    ]
    await store.append_audit(None, None, "system", "not-an-address", "audit.note", None, None, {})

    page, token = await store.list_audit(3, None)
    assert page[0].action == "audit.note"
    assert page[0].client_addr is None
    assert page[1].client_addr == "10.0.0.1"
    assert page[1].details == {"i": 6, "new": "READ"}
    seen = [e.id for e in page]
    while token is not None:
        page, token = await store.list_audit(3, token)
        seen.extend(e.id for e in page)
    assert seen[1:] == sorted(ids, reverse=True)

    grants, token = await store.list_audit(10, None, action="grant.created")
    assert [e.target_id for e in grants] == ["5", "3", "1"] and token is None
    assert len((await store.list_audit(10, None, actor="alice"))[0]) == 7
    assert (await store.list_audit(10, None, since_ms=int(time.time() * 1000) + 60_000))[0] == []
    with pytest.raises(InvalidParameter):
        await store.list_audit(0, None)
    with pytest.raises(InvalidParameter):
        await store.list_audit(10, "garbage!")


async def test_audit_log_refuses_update_and_delete(
    store: PgAuthStore, conn: asyncpg.Connection
) -> None:
    await store.append_audit(1, "alice", "token", None, "token.created", "token", "1", {})
    for statement in (
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
    assert await conn.fetchval("SELECT count(*) FROM audit_log") == 1
    async with conn.transaction():
        await conn.execute("SET LOCAL metricgate.audit_prune = 'on'")
        await conn.execute("DELETE FROM audit_log")
    assert await conn.fetchval("SELECT count(*) FROM audit_log") == 0


async def test_concurrent_access_changes_neither_deadlock_nor_lose_bumps(
    store: PgAuthStore,
) -> None:
    users = [await store.create_user(f"u{i}", HASH, False) for i in range(4)]
    roles = [await store.create_role(f"r{i}", "default", None) for i in range(3)]
    for user in users:
        for role in roles:
            await store.assign_role(user.username, role.id)
    epochs = await store.auth_epochs()
    changes = [
        store.add_role_permission(role.id, EXP, str(n), Permission.READ)
        for n in range(6)
        for role in roles
    ] + [
        store.grant_user(user.username, MODEL, str(n), Permission.EDIT, replace=True)
        for n in range(3)
        for user in reversed(users)
    ]
    # Creators' grants (no epoch) and password changes (the other epoch) run alongside.
    others = [
        store.grant_creator_manage(user.id, MODEL, f"new{n}") for n in range(3) for user in users
    ] + [store.set_password(user.username, HASH) for user in users]
    await asyncio.gather(*changes, *others)
    assert await store.auth_epochs() == (
        epochs.credentials + len(users),
        epochs.grants + len(changes),
    )
    epochs = epochs._replace(credentials=epochs.credentials + len(users))
    # A refused change leaves the epoch alone.
    with pytest.raises(NotFound):
        await store.revoke_user("u0", EXP, "nothing")
    assert await store.auth_epochs() == (epochs.credentials, epochs.grants + len(changes))
