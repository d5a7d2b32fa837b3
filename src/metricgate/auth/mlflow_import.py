"""Read MLflow's auth database (``basic_auth.db``, its SQLite default) for ``metricgate users
import-mlflow`` (docs/design-auth.md B9).

MLflow 3.x keeps every grant as a ``role_permissions`` row of a role (alembic revision
``e5f6a7b8c9d0`` moved the older per-resource tables there and left those tables behind as a
stale snapshot): a per-user grant sits on the hidden role ``__user_<id>__``, assigned to that
user. That is metricgate's own model (migration 0009), so the mapping is one to one: users keep
their werkzeug password hash (``auth.passwords`` verifies it and re-hashes to argon2id at the
first good login), admin flag, per-user grants and role assignments; named roles keep their
grants. Read-only, with ``sqlite3`` from the standard library: no MLflow or SQLAlchemy needed.

What metricgate has no place for is left out and listed in ``MlflowAuthData.notes``: roles of
workspaces other than ``default`` (metricgate has one), and grants on resource types other than
``experiment``, ``registered_model`` and ``workspace`` (prompts, scorers, gateway, sub-tiers).
A database from before the role migration is refused with the command that upgrades it: its
grants live in tables this reader does not interpret.
"""

from __future__ import annotations

import re
import sqlite3
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from metricgate.auth.passwords import is_werkzeug_hash
from metricgate.domain.auth.entities import DEFAULT_WORKSPACE
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType, check_grant
from metricgate.domain.auth.rules import check_role_name, check_username
from metricgate.domain.errors import InvalidParameter
from metricgate.stores.base import AuthImport, ImportedRole, ImportedUser

VERSION_TABLE = "alembic_version_auth"
# MLflow's auth revisions before ``e5f6a7b8c9d0`` (grants in per-resource tables).
PRE_ROLE_REVISIONS = frozenset(
    {"8606fa83a998", "0965eb92f5f0", "a1b2c3d4e5f6", "2ed73881770d", "c3d4e5f6a7b8"}
)
ROLE_TABLES = ("users", "roles", "role_permissions", "user_role_assignments")
_SYNTHETIC_ROLE = re.compile(r"^__user_(\d+)__$")


class ImportRefused(Exception):
    """The file is not an MLflow auth database this reader can take; the message says why."""


@dataclass(frozen=True, slots=True)
class MlflowAuthData:
    data: AuthImport
    revision: str
    notes: tuple[str, ...]  # what was left out, and users who cannot log in as imported


def read_mlflow_auth(path: str | Path) -> MlflowAuthData:
    """The users, roles and grants of the MLflow auth database at ``path``."""
    file = Path(path)
    if not file.is_file():
        raise ImportRefused(f"{file}: no such file")
    try:
        # mode=ro: never create an empty database for a mistyped name, never write.
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ImportRefused(f"{file}: cannot open: {exc}") from exc
    try:
        return _read(conn, file)
    except sqlite3.DatabaseError as exc:
        raise ImportRefused(f"{file}: not a readable MLflow auth database: {exc}") from exc
    finally:
        conn.close()


