"""Registered-model grants follow the model in the registry write's own transaction (design-auth
B2): a rename moves them to the new name (refused onto a name with grants of its own), a delete
removes them, a create with a creator writes its MANAGE; grant_epoch moves only when grants
moved; a failed write leaves the grants alone. Writes of one name serialise on its advisory lock
(a grant cannot slip past a rename), and never wait for writes of other names."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.errors import AlreadyExists, Conflict, NotFound
from metricgate.domain.registry.entities import Audit
from metricgate.registry.service import RegistryService
from metricgate.stores.base import AuditContext, AuthImport, ImportedUser
from metricgate.stores.postgres import auth as pg_auth
from metricgate.stores.postgres.auth import PgAuthStore
from metricgate.stores.postgres.experiments import PgExperimentStore
from metricgate.stores.postgres.pool import Database
from metricgate.stores.postgres.registry import PgRegistryStore

ADMIN = Audit(actor="admin", comment=None, actor_verified=True)
MODEL = ResourceType.REGISTERED_MODEL
IMPORTER = AuditContext(None, "import-mlflow", "system", None)


@dataclass
class Parts:
    db: Database
    registry: RegistryService
    auth: PgAuthStore


@pytest.fixture
def parts(db: Database) -> Parts:
    return Parts(db, RegistryService(PgRegistryStore(db, auth_on=True)), PgAuthStore(db))


async def _held(auth: PgAuthStore, username: str) -> set[tuple[str, Permission]]:
    return {
        (r.resource_pattern, r.permission)
        for r in await auth.user_permission_rows(username)
        if r.resource_type is MODEL
    }


async def test_a_rename_moves_the_grants_and_announces_it(parts: Parts) -> None:
    auth, registry = parts.auth, parts.registry
    await auth.create_user("bob", "x", False)
    await auth.create_user("carol", "x", False)
    await registry.create_registered_model(ADMIN, "m", [], None)
    await auth.grant_user("bob", MODEL, "m", Permission.DENY, replace=False)
    await auth.grant_user("carol", MODEL, "*", Permission.EDIT, replace=False)
    before = await auth.auth_epochs()
    await registry.rename_registered_model(ADMIN, "m", "m2")
    assert await _held(auth, "bob") == {("m2", Permission.DENY)}
    assert await _held(auth, "carol") == {("*", Permission.EDIT)}
    assert (await auth.auth_epochs()).grants == before.grants + 1
    # A new model under the old name inherits nothing.
    await registry.create_registered_model(ADMIN, "m", [], None)
    assert await _held(auth, "bob") == {("m2", Permission.DENY)}


async def test_a_rename_onto_a_name_with_grants_of_its_own_is_refused(parts: Parts) -> None:
    """Grants set on a name before any model has it (a DENY included) are neither dropped nor
    handed to the renamed model: the rename is refused until they are revoked."""
    auth, registry = parts.auth, parts.registry
    await auth.create_user("bob", "x", False)
    await auth.create_user("carol", "x", False)
    await registry.create_registered_model(ADMIN, "a", [], None)
    await auth.grant_user("bob", MODEL, "a", Permission.EDIT, replace=False)
    await auth.grant_user("bob", MODEL, "b", Permission.DENY, replace=False)
    await auth.grant_user("carol", MODEL, "b", Permission.MANAGE, replace=False)
    before = await auth.auth_epochs()
    with pytest.raises(Conflict, match="access grants are already set on the name 'b'"):
        await registry.rename_registered_model(ADMIN, "a", "b")
    assert await _held(auth, "bob") == {("a", Permission.EDIT), ("b", Permission.DENY)}
    assert await _held(auth, "carol") == {("b", Permission.MANAGE)}
    assert await auth.auth_epochs() == before
    assert (await registry.get_registered_model("a")).name == "a"
    # Revoked, the name is free, and the model takes only its own grants there.
    await auth.revoke_user("bob", MODEL, "b")
    await auth.revoke_user("carol", MODEL, "b")
    await registry.rename_registered_model(ADMIN, "a", "b")
    assert await _held(auth, "bob") == {("b", Permission.EDIT)}
    assert await _held(auth, "carol") == set()


async def test_a_delete_takes_the_grants_set_before_the_model(parts: Parts) -> None:
    """A grant set on a name before the model was created applied to that model, so it goes
    with its delete: a later model of the name starts clean (its creator's MANAGE aside)."""
    auth, registry = parts.auth, parts.registry
    await auth.create_user("bob", "x", False)
    carol = await auth.create_user("carol", "x", False)
    await auth.grant_user("bob", MODEL, "p", Permission.DENY, replace=False)
    await registry.create_registered_model(ADMIN, "p", [], None)
    await registry.delete_registered_model(ADMIN, "p")
    await registry.create_registered_model(ADMIN, "p", [], None, carol.id)
    assert await _held(auth, "bob") == set()
    assert await _held(auth, "carol") == {("p", Permission.MANAGE)}


async def test_a_rename_without_grants_moves_no_epoch(parts: Parts) -> None:
    await parts.registry.create_registered_model(ADMIN, "a", [], None)
    before = await parts.auth.auth_epochs()
    await parts.registry.rename_registered_model(ADMIN, "a", "b")
    assert await parts.auth.auth_epochs() == before


async def test_a_failed_rename_leaves_the_grants(parts: Parts) -> None:
    auth, registry = parts.auth, parts.registry
    await auth.create_user("bob", "x", False)
    for name in ("m", "taken"):
        await registry.create_registered_model(ADMIN, name, [], None)
    await auth.grant_user("bob", MODEL, "m", Permission.READ, replace=False)
    with pytest.raises(AlreadyExists):
        await registry.rename_registered_model(ADMIN, "m", "taken")
    with pytest.raises(NotFound):
        await registry.rename_registered_model(ADMIN, "nope", "m")
    assert await _held(auth, "bob") == {("m", Permission.READ)}


async def test_a_delete_removes_the_grants(parts: Parts) -> None:
    auth, registry = parts.auth, parts.registry
    await auth.create_user("bob", "x", False)
    await registry.create_registered_model(ADMIN, "d", [], None)
    await registry.create_registered_model(ADMIN, "keep", [], None)
    await auth.grant_user("bob", MODEL, "d", Permission.EDIT, replace=False)
    await auth.grant_user("bob", MODEL, "keep", Permission.DENY, replace=False)
    before = await auth.auth_epochs()
    await registry.delete_registered_model(ADMIN, "d")
    assert await _held(auth, "bob") == {("keep", Permission.DENY)}
    assert (await auth.auth_epochs()).grants == before.grants + 1
    await registry.create_registered_model(ADMIN, "d", [], None)
    assert await _held(auth, "bob") == {("keep", Permission.DENY)}


async def test_grants_follow_the_model_when_auth_is_off_too(parts: Parts) -> None:
    """With auth off nobody reads the grants, but they stay in the tables for the day it is
    switched on: a delete must still take a name's grants and a rename move them, or a model
    made later under the name inherits them (a DENY, or someone else's MANAGE). A rename onto
    a name with grants of its own is refused as with auth on."""
    auth = parts.auth
    registry = RegistryService(PgRegistryStore(parts.db))
    await auth.create_user("bob", "x", False)
    await registry.create_registered_model(ADMIN, "m", [], None)
    await registry.create_registered_model(ADMIN, "d", [], None)
    await auth.grant_user("bob", MODEL, "m", Permission.DENY, replace=False)
    await auth.grant_user("bob", MODEL, "d", Permission.MANAGE, replace=False)
    await auth.grant_user("bob", MODEL, "preset", Permission.DENY, replace=False)
    await registry.rename_registered_model(ADMIN, "m", "m2")
    await registry.delete_registered_model(ADMIN, "d")
    await registry.create_registered_model(ADMIN, "d", [], None)
    assert await _held(auth, "bob") == {("m2", Permission.DENY), ("preset", Permission.DENY)}
    with pytest.raises(Conflict, match="access control is off"):
        await registry.rename_registered_model(ADMIN, "m2", "preset")
    assert await _held(auth, "bob") == {("m2", Permission.DENY), ("preset", Permission.DENY)}


async def test_auth_off_writes_of_names_without_grants_cost_one_probe(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With auth off and no grants on the names, a rename or delete adds one index probe of
    auth_grants to its transaction, and takes no name lock."""
    registry = RegistryService(PgRegistryStore(parts.db))
    for name in ("a", "x"):
        await registry.create_registered_model(ADMIN, name, [], None)
    statements: list[str] = []
    transaction = parts.db.transaction

    def log(query: Any) -> None:
        statements.append(query.query)

    @contextlib.asynccontextmanager
    async def logged() -> AsyncIterator[Any]:
        async with transaction() as conn:
            conn.add_query_logger(log)
            try:
                yield conn
            finally:
                conn.remove_query_logger(log)

    monkeypatch.setattr(parts.db, "transaction", logged)
    await registry.rename_registered_model(ADMIN, "a", "b")
    await registry.delete_registered_model(ADMIN, "x")
    touching = [s for s in statements if "auth_grants" in s or "auth_state" in s]
    assert len(touching) == 2, touching
    assert not [s for s in statements if "advisory" in s]


async def test_the_creator_grant_is_written_by_the_create(parts: Parts) -> None:
    auth = parts.auth
    bob = await auth.create_user("bob", "x", False)
    await parts.registry.create_registered_model(ADMIN, "mine", [], None, bob.id)
    assert await _held(auth, "bob") == {("mine", Permission.MANAGE)}
    # A create that fails writes no grant.
    carol = await auth.create_user("carol", "x", False)
    with pytest.raises(AlreadyExists):
        await parts.registry.create_registered_model(ADMIN, "mine", [], None, carol.id)
    assert await _held(auth, "carol") == set()
    # A DENY set on the name in advance outlives its holder's create of the model.
    await auth.grant_user("carol", MODEL, "barred", Permission.DENY, replace=False)
    await auth.grant_user("carol", MODEL, "invited", Permission.READ, replace=False)
    for name in ("barred", "invited"):
        await parts.registry.create_registered_model(ADMIN, name, [], None, carol.id)
    assert await _held(auth, "carol") == {
        ("barred", Permission.DENY),
        ("invited", Permission.MANAGE),
    }
    experiment_id = await PgExperimentStore(parts.db, "file:///tmp/mg").create(
        "exp", None, [], bob.id
    )
    rows = await auth.user_permission_rows("bob")
    assert any(
        r.resource_type is ResourceType.EXPERIMENT
        and r.resource_pattern == experiment_id
        and r.permission is Permission.MANAGE
        for r in rows
    )


# ------------------------------------------------------------ per-name locks


async def _wait_for_lock_wait(db: Database, advisory: bool) -> bool:
    """Whether a session of this database comes to wait for a lock (an advisory one, or any)
    within about five seconds."""
    query = """SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                              WHERE datname = current_database() AND wait_event_type = 'Lock'
                                AND (NOT $1 OR wait_event = 'advisory'))"""
    for _ in range(100):
        async with db.connection() as conn:
            if await conn.fetchval(query, advisory):
                return True
        await asyncio.sleep(0.05)
    return False


async def test_a_grant_written_during_a_rename_follows_the_model(parts: Parts) -> None:
    """The race the name lock closes: a DENY on ``a`` whose transaction is under way when ``a``
    is renamed. The rename waits for it and moves it; without the lock it would move only the
    grants already committed and leave the DENY on ``a``, a name no model has."""
    auth, registry = parts.auth, parts.registry
    await auth.create_user("bob", "x", False)
    await registry.create_registered_model(ADMIN, "a", [], None)
    async with parts.db.transaction() as blocker:
        # Holds the grant write after it took its name lock: it waits for the epoch row.
        await blocker.execute("SELECT 1 FROM auth_state WHERE id = 1 FOR UPDATE")
        grant = asyncio.create_task(
            auth.grant_user("bob", MODEL, "a", Permission.DENY, replace=False)
        )
        assert await _wait_for_lock_wait(parts.db, advisory=False)
        rename = asyncio.create_task(registry.rename_registered_model(ADMIN, "a", "b"))
        assert await _wait_for_lock_wait(parts.db, advisory=True)
        assert not rename.done()
    await asyncio.wait_for(asyncio.gather(grant, rename), 10)
    assert await _held(auth, "bob") == {("b", Permission.DENY)}


async def test_an_imported_grant_written_during_a_rename_follows_the_model(parts: Parts) -> None:
    """``users import-mlflow`` writes per-name model grants under the same name locks: an import
    under way when its model is renamed makes the rename wait, and the imported DENY follows."""
    auth, registry = parts.auth, parts.registry
    await registry.create_registered_model(ADMIN, "a", [], None)
    data = AuthImport(
        users=(ImportedUser("bob", None, False, (Grant(MODEL, "a", Permission.DENY),), ()),),
        roles=(),
    )
    async with parts.db.transaction() as blocker:
        # Holds the import after it took its name locks: it waits for the epoch row.
        await blocker.execute("SELECT 1 FROM auth_state WHERE id = 1 FOR UPDATE")
        imported = asyncio.create_task(auth.import_users(data, skip_existing=False, audit=IMPORTER))
        assert await _wait_for_lock_wait(parts.db, advisory=False)
        rename = asyncio.create_task(registry.rename_registered_model(ADMIN, "a", "b"))
        assert await _wait_for_lock_wait(parts.db, advisory=True)
        assert not rename.done()
    await asyncio.wait_for(asyncio.gather(imported, rename), 10)
    assert await _held(auth, "bob") == {("b", Permission.DENY)}


async def test_a_grant_that_needs_its_model_fails_after_a_delete_it_waited_for(
    parts: Parts,
) -> None:
    """A non-admin's grant write (``if_no_model``) whose model is deleted while it runs: it
    waits for the delete on the name lock, then finds no model and writes nothing. Checked
    before the lock, it would land as a grant set in advance on a name no model has."""
    auth, registry = parts.auth, parts.registry
    await auth.create_user("bob", "x", False)
    await registry.create_registered_model(ADMIN, "r", [], None)
    await auth.grant_user("bob", MODEL, "r", Permission.READ, replace=False)
    async with parts.db.transaction() as blocker:
        # The delete holds the name lock and waits for the epoch row to drop the grants.
        await blocker.execute("SELECT 1 FROM auth_state WHERE id = 1 FOR UPDATE")
        delete = asyncio.create_task(registry.delete_registered_model(ADMIN, "r"))
        assert await _wait_for_lock_wait(parts.db, advisory=False)
        grant = asyncio.create_task(
            auth.grant_user(
                "bob", MODEL, "r", Permission.EDIT, replace=True, if_no_model=NotFound("gone")
            )
        )
        assert await _wait_for_lock_wait(parts.db, advisory=True)
    await asyncio.wait_for(delete, 10)
    with pytest.raises(NotFound, match="gone"):
        await asyncio.wait_for(grant, 10)
    assert await _held(auth, "bob") == set()


async def test_writes_of_other_models_do_not_wait_for_an_open_create(
    parts: Parts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A create with a creator keeps its transaction open (after its grant is written); a
    rename and a delete that move grants, a grant write and another create, all on other names,
    finish meanwhile. With the old ``auth_state`` lock (create shared, the rest exclusive) each
    of them queued behind the create."""
    auth, registry = parts.auth, parts.registry
    bob = await auth.create_user("bob", "x", False)
    for name in ("a", "d"):
        await registry.create_registered_model(ADMIN, name, [], None)
        await auth.grant_user("bob", MODEL, name, Permission.EDIT, replace=False)
    written, release = asyncio.Event(), asyncio.Event()
    write_creator_grant = pg_auth.write_creator_grant

    async def held_open(*args: Any) -> None:
        await write_creator_grant(*args)
        if args[3] == "slow":
            written.set()
            await release.wait()

    monkeypatch.setattr(pg_auth, "write_creator_grant", held_open)
    slow = asyncio.create_task(registry.create_registered_model(ADMIN, "slow", [], None, bob.id))
    try:
        await asyncio.wait_for(written.wait(), 10)
        before = await auth.auth_epochs()
        others = asyncio.gather(
            registry.rename_registered_model(ADMIN, "a", "b"),
            registry.delete_registered_model(ADMIN, "d"),
            auth.grant_user("bob", MODEL, "x", Permission.READ, replace=False),
            registry.create_registered_model(ADMIN, "fast", [], None, bob.id),
        )
        await asyncio.wait_for(others, 10)
        assert not slow.done()
        assert (await auth.auth_epochs()).grants == before.grants + 3
    finally:
        release.set()
        await slow
    assert await _held(auth, "bob") == {
        ("b", Permission.EDIT),
        ("x", Permission.READ),
        ("fast", Permission.MANAGE),
        ("slow", Permission.MANAGE),
    }
