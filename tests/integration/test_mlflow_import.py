"""``metricgate users import-mlflow`` against a real MLflow auth database and real PostgreSQL
(docs/design-auth.md B9): the ``basic_auth.db`` is made by MLflow's own auth store
(``mlflow.server.auth.sqlalchemy_store.SqlAlchemyStore``, once for the module); users, admin
flags, per-user grants, roles and assignments come over in one audited transaction; a name that
exists refuses the whole import unless skipped; a user then logs in with their MLflow password,
which is re-hashed to argon2id by a compare-and-set that a concurrent password change wins
(docs/design-auth.md B3), moving no epoch."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import argon2
import pytest
from werkzeug.security import generate_password_hash

from metricgate.auth.authenticator import Authenticator
from metricgate.auth.mlflow_import import ImportRefused, read_mlflow_auth
from metricgate.auth.passwords import Passwords
from metricgate.cli import main
from metricgate.config import AuthSettings
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.errors import AlreadyExists
from metricgate.stores.base import AuditContext, AuthStore
from metricgate.stores.postgres.auth import PgAuthStore
from metricgate.stores.postgres.pool import Database

FAST = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
SYSTEM = AuditContext(None, None, "system", None)
PASSWORDS = {
    "alice": "alice-password-1",  # admin
    "bob": "bob-password-123",  # per-user grants and a role
    "carol": "carol-password-1",  # the role only
    "dave": "dave-password-12",  # a pbkdf2 hash
}
EXP, MODEL = ResourceType.EXPERIMENT, ResourceType.REGISTERED_MODEL


@pytest.fixture(scope="module")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """basic_auth.db as MLflow 3's auth server leaves it (alembic head, grants on roles)."""
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore

    path = tmp_path_factory.mktemp("mlflow-auth") / "basic_auth.db"
    mlflow = SqlAlchemyStore()
    mlflow.init_db(f"sqlite:///{path}")
    users = {
        name: mlflow.create_user(name, password, is_admin=name == "alice")
        for name, password in PASSWORDS.items()
    }
    mlflow.create_experiment_permission("1", "bob", "READ")
    mlflow.create_registered_model_permission("churn", "bob", "EDIT")
    mlflow.create_experiment_permission("2", "bob", "DENY")
    mlflow.create_scorer_permission("1", "judge", "bob", "READ")  # no scorers here
    role = mlflow.create_role("analysts", "default", "read everything")
    mlflow.add_role_permission(role.id, "experiment", "*", "READ")
    mlflow.add_role_permission(role.id, "registered_model", "*", "USE")
    for name in ("bob", "carol"):
        mlflow.assign_role_to_user(users[name].id, role.id)
    mlflow.engine.dispose()
    # werkzeug's other format, as an older MLflow (or a changed default) leaves it.
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE users SET password_hash = ? WHERE username = 'dave'",
            (generate_password_hash(PASSWORDS["dave"], method="pbkdf2:sha256:1000"),),
        )
    return path


@pytest.fixture
async def store(db: Database) -> PgAuthStore:
    return PgAuthStore(db)


@pytest.fixture
async def passwords() -> AsyncIterator[Passwords]:
    pool = Passwords(FAST)
    yield pool
    pool.close()


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def authenticator(store: Any, passwords: Passwords) -> Authenticator:
    # A cache of 0: every call verifies the password, as a first login anywhere does.
    settings = AuthSettings(mode="on", cache_entries=0)
    return Authenticator(cast(AuthStore, store), settings, passwords=passwords)


async def audit_actions(store: PgAuthStore) -> list[tuple[str, str | None]]:
    found, _ = await store.list_audit(1000, None)
    return sorted((e.action, e.target_id) for e in found)


async def test_import_brings_users_roles_grants_and_logins(
    store: PgAuthStore, passwords: Passwords, mlflow_db: Path
) -> None:
    found = read_mlflow_auth(mlflow_db)
    assert found.revision == "f1a2b3c4d5e6"
    assert any("scorer READ x1" in note for note in found.notes)
    before = await store.auth_epochs()
    outcome = await store.import_users(found.data, skip_existing=False, audit=SYSTEM)

    assert outcome.users == ("alice", "bob", "carol", "dave")
    assert (outcome.roles, outcome.grants, outcome.assignments) == (("analysts",), 5, 2)
    assert [(u.username, u.is_admin) for u in await store.list_users()] == [
        ("alice", True),
        ("bob", False),
        ("carol", False),
        ("dave", False),
    ]
    bob = await store.get_user("bob")
    assert set(await store.user_grants(bob.id)) == {
        Grant(EXP, "1", Permission.READ),
        Grant(EXP, "2", Permission.DENY),
        Grant(MODEL, "churn", Permission.EDIT),
        Grant(EXP, "*", Permission.READ),
        Grant(MODEL, "*", Permission.USE),
    }
    assert [r.name for r in await store.list_user_roles("carol")] == ["analysts"]
    assert (await store.auth_epochs()).grants == before.grants + 1
    assert len(await audit_actions(store)) == 6  # 4 users, 1 role, the summary
    assert ("users.imported", None) in await audit_actions(store)

    # MLflow's hashes as they were: scrypt (werkzeug's default) and pbkdf2.
    bob_before = await store.user_credentials("bob")
    assert bob_before is not None and bob_before.password_hash is not None
    assert bob_before.password_hash.startswith("scrypt:32768:8:1$")
    epochs = await store.auth_epochs()

    auth = authenticator(store, passwords)
    try:
        for name, password in PASSWORDS.items():
            credential = await auth.authenticate(basic(name, password))
            assert credential is not None and credential.username == name
            stored = await store.user_credentials(name)
            assert stored is not None and stored.password_hash is not None
            assert stored.password_hash.startswith("$argon2id$")
        bob_after = await store.user_credentials("bob")
        assert bob_after is not None
        # The same password: nothing cached anywhere went stale.
        assert bob_after.cred_version == bob_before.cred_version
        assert await store.auth_epochs() == epochs
        # The new hash holds the same password, and only it.
        assert await auth.authenticate(basic("bob", PASSWORDS["bob"])) is not None
        assert await auth.authenticate(basic("bob", "bob-password-124")) is None
    finally:
        auth.close()


