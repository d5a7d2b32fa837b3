"""Registered-model grants follow the model in the registry write's own transaction (design-auth
B2): a rename moves them to the new name, a delete removes them, a create with a creator writes
its MANAGE; grant_epoch moves only when grants moved; a failed write leaves the grants alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from metricgate.config import PostgresSettings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.errors import AlreadyExists, NotFound
from metricgate.domain.registry.entities import Audit
from metricgate.registry.service import RegistryService
from metricgate.stores.postgres.auth import PgAuthStore
from metricgate.stores.postgres.experiments import PgExperimentStore
from metricgate.stores.postgres.pool import Database, create_pool
from metricgate.stores.postgres.registry import PgRegistryStore

ADMIN = Audit(actor="admin", comment=None, actor_verified=True)
MODEL = ResourceType.REGISTERED_MODEL


@dataclass
class Parts:
    db: Database
    registry: RegistryService
    auth: PgAuthStore


@pytest.fixture
async def parts(db_url: str) -> AsyncIterator[Parts]:
    settings = PostgresSettings(url=db_url, pool_min_size=1, pool_max_size=10)
    db = Database(await create_pool(settings), settings.acquire_timeout_s)
    try:
        yield Parts(db, RegistryService(PgRegistryStore(db, grants_follow=True)), PgAuthStore(db))
    finally:
        await db.aclose()


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
    # A grant left on a name no model had gives way to the renamed model's own.
    await auth.grant_user("carol", MODEL, "m2", Permission.MANAGE, replace=False)
    before = await auth.auth_epochs()
    await registry.rename_registered_model(ADMIN, "m", "m2")
    assert await _held(auth, "bob") == {("m2", Permission.DENY)}
    assert await _held(auth, "carol") == {("*", Permission.EDIT)}
    assert (await auth.auth_epochs()).grants == before.grants + 1
    # A new model under the old name inherits nothing.
    await registry.create_registered_model(ADMIN, "m", [], None)
    assert await _held(auth, "bob") == {("m2", Permission.DENY)}


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


async def test_grants_stay_where_they_are_when_auth_is_off(parts: Parts) -> None:
    auth = parts.auth
    registry = RegistryService(PgRegistryStore(parts.db))
    await auth.create_user("bob", "x", False)
    await registry.create_registered_model(ADMIN, "m", [], None)
    await auth.grant_user("bob", MODEL, "m", Permission.DENY, replace=False)
    await registry.rename_registered_model(ADMIN, "m", "m2")
    assert await _held(auth, "bob") == {("m", Permission.DENY)}


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