def _read(conn: sqlite3.Connection, file: Path) -> MlflowAuthData:
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "users" not in tables:
        raise ImportRefused(f"{file}: not an MLflow auth database (no users table)")
    revision = ""
    if VERSION_TABLE in tables:
        row = conn.execute(f"SELECT version_num FROM {VERSION_TABLE}").fetchone()
        revision = row[0] if row else ""
    if revision in PRE_ROLE_REVISIONS or not revision or not set(ROLE_TABLES) <= tables:
        raise ImportRefused(
            f"{file}: an MLflow auth database from before MLflow 3 moved grants into roles "
            f"(revision {revision or 'unversioned'}); upgrade it first with MLflow 3 installed: "
            f"python -m mlflow.server.auth db upgrade --url sqlite:///{file}"
        )

    notes: list[str] = []
    users: dict[int, tuple[str, str | None, bool]] = {}
    odd_hashes: list[str] = []
    for user_id, username, password_hash, is_admin in conn.execute(
        "SELECT id, username, password_hash, is_admin FROM users ORDER BY id"
    ):
        try:
            name = check_username(username)
        except InvalidParameter as exc:
            raise ImportRefused(f"{file}: user id {user_id}: {exc}") from exc
        if password_hash is not None and not is_werkzeug_hash(password_hash):
            odd_hashes.append(name)
        users[user_id] = (name, password_hash, bool(is_admin))
    if odd_hashes:
        notes.append(
            "password hashes metricgate cannot verify (not werkzeug scrypt/pbkdf2), so these "
            "users need a new password (metricgate users set-password): " + ", ".join(odd_hashes)
        )

    skipped_types: Counter[str] = Counter()
    grants_of: dict[int, list[Grant]] = {}
    for role_id, resource_type, pattern, permission in conn.execute(
        "SELECT role_id, resource_type, resource_pattern, permission FROM role_permissions "
        "ORDER BY id"
    ):
        grant = _grant(resource_type, pattern, permission)
        if grant is None:
            skipped_types[f"{resource_type} {permission}"] += 1
            continue
        grants_of.setdefault(role_id, []).append(grant)

    assigned: dict[int, list[int]] = {}
    for user_id, role_id in conn.execute(
        "SELECT user_id, role_id FROM user_role_assignments ORDER BY id"
    ):
        assigned.setdefault(role_id, []).append(user_id)

    user_grants: dict[int, list[Grant]] = {}
    user_roles: dict[int, list[str]] = {}
    roles: list[ImportedRole] = []
    other_workspaces: Counter[str] = Counter()
    for role_id, name, workspace, description in conn.execute(
        "SELECT id, name, workspace, description FROM roles ORDER BY id"
    ):
        if workspace != DEFAULT_WORKSPACE:
            other_workspaces[workspace] += 1
            continue
        synthetic = _SYNTHETIC_ROLE.match(name)
        if synthetic is not None:
            # A per-user role: its grants become the owner's (named by the role, as MLflow's
            # store and its migration make it; an assignment to anyone else is ignored).
            owner = int(synthetic.group(1))
            if owner in users:
                user_grants.setdefault(owner, []).extend(grants_of.get(role_id, ()))
            continue
        try:
            check_role_name(name)
        except InvalidParameter as exc:
            raise ImportRefused(f"{file}: role id {role_id}: {exc}") from exc
        roles.append(ImportedRole(name, description, tuple(grants_of.get(role_id, ()))))
        for user_id in assigned.get(role_id, ()):
            if user_id in users:
                user_roles.setdefault(user_id, []).append(name)

    if other_workspaces:
        notes.append(
            "roles of other workspaces left out (metricgate has one, 'default'): "
            + ", ".join(f"{w} ({n})" for w, n in sorted(other_workspaces.items()))
        )
    if skipped_types:
        notes.append(
            "grants on resource types metricgate does not have left out: "
            + ", ".join(f"{t} x{n}" for t, n in sorted(skipped_types.items()))
        )
    imported = tuple(
        ImportedUser(
            username=name,
            password_hash=password_hash,
            is_admin=is_admin,
            grants=tuple(user_grants.get(user_id, ())),
            roles=tuple(user_roles.get(user_id, ())),
        )
        for user_id, (name, password_hash, is_admin) in users.items()
    )
    return MlflowAuthData(AuthImport(imported, tuple(roles)), revision, tuple(notes))


def _grant(resource_type: object, pattern: object, permission: object) -> Grant | None:
    """The grant as metricgate holds it, or None where metricgate has no such type or level."""
    try:
        kind = ResourceType(resource_type)
        level = Permission[str(permission)]
        if not isinstance(pattern, str):
            return None
        check_grant(kind, pattern, level)
    except (ValueError, KeyError, InvalidParameter):
        return None
    return Grant(kind, pattern, level)