async def test_an_existing_name_refuses_everything_unless_skipped(
    store: PgAuthStore, passwords: Passwords, mlflow_db: Path
) -> None:
    mine = await passwords.hash("metricgate-password-1")
    await store.create_user("bob", mine, False)
    await store.create_role("analysts", "default", "ours")
    data = read_mlflow_auth(mlflow_db).data

    with pytest.raises(AlreadyExists, match="users bob and roles analysts"):
        await store.import_users(data, skip_existing=False, audit=SYSTEM)
    assert [u.username for u in await store.list_users()] == ["bob"]
    assert await audit_actions(store) == []

    outcome = await store.import_users(data, skip_existing=True, audit=SYSTEM)
    assert (outcome.skipped_users, outcome.skipped_roles) == (("bob",), ("analysts",))
    assert outcome.users == ("alice", "carol", "dave")
    # bob keeps his password and gets none of MLflow bob's grants; carol's assignment was to
    # MLflow's "analysts", not to the role of that name here.
    bob = await store.user_credentials("bob")
    assert bob is not None and bob.password_hash == mine
    assert await store.user_grants(bob.user.id) == []
    assert await store.list_user_roles("carol") == []
    assert (await store.list_roles())[0].description == "ours"


async def test_the_cli_imports_and_a_second_run_refuses(
    db_url: str, store: PgAuthStore, mlflow_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["users", "import-mlflow", str(mlflow_db), "--database-url", db_url]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    assert "4 users (1 admins), 1 roles, 5 grants, 2 role assignments" in out
    assert "note: grants on resource types metricgate does not have" in out
    assert await asyncio.to_thread(main, argv) == 1
    assert "already exist here" in capsys.readouterr().err
    assert len(await store.list_users()) == 4
    entries, _ = await store.list_audit(1000, None)
    assert len(entries) == 6
    assert all(
        e.auth_method == "system"
        and e.details["via"] == "metricgate users import-mlflow"
        and e.details["source"] == "basic_auth.db"
        for e in entries
    )


async def test_rehash_loses_to_a_concurrent_password_change(
    store: PgAuthStore, passwords: Passwords
) -> None:
    imported = generate_password_hash("old-password-123", method="scrypt:1024:8:1")
    user = await store.create_user("erin", imported, False)
    changed = await passwords.hash("new-password-456")

    class ChangedMeanwhile:
        """The store, where set-password commits between the login's verify and its swap."""

        def __getattr__(self, name: str) -> Any:
            return getattr(store, name)

        async def rehash_password(self, user_id: int, old_hash: str, new_hash: str) -> bool:
            await store.set_password("erin", changed)
            return await store.rehash_password(user_id, old_hash, new_hash)

    auth = authenticator(ChangedMeanwhile(), passwords)
    try:
        # The login itself succeeds (it verified what was stored when it looked) ...
        assert await auth.authenticate(basic("erin", "old-password-123")) is not None
    finally:
        auth.close()
    # ... but the password changed meanwhile stands: the swap found another hash.
    stored = await store.user_credentials("erin")
    assert stored is not None and stored.password_hash == changed
    assert not await store.rehash_password(user.id, imported, "$argon2id$whatever")


async def test_databases_before_the_role_migration_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "basic_auth.db"
    with sqlite3.connect(path) as conn:  # MLflow < 3.6: no alembic table
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT)")
        conn.execute("CREATE TABLE experiment_permissions (id INTEGER PRIMARY KEY)")
    with pytest.raises(ImportRefused, match=r"mlflow\.server\.auth db upgrade"):
        read_mlflow_auth(path)
    with pytest.raises(ImportRefused, match="no such file"):
        read_mlflow_auth(tmp_path / "missing.db")
    assert not (tmp_path / "missing.db").exists()
