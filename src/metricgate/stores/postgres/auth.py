"""Users, roles, grants, API tokens and the audit log in PostgreSQL (migration 0009_auth.sql).

Every write that changes what someone may do bumps one of ``auth_state``'s epochs in its own
transaction: ``cred_epoch`` (and the user's ``cred_version``) for what a credential proves
(password, admin flag, user delete, token revoke), ``grant_epoch`` for grants, roles and
assignments. The processes' credential and grant caches compare against those
(docs/design-auth.md B3). The single ``auth_state`` row serialises such writes, which are rare;
reads never touch it except ``auth_epochs``. The creator's MANAGE grant, written on every create,
bumps nothing: it only adds access, which the access check finds by re-reading on a denial.

Registered-model grants are keyed by the model's name and follow a rename or delete. Every
write that adds, moves or removes the grants of one model name (a per-name grant write, a model
create with a creator, rename, delete) first takes that name's transaction-scoped advisory lock
(``lock_model_names``), so a grant written on a name cannot slip past a rename or delete of it;
writes on other names never wait for it. Lock order, everywhere: name locks (sorted), then the
model row, then the ``auth_state`` row, then grant rows.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

import asyncpg
import orjson

from metricgate.domain.auth.entities import (
    DEFAULT_WORKSPACE,
    ApiToken,
    Assignment,
    Role,
    RolePermission,
    User,
    user_role_name,
)
from metricgate.domain.auth.permissions import (
    Grant,
    Permission,
    ResourceType,
    check_grant,
)
from metricgate.domain.auth.rules import check_role_name, check_workspace
from metricgate.domain.errors import (
    AlreadyExists,
    Conflict,
    InvalidParameter,
    MetricgateError,
    NotFound,
)
from metricgate.domain.search.paging import decode_keyset_token, encode_keyset_token
from metricgate.observability import current_request_id
from metricgate.stores.base import (
    AuditContext,
    AuditEntry,
    AuthEpochs,
    AuthImport,
    GrantHolder,
    ImportOutcome,
    PermissionRow,
    TokenCredentials,
    UserCredentials,
)
from metricgate.stores.postgres.pool import Database, PgConnection

# Any constant works; it only has to be the same for every metricgate process.
_BOOTSTRAP_LOCK_KEY = 0x6D67_6164  # "mgad"
MAX_AUDIT_RESULTS = 1000

_USER_COLUMNS = "u.user_id, u.username, u.is_admin"
_TOKEN_COLUMNS = (
    "t.token_id, t.user_id, t.name, t.hint, t.created_at, t.expires_at, t.last_used_at, "
    "t.revoked_at"
)
_GRANT_COLUMNS = "g.grant_id, g.role_id, g.resource_type, g.resource_pattern, g.permission"
_ROLE_COLUMNS = "r.role_id, r.name, r.workspace, r.description"
_AUDIT_COLUMNS = (
    "id, at, actor_id, actor, auth_method, host(client_addr) AS client_addr, action, "
    "target_type, target_id, details, request_id"
)
_LIVE_TOKEN = "t.revoked_at IS NULL AND (t.expires_at IS NULL OR t.expires_at > clock_timestamp())"


def _ms(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def _user(row: asyncpg.Record) -> User:
    return User(id=row["user_id"], username=row["username"], is_admin=row["is_admin"])


def _token(row: asyncpg.Record) -> ApiToken:
    return ApiToken(
        id=row["token_id"],
        user_id=row["user_id"],
        name=row["name"],
        hint=row["hint"],
        created_at_ms=_ms(row["created_at"]) or 0,
        expires_at_ms=_ms(row["expires_at"]),
        last_used_at_ms=_ms(row["last_used_at"]),
        revoked_at_ms=_ms(row["revoked_at"]),
    )


def _role_permission(row: asyncpg.Record) -> RolePermission:
    return RolePermission(
        id=row["grant_id"],
        role_id=row["role_id"],
        resource_type=ResourceType(row["resource_type"]),
        resource_pattern=row["resource_pattern"],
        permission=Permission[row["permission"]],
    )


def _user_not_found(username: str) -> NotFound:
    return NotFound(f"User with username={username[:300]} not found")


def _role_not_found(role_id: int) -> NotFound:
    return NotFound(f"Role with id={role_id} not found")


def inet_or_none(value: str | None) -> str | None:
    """The peer's address as inet accepts it; anything else (a unix socket's '') is dropped
    rather than failing the write the audit entry belongs to (auth's and the approvals')."""
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


async def _insert_audit(
    conn: PgConnection,
    who: AuditContext,
    action: str,
    target_type: str | None,
    target_id: str | int | None,
    details: dict[str, Any],
) -> int:
    entry_id = await conn.fetchval(
        """INSERT INTO audit_log (actor_id, actor, auth_method, client_addr, action,
                                  target_type, target_id, details, request_id)
           VALUES ($1, $2, $3, $4::inet, $5, $6, $7, $8::jsonb, $9) RETURNING id""",
        who.actor_id,
        who.actor,
        who.method,
        inet_or_none(who.client_addr),
        action,
        target_type,
        None if target_id is None else str(target_id),
        orjson.dumps(details).decode("utf-8"),
        # An entry written while a request runs is filed under it, whoever builds the context.
        who.request_id or current_request_id(),
    )
    assert isinstance(entry_id, int)
    return entry_id


async def _audited(
    conn: PgConnection,
    who: AuditContext | None,
    action: str,
    target_type: str,
    target_id: str | int | None,
    details: dict[str, Any] | None = None,
) -> None:
    """The change's audit entry, in the change's transaction (``conn``): a change that fails
    after this leaves no entry, and an entry that cannot be written undoes the change."""
    if who is not None:
        await _insert_audit(conn, who, action, target_type, target_id, details or {})


async def audit_deletion(
    conn: PgConnection,
    who: AuditContext | None,
    action: str,
    target_type: str,
    target_id: str,
    details: dict[str, Any] | None = None,
) -> None:
    """A tracking or registry store's delete, audited in the delete's transaction (``conn``),
    as the auth writes are: a crash between the two cannot keep one without the other."""
    await _audited(conn, who, action, target_type, target_id, details)


def _grant_details(row: asyncpg.Record, old: str | None = None) -> dict[str, Any]:
    details = {
        "role_permission_id": row["grant_id"],
        "role_id": row["role_id"],
        "resource_type": row["resource_type"],
        "resource_pattern": row["resource_pattern"],
        "permission": row["permission"],
    }
    if old is not None:
        details["old"] = old
    return details


async def _bump(conn: PgConnection, user_id: int) -> None:
    """Mark this user's cached credentials stale (inside ``_changing("cred_epoch")``)."""
    await conn.execute(
        "UPDATE auth_users SET cred_version = cred_version + 1 WHERE user_id = $1", user_id
    )


async def _user_id(conn: PgConnection, username: str) -> int:
    user_id = await conn.fetchval("SELECT user_id FROM auth_users WHERE username = $1", username)
    if user_id is None:
        raise _user_not_found(username)
    assert isinstance(user_id, int)
    return user_id


async def _hidden_role(conn: PgConnection, user_id: int) -> int:
    """The user's hidden role, created (and assigned to it) on first use."""
    find = "SELECT role_id FROM auth_roles WHERE owner_user = $1"
    role_id = await conn.fetchval(find, user_id)
    if role_id is None:
        await conn.execute(
            """INSERT INTO auth_roles (name, owner_user) VALUES ($2, $1)
               ON CONFLICT DO NOTHING""",
            user_id,
            user_role_name(user_id),
        )
        # A concurrent writer's row, if that one won, is visible to this new statement.
        role_id = await conn.fetchval(find, user_id)
        if role_id is None:
            # Only a role created behind the API's back can hold the reserved name.
            raise MetricgateError(f"Role {user_role_name(user_id)!r} exists without its owner")
    await conn.execute(
        """INSERT INTO auth_role_users (user_id, role_id) VALUES ($1, $2)
           ON CONFLICT DO NOTHING""",
        user_id,
        role_id,
    )
    assert isinstance(role_id, int)
    return role_id


async def _roles(conn: PgConnection, where: str, *args: Any) -> list[Role]:
    """Roles selected by ``where`` (on ``r``, with ``args``), each with its grants."""
    rows = await conn.fetch(f"SELECT {_ROLE_COLUMNS} FROM auth_roles r {where}", *args)
    ids = [r["role_id"] for r in rows]
    grants: dict[int, list[RolePermission]] = {i: [] for i in ids}
    if ids:
        for g in await conn.fetch(
            f"""SELECT {_GRANT_COLUMNS} FROM auth_grants g
                WHERE g.role_id = ANY($1::bigint[]) ORDER BY g.grant_id""",
            ids,
        ):
            grants[g["role_id"]].append(_role_permission(g))
    return [
        Role(
            id=r["role_id"],
            name=r["name"],
            workspace=r["workspace"],
            description=r["description"],
            permissions=tuple(grants[r["role_id"]]),
        )
        for r in rows
    ]


async def _role_row(conn: PgConnection, role_id: int, *, lock: bool = False) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT role_id, name, owner_user FROM auth_roles WHERE role_id = $1"
        + (" FOR UPDATE" if lock else ""),
        role_id,
    )
    if row is None:
        raise _role_not_found(role_id)
    return row


def _name_lock_key(resource_type: ResourceType, name: str) -> int:
    """A stable 64-bit advisory-lock key for one resource name, the same in every process (a
    keyed digest, not Python's salted ``hash``). Two names sharing a key only wait for each
    other; the ``person`` tag keeps these keys apart from any other advisory key in practice."""
    raw = f"{resource_type.value}\0{name}".encode()
    digest = hashlib.blake2b(raw, digest_size=8, person=b"mg-name-lock").digest()
    return int.from_bytes(digest, "big", signed=True)


async def lock_model_names(conn: PgConnection, *names: str) -> None:
    """Lock registered-model names until the transaction ends: the first lock of every write
    that adds, moves or removes one name's grants (create with a creator, rename, delete, a
    per-name grant write). Keys are taken in sorted order, so a rename (two names) cannot
    deadlock with another write of either name; nothing that holds a model row or the
    ``auth_state`` row ever waits for a name lock."""
    for key in sorted({_name_lock_key(ResourceType.REGISTERED_MODEL, n) for n in names}):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", key)


async def _lock_grant_names(conn: PgConnection, grants: Iterable[tuple[ResourceType, str]]) -> None:
    """The name locks of the grants a write changes, each (type, pattern): only per-name
    registered-model grants follow a model. All are taken together, in key order."""
    names = [p for kind, p in grants if kind is ResourceType.REGISTERED_MODEL and p != "*"]
    if names:
        await lock_model_names(conn, *names)


async def write_creator_grant(
    conn: PgConnection, user_id: int, resource_type: ResourceType, pattern: str
) -> None:
    """The creator's MANAGE on what it made, in the create's transaction (a registered model's
    create holds the name lock). No epoch moves: MANAGE is the top level, so nobody's cached
    grants allow too much; a denial re-reads the grants and finds it. A DENY the creator
    already holds on the name (set in advance) stays: creating the model must not lift it."""
    role_id = await _hidden_role(conn, user_id)
    await conn.execute(
        """INSERT INTO auth_grants AS g (role_id, resource_type, resource_pattern, permission)
           VALUES ($1, $2, $3, 'MANAGE')
           ON CONFLICT (role_id, resource_type, resource_pattern)
           DO UPDATE SET permission = 'MANAGE' WHERE g.permission <> 'DENY'""",
        role_id,
        resource_type.value,
        pattern,
    )


async def _has_model_grants(conn: PgConnection, name: str) -> bool:
    return await any_model_grants(conn, name)


async def any_model_grants(conn: PgConnection, *names: str) -> bool:
    """Whether grants are set on any of these registered-model names: one probe of
    ``auth_grants_resource_idx``. With auth off a rename or delete asks it before anything
    else and takes the names' locks only when it finds some (no grant writes come through
    the API then); with no grants it is all that the grant bookkeeping costs."""
    found = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM auth_grants
                          WHERE resource_type = $1 AND resource_pattern = ANY($2::text[]))""",
        ResourceType.REGISTERED_MODEL.value,
        list(names),
    )
    return bool(found)


async def _require_model(
    conn: PgConnection, resource_type: ResourceType, pattern: str, missing: Exception | None
) -> None:
    """A grant write on a registered-model name that no model has raises ``missing`` (when
    given: the API gives it for callers who are not admins). Checked after the write's name
    lock, which every rename and delete of the name takes too, so the model cannot go between
    this check and the commit."""
    if missing is None or resource_type is not ResourceType.REGISTERED_MODEL or pattern == "*":
        return
    if not await conn.fetchval("SELECT 1 FROM registered_models WHERE name = $1", pattern):
        raise missing


async def _bump_grant_epoch(conn: PgConnection) -> None:
    """Before the first grant row is touched: every access change takes ``auth_state`` before
    grant rows, so taking it after them could deadlock with one (a role delete, say)."""
    await conn.execute("UPDATE auth_state SET grant_epoch = grant_epoch + 1 WHERE id = 1")


async def refuse_rename_onto_grants(
    conn: PgConnection, old: str, new: str, *, auth_on: bool = True
) -> None:
    """Refuse renaming model ``old`` to ``new`` while grants are set on the name ``new`` (an
    admin may grant on a name before any model has it; after ``lock_model_names(old, new)``, so
    none appears until the rename ends). Merging is not safe: keeping ``new``'s positive grants
    would let a caller with EDIT on ``old`` open its model to other users (a MANAGE right),
    and dropping them would silently discard an admin's DENY. Whoever manages the name revokes
    them first. ``auth_on`` false: the grants wait for access control to be switched on, and
    only then can they be listed and revoked; the message says so."""
    if await _has_model_grants(conn, new):
        how = (
            "(GET /api/2.0/metricgate/permissions/who lists them)"
            if auth_on
            else "(access control is off on this server: they apply once it is on, and can "
            "be listed and revoked then)"
        )
        raise Conflict(
            f"Cannot rename registered model '{old[:300]}' to '{new[:300]}': access grants are "
            f"already set on the name '{new[:300]}' (given before any model had it). A rename "
            f"keeps the model's own grants only; revoke those on the new name first {how}, "
            "or choose another name."
        )


async def follow_model_rename(conn: PgConnection, old: str, new: str) -> None:
    """Registered-model grants follow a rename, in the rename's transaction (after
    ``lock_model_names(old, new)`` and ``refuse_rename_onto_grants``): a DENY on ``old`` still
    holds on ``new``, and ``old`` keeps nothing for a later model of that name. ``*`` grants
    stay. The name lock keeps grants on ``old`` from appearing meanwhile, so the check and the
    move see the same rows (at most fewer, if a role is deleted meanwhile)."""
    if not await _has_model_grants(conn, old):
        return
    await _bump_grant_epoch(conn)
    await conn.execute(
        """UPDATE auth_grants SET resource_pattern = $3
           WHERE resource_type = $1 AND resource_pattern = $2""",
        ResourceType.REGISTERED_MODEL.value,
        old,
        new,
    )


async def drop_model_grants(conn: PgConnection, name: str) -> None:
    """A deleted registered model's grants go with it, in the delete's transaction (after
    ``lock_model_names(name)``): a new model given the name later starts with none of them,
    including grants set on the name before the deleted model had it (they applied to it)."""
    if not await _has_model_grants(conn, name):
        return
    await _bump_grant_epoch(conn)
    await conn.execute(
        "DELETE FROM auth_grants WHERE resource_type = $1 AND resource_pattern = $2",
        ResourceType.REGISTERED_MODEL.value,
        name,
    )


async def _insert_grants(conn: PgConnection, role_id: int, grants: tuple[Grant, ...]) -> int:
    """A new role's grants (an import: the role has none yet)."""
    for grant in grants:
        check_grant(grant.resource_type, grant.pattern, grant.permission)
    await conn.executemany(
        """INSERT INTO auth_grants (role_id, resource_type, resource_pattern, permission)
           VALUES ($1, $2, $3, $4)""",
        [(role_id, g.resource_type.value, g.pattern, g.permission.name) for g in grants],
    )
    return len(grants)


def _count(status: str) -> int:
    """The row count of an asyncpg command status (``UPDATE 3``, ``DELETE 0``)."""
    return int(status.rsplit(" ", 1)[-1])


class PgAuthStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    @contextlib.asynccontextmanager
    async def _changing(
        self,
        epoch: Literal["cred_epoch", "grant_epoch"],
        grants: Iterable[tuple[ResourceType, str]] = (),
    ) -> AsyncIterator[PgConnection]:
        """A transaction that may change someone's access. Its first row lock bumps the epoch:
        that row lock, taken before any other, also serialises these transactions, so two of
        them can never deadlock on the rows they change (a rollback undoes the bump). ``grants``:
        the (type, pattern) of each grant it writes, whose name locks come before even that (see
        ``lock_model_names``), so the write cannot interleave with a rename or delete of them."""
        async with self._db.transaction() as conn:
            await _lock_grant_names(conn, grants)
            await conn.execute(f"UPDATE auth_state SET {epoch} = {epoch} + 1 WHERE id = 1")
            yield conn

    # ------------------------------------------------------------ users

    async def create_user(
        self,
        username: str,
        password_hash: str,
        is_admin: bool,
        *,
        audit: AuditContext | None = None,
        details: dict[str, Any] | None = None,
    ) -> User:
        async with self._db.transaction() as conn:
            # Only the user's INSERT: an audit entry that cannot be written is no bad username.
            try:
                row = await conn.fetchrow(
                    """INSERT INTO auth_users AS u (username, password_hash, is_admin)
                       VALUES ($1, $2, $3) RETURNING u.user_id, u.username, u.is_admin""",
                    username,
                    password_hash,
                    is_admin,
                )
            except asyncpg.UniqueViolationError as exc:
                # Stock quotes the database's error here; its text names the table and constraint.
                raise AlreadyExists(f"User '{username[:300]}' already exists.") from exc
            except asyncpg.CheckViolationError as exc:
                raise InvalidParameter("Username must be 1 to 256 characters") from exc
            assert row is not None  # INSERT ... RETURNING: one row
            entry = {"user_id": row["user_id"], "is_admin": is_admin, **(details or {})}
            await _audited(conn, audit, "user.created", "user", username, entry)
        return _user(row)

    async def get_user(self, username: str) -> User:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_USER_COLUMNS} FROM auth_users u WHERE u.username = $1", username
            )
        if row is None:
            raise _user_not_found(username)
        return _user(row)

    async def get_user_by_id(self, user_id: int) -> User:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"SELECT {_USER_COLUMNS} FROM auth_users u WHERE u.user_id = $1", user_id
            )
        if row is None:
            raise NotFound(f"User with id={user_id} not found")
        return _user(row)

    async def list_users(self) -> list[User]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(f"SELECT {_USER_COLUMNS} FROM auth_users u ORDER BY u.user_id")
        return [_user(r) for r in rows]

    async def roles_by_user(self) -> dict[int, list[Role]]:
        async with self._db.connection() as conn:
            pairs = await conn.fetch(
                "SELECT user_id, role_id FROM auth_role_users ORDER BY user_id, role_id"
            )
            roles = {r.id: r for r in await _roles(conn, "ORDER BY r.role_id")}
        found: dict[int, list[Role]] = {}
        for pair in pairs:
            found.setdefault(pair["user_id"], []).append(roles[pair["role_id"]])
        return found

    async def user_credentials(self, username: str) -> UserCredentials | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""SELECT {_USER_COLUMNS}, u.password_hash, u.cred_version
                    FROM auth_users u WHERE u.username = $1""",
                username,
            )
        if row is None:
            return None
        return UserCredentials(_user(row), row["password_hash"], row["cred_version"])

    async def _update_user(
        self,
        username: str,
        assignment: str,
        value: object,
        audit: AuditContext | None,
        action: str,
        details: dict[str, Any],
    ) -> None:
        async with self._changing("cred_epoch") as conn:
            user_id = await conn.fetchval(
                f"UPDATE auth_users SET {assignment} WHERE username = $1 RETURNING user_id",
                username,
                value,
            )
            if user_id is None:
                raise _user_not_found(username)
            await _bump(conn, user_id)
            await _audited(conn, audit, action, "user", username, details)

    async def set_password(
        self, username: str, password_hash: str, *, audit: AuditContext | None = None
    ) -> None:
        await self._update_user(
            username, "password_hash = $2", password_hash, audit, "user.password_changed", {}
        )

    async def set_admin(
        self, username: str, is_admin: bool, *, audit: AuditContext | None = None
    ) -> None:
        await self._update_user(
            username, "is_admin = $2", is_admin, audit, "user.admin_changed", {"is_admin": is_admin}
        )

    async def delete_user(self, username: str, *, audit: AuditContext | None = None) -> None:
        # Tokens, assignments and the hidden role with its grants go by ON DELETE CASCADE; the
        # user's grant cache entries go with its credentials (cred_epoch drops both).
        async with self._changing("cred_epoch") as conn:
            user_id = await conn.fetchval(
                "DELETE FROM auth_users WHERE username = $1 RETURNING user_id", username
            )
            if user_id is None:
                raise _user_not_found(username)
            await _audited(conn, audit, "user.deleted", "user", username, {"user_id": user_id})

    async def reset_admin(
        self,
        username: str,
        password_hash: str,
        *,
        audit: AuditContext | None = None,
        details: dict[str, Any] | None = None,
    ) -> User:
        async with self._changing("cred_epoch") as conn:
            row = await conn.fetchrow(
                """UPDATE auth_users AS u SET password_hash = $2, is_admin = true
                   WHERE username = $1 RETURNING u.user_id, u.username, u.is_admin""",
                username,
                password_hash,
            )
            if row is None:
                raise _user_not_found(username)
            await _bump(conn, row["user_id"])
            entry = {"user_id": row["user_id"], "is_admin": True, **(details or {})}
            await _audited(conn, audit, "user.admin_reset", "user", username, entry)
        return _user(row)

    async def rehash_password(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        async with self._db.connection() as conn:
            status = await conn.execute(
                """UPDATE auth_users SET password_hash = $3
                   WHERE user_id = $1 AND password_hash = $2""",
                user_id,
                old_hash,
                new_hash,
            )
        return _count(status) == 1

    async def import_users(
        self,
        data: AuthImport,
        *,
        skip_existing: bool,
        audit: AuditContext,
        details: dict[str, Any] | None = None,
    ) -> ImportOutcome:
        extra = details or {}
        usernames = [u.username for u in data.users]
        role_names = [r.name for r in data.roles]
        # New users hold nothing cached anywhere, so no credential goes stale; the grants epoch
        # moves as for any role or grant change, and its row lock comes first (see _changing),
        # after the name locks of the models the imported grants name: a per-name grant
        # written here cannot slip past a rename or delete of its model.
        imported = [
            (g.resource_type, g.pattern)
            for grants in [*(u.grants for u in data.users), *(r.grants for r in data.roles)]
            for g in grants
        ]
        async with self._changing("grant_epoch", imported) as conn:
            taken_users = {
                r["username"]
                for r in await conn.fetch(
                    "SELECT username FROM auth_users WHERE username = ANY($1::text[])", usernames
                )
            }
            taken_roles = {
                r["name"]
                for r in await conn.fetch(
                    """SELECT name FROM auth_roles
                       WHERE workspace = $1 AND name = ANY($2::text[])""",
                    DEFAULT_WORKSPACE,
                    role_names,
                )
            }
            if (taken_users or taken_roles) and not skip_existing:
                parts = []
                if taken_users:
                    parts.append("users " + ", ".join(sorted(taken_users)))
                if taken_roles:
                    parts.append("roles " + ", ".join(sorted(taken_roles)))
                raise AlreadyExists(
                    f"Nothing imported: {' and '.join(parts)} already exist here "
                    "(skip them with --skip-existing)"
                )
            role_ids: dict[str, int] = {}
            grants = assignments = 0
            for role in data.roles:
                if role.name in taken_roles:
                    continue
                role_id = await conn.fetchval(
                    """INSERT INTO auth_roles (name, workspace, description)
                       VALUES ($1, $2, $3) RETURNING role_id""",
                    role.name,
                    DEFAULT_WORKSPACE,
                    role.description,
                )
                assert isinstance(role_id, int)
                role_ids[role.name] = role_id
                grants += await _insert_grants(conn, role_id, role.grants)
                entry = {"name": role.name, "grants": len(role.grants), **extra}
                await _insert_audit(conn, audit, "role.created", "role", role_id, entry)
            created: list[str] = []
            for user in data.users:
                if user.username in taken_users:
                    continue
                user_id = await conn.fetchval(
                    """INSERT INTO auth_users (username, password_hash, is_admin)
                       VALUES ($1, $2, $3) RETURNING user_id""",
                    user.username,
                    user.password_hash,
                    user.is_admin,
                )
                assert isinstance(user_id, int)
                created.append(user.username)
                if user.grants:
                    grants += await _insert_grants(
                        conn, await _hidden_role(conn, user_id), user.grants
                    )
                assigned = [role_ids[name] for name in user.roles if name in role_ids]
                for role_id in assigned:
                    await conn.execute(
                        "INSERT INTO auth_role_users (user_id, role_id) VALUES ($1, $2)",
                        user_id,
                        role_id,
                    )
                assignments += len(assigned)
                entry = {
                    "user_id": user_id,
                    "is_admin": user.is_admin,
                    "grants": len(user.grants),
                    "roles": [name for name in user.roles if name in role_ids],
                    **extra,
                }
                await _insert_audit(conn, audit, "user.created", "user", user.username, entry)
            outcome = ImportOutcome(
                users=tuple(created),
                roles=tuple(role_ids),
                grants=grants,
                assignments=assignments,
                skipped_users=tuple(sorted(taken_users)),
                skipped_roles=tuple(sorted(taken_roles)),
            )
            summary = {
                "users": len(outcome.users),
                "roles": len(outcome.roles),
                "grants": grants,
                "assignments": assignments,
                "skipped_users": list(outcome.skipped_users),
                "skipped_roles": list(outcome.skipped_roles),
                **extra,
            }
            await _insert_audit(conn, audit, "users.imported", None, None, summary)
        return outcome

    async def any_admin(self) -> bool:
        async with self._db.connection() as conn:
            found = await conn.fetchval("SELECT EXISTS (SELECT 1 FROM auth_users WHERE is_admin)")
        return bool(found)

    async def create_admin_if_none(
        self,
        username: str,
        password_hash: str,
        *,
        audit: AuditContext | None = None,
        details: dict[str, Any] | None = None,
    ) -> bool:
        async with self._db.transaction() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _BOOTSTRAP_LOCK_KEY)
            if await conn.fetchval("SELECT EXISTS (SELECT 1 FROM auth_users WHERE is_admin)"):
                return False
            created = await conn.fetchval(
                """INSERT INTO auth_users (username, password_hash, is_admin) VALUES ($1, $2, true)
                   ON CONFLICT (username) DO NOTHING RETURNING user_id""",
                username,
                password_hash,
            )
            if created is not None:
                entry = {"user_id": created, "is_admin": True, **(details or {})}
                await _audited(conn, audit, "user.created", "user", username, entry)
        if created is None:
            raise AlreadyExists(
                f"No admin exists, and user '{username[:300]}' exists but is not an admin; "
                "choose another admin username or make that user an admin"
            )
        return True

    # ------------------------------------------------------------ tokens

    async def create_token(
        self,
        user_id: int,
        name: str,
        digest: bytes,
        hint: str,
        expires_at_ms: int | None,
        *,
        audit: AuditContext | None = None,
    ) -> ApiToken:
        async with self._db.transaction() as conn:
            # Only the token's INSERT: an audit entry that cannot be written is no bad token.
            try:
                row = await conn.fetchrow(
                    f"""INSERT INTO auth_tokens AS t (user_id, name, token_hash, hint, expires_at)
                        VALUES ($1, $2, $3, $4, to_timestamp($5::bigint / 1000.0))
                        RETURNING {_TOKEN_COLUMNS}""",
                    user_id,
                    name,
                    digest,
                    hint,
                    expires_at_ms,
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "auth_tokens_live_name":
                    raise AlreadyExists(f"A token named '{name[:300]}' already exists") from exc
                raise AlreadyExists("This token is already registered") from exc
            except asyncpg.ForeignKeyViolationError as exc:
                raise NotFound(f"User with id={user_id} not found") from exc
            except asyncpg.CheckViolationError as exc:
                raise InvalidParameter("A token needs a name and a 32-byte digest") from exc
            assert row is not None  # INSERT ... RETURNING: one row
            token = _token(row)
            details = {
                "name": token.name,
                "hint": token.hint,
                "owner_id": token.user_id,
                "expires_at": token.expires_at_ms,
            }
            await _audited(conn, audit, "token.created", "token", token.id, details)
        return token

    async def token_credentials(self, digest: bytes) -> TokenCredentials | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f"""SELECT {_TOKEN_COLUMNS}, u.username, u.is_admin, u.cred_version
                    FROM auth_tokens t JOIN auth_users u ON u.user_id = t.user_id
                    WHERE t.token_hash = $1 AND {_LIVE_TOKEN}""",
                digest,
            )
        if row is None:
            return None
        return TokenCredentials(_user(row), _token(row), row["cred_version"])

    async def dead_token_reason(self, digest: bytes) -> str | None:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                """SELECT revoked_at IS NOT NULL AS revoked,
                          expires_at <= clock_timestamp() AS expired
                   FROM auth_tokens WHERE token_hash = $1""",
                digest,
            )
        if row is None:
            return None
        if row["revoked"]:
            return "revoked"
        return "expired" if row["expired"] else None

    async def list_tokens(self, user_id: int) -> list[ApiToken]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_TOKEN_COLUMNS} FROM auth_tokens t WHERE t.user_id = $1 ORDER BY t.token_id",
                user_id,
            )
        return [_token(r) for r in rows]

    async def revoke_token(
        self, user_id: int | None, token_id: int, *, audit: AuditContext | None = None
    ) -> ApiToken:
        async with self._changing("cred_epoch") as conn:
            row = await conn.fetchrow(
                f"""UPDATE auth_tokens t SET revoked_at = clock_timestamp()
                    WHERE t.token_id = $1 AND ($2::bigint IS NULL OR t.user_id = $2)
                      AND t.revoked_at IS NULL
                    RETURNING {_TOKEN_COLUMNS}""",
                token_id,
                user_id,
            )
            if row is None:
                raise NotFound(f"Token with id={token_id} not found")
            await _bump(conn, row["user_id"])
            token = _token(row)
            details = {"name": token.name, "hint": token.hint, "owner_id": token.user_id}
            await _audited(conn, audit, "token.revoked", "token", token.id, details)
        return token

    async def touch_token(self, token_id: int) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                """UPDATE auth_tokens SET last_used_at = clock_timestamp()
                   WHERE token_id = $1
                     AND (last_used_at IS NULL
                          OR last_used_at < clock_timestamp() - interval '1 minute')""",
                token_id,
            )

    # ------------------------------------------------------------ per-user grants

    async def user_grants(self, user_id: int) -> list[Grant]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """SELECT g.resource_type, g.resource_pattern, g.permission
                   FROM auth_role_users ru JOIN auth_grants g ON g.role_id = ru.role_id
                   WHERE ru.user_id = $1 ORDER BY g.grant_id""",
                user_id,
            )
        return [
            Grant(
                ResourceType(r["resource_type"]), r["resource_pattern"], Permission[r["permission"]]
            )
            for r in rows
        ]

    async def grant_user(
        self,
        username: str,
        resource_type: ResourceType,
        pattern: str,
        permission: Permission,
        *,
        replace: bool,
        audit: AuditContext | None = None,
        if_no_model: Exception | None = None,
    ) -> Permission | None:
        check_grant(resource_type, pattern, permission)
        async with self._changing("grant_epoch", [(resource_type, pattern)]) as conn:
            await _require_model(conn, resource_type, pattern, if_no_model)
            user_id = await _user_id(conn, username)
            role_id = await _hidden_role(conn, user_id)
            old = await conn.fetchval(
                """SELECT permission FROM auth_grants
                   WHERE role_id = $1 AND resource_type = $2 AND resource_pattern = $3
                   FOR UPDATE""",
                role_id,
                resource_type.value,
                pattern,
            )
            if old is not None and not replace:
                raise AlreadyExists(
                    f"User '{username[:300]}' already has a permission on "
                    f"{resource_type.value} '{pattern[:300]}'"
                )
            insert = """INSERT INTO auth_grants
                            (role_id, resource_type, resource_pattern, permission)
                        VALUES ($1, $2, $3, $4)"""
            if replace:
                insert += """ ON CONFLICT (role_id, resource_type, resource_pattern)
                              DO UPDATE SET permission = EXCLUDED.permission"""
            try:
                await conn.execute(insert, role_id, resource_type.value, pattern, permission.name)
            except asyncpg.UniqueViolationError as exc:
                # A concurrent grant of the same key committed after the check above.
                raise AlreadyExists(
                    f"User '{username[:300]}' already has a permission on "
                    f"{resource_type.value} '{pattern[:300]}'"
                ) from exc
            details = {
                "resource_type": resource_type.value,
                "resource_id": pattern,
                "permission": permission.name,
                "old": old,
            }
            action = "grant.set" if replace else "grant.created"
            await _audited(conn, audit, action, "user", username, details)
        return None if old is None else Permission[old]

    async def revoke_user(
        self,
        username: str,
        resource_type: ResourceType,
        pattern: str,
        *,
        audit: AuditContext | None = None,
        if_no_model: Exception | None = None,
    ) -> Permission:
        async with self._changing("grant_epoch", [(resource_type, pattern)]) as conn:
            await _require_model(conn, resource_type, pattern, if_no_model)
            user_id = await _user_id(conn, username)
            old = await conn.fetchval(
                """DELETE FROM auth_grants g USING auth_roles r
                   WHERE g.role_id = r.role_id AND r.owner_user = $1
                     AND g.resource_type = $2 AND g.resource_pattern = $3
                   RETURNING g.permission""",
                user_id,
                resource_type.value,
                pattern,
            )
            if old is None:
                raise NotFound(
                    f"User '{username[:300]}' has no permission on "
                    f"{resource_type.value} '{pattern[:300]}'"
                )
            details = {"resource_type": resource_type.value, "resource_id": pattern, "old": old}
            await _audited(conn, audit, "grant.revoked", "user", username, details)
        return Permission[old]

    async def user_permission_rows(self, username: str) -> list[PermissionRow]:
        async with self._db.connection() as conn:
            user_id = await _user_id(conn, username)
            rows = await conn.fetch(
                """SELECT r.role_id, r.name, r.workspace, g.resource_type, g.resource_pattern,
                          g.permission
                   FROM auth_role_users ru
                   JOIN auth_roles r ON r.role_id = ru.role_id
                   JOIN auth_grants g ON g.role_id = ru.role_id
                   WHERE ru.user_id = $1 ORDER BY r.role_id, g.grant_id""",
                user_id,
            )
        return [
            PermissionRow(
                role_id=r["role_id"],
                role_name=r["name"],
                workspace=r["workspace"],
                resource_type=ResourceType(r["resource_type"]),
                resource_pattern=r["resource_pattern"],
                permission=Permission[r["permission"]],
            )
            for r in rows
        ]

    async def grant_creator_manage(
        self, user_id: int, resource_type: ResourceType, pattern: str
    ) -> None:
        async with self._db.transaction() as conn:
            await _lock_grant_names(conn, [(resource_type, pattern)])
            await write_creator_grant(conn, user_id, resource_type, pattern)

    async def who_holds(self, resource_type: ResourceType, pattern: str) -> list[GrantHolder]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """SELECT g.grant_id, g.role_id, r.name, g.resource_pattern, g.permission,
                          coalesce(array_agg(u.username ORDER BY u.username)
                                   FILTER (WHERE u.username IS NOT NULL), '{}') AS usernames
                   FROM auth_grants g
                   JOIN auth_roles r ON r.role_id = g.role_id
                   LEFT JOIN auth_role_users ru ON ru.role_id = g.role_id
                   LEFT JOIN auth_users u ON u.user_id = ru.user_id
                   WHERE g.resource_type = $1 AND g.resource_pattern IN ($2, '*')
                   GROUP BY g.grant_id, r.name
                   ORDER BY g.grant_id""",
                resource_type.value,
                pattern,
            )
        return [
            GrantHolder(
                grant_id=r["grant_id"],
                role_id=r["role_id"],
                role_name=r["name"],
                resource_pattern=r["resource_pattern"],
                permission=Permission[r["permission"]],
                usernames=tuple(r["usernames"]),
            )
            for r in rows
        ]

    # ------------------------------------------------------------ roles

    async def create_role(
        self,
        name: str,
        workspace: str,
        description: str | None,
        *,
        audit: AuditContext | None = None,
    ) -> Role:
        check_role_name(name)
        workspace = check_workspace(workspace)
        try:
            async with self._db.transaction() as conn:
                role_id = await conn.fetchval(
                    """INSERT INTO auth_roles (name, workspace, description) VALUES ($1, $2, $3)
                       RETURNING role_id""",
                    name,
                    workspace,
                    description,
                )
                details = {"name": name, "workspace": workspace}
                await _audited(conn, audit, "role.created", "role", role_id, details)
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyExists(
                f"Role (name={name[:300]}, workspace={workspace}) already exists."
            ) from exc
        return Role(id=role_id, name=name, workspace=workspace, description=description)

    async def get_role(self, role_id: int) -> Role:
        async with self._db.connection() as conn:
            found = await _roles(conn, "WHERE r.role_id = $1", role_id)
        if not found:
            raise _role_not_found(role_id)
        return found[0]

    async def list_roles(self, workspace: str | None = None) -> list[Role]:
        async with self._db.connection() as conn:
            return await _roles(
                conn,
                "WHERE $1::text IS NULL OR r.workspace = $1 ORDER BY r.role_id",
                workspace,
            )

    async def update_role(
        self,
        role_id: int,
        name: str | None,
        description: str | None,
        *,
        audit: AuditContext | None = None,
    ) -> Role:
        if name is not None:
            check_role_name(name)
        try:
            async with self._db.transaction() as conn:
                row = await _role_row(conn, role_id, lock=True)
                if row["owner_user"] is not None and name is not None:
                    raise InvalidParameter("A user's own role cannot be renamed")
                await conn.execute(
                    """UPDATE auth_roles SET name = coalesce($2, name),
                                             description = coalesce($3, description)
                       WHERE role_id = $1""",
                    role_id,
                    name,
                    description,
                )
                changed = {
                    k: v for k, v in (("name", name), ("description", description)) if v is not None
                }
                if name is not None:
                    changed["old_name"] = row["name"]
                await _audited(conn, audit, "role.updated", "role", role_id, changed)
                return (await _roles(conn, "WHERE r.role_id = $1", role_id))[0]
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyExists(f"Role with name={(name or '')[:300]} already exists") from exc

    async def delete_role(self, role_id: int, *, audit: AuditContext | None = None) -> None:
        async with self._changing("grant_epoch") as conn:
            row = await _role_row(conn, role_id, lock=True)
            await conn.execute("DELETE FROM auth_roles WHERE role_id = $1", role_id)
            await _audited(conn, audit, "role.deleted", "role", role_id, {"name": row["name"]})

    async def add_role_permission(
        self,
        role_id: int,
        resource_type: ResourceType,
        pattern: str,
        permission: Permission,
        *,
        audit: AuditContext | None = None,
    ) -> RolePermission:
        check_grant(resource_type, pattern, permission)
        try:
            async with self._changing("grant_epoch", [(resource_type, pattern)]) as conn:
                await _role_row(conn, role_id, lock=True)
                row = await conn.fetchrow(
                    f"""INSERT INTO auth_grants AS g
                            (role_id, resource_type, resource_pattern, permission)
                        VALUES ($1, $2, $3, $4) RETURNING {_GRANT_COLUMNS}""",
                    role_id,
                    resource_type.value,
                    pattern,
                    permission.name,
                )
                assert row is not None  # INSERT ... RETURNING: one row
                await _audited(
                    conn, audit, "role.permission_added", "role", role_id, _grant_details(row)
                )
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyExists(
                f"Role permission (role_id={role_id}, resource_type={resource_type.value}, "
                f"resource_pattern={pattern[:300]}) already exists"
            ) from exc
        return _role_permission(row)

    async def set_role_permission(
        self,
        role_id: int,
        resource_type: ResourceType,
        pattern: str,
        permission: Permission,
        *,
        audit: AuditContext | None = None,
    ) -> tuple[RolePermission, Permission | None]:
        check_grant(resource_type, pattern, permission)
        async with self._changing("grant_epoch", [(resource_type, pattern)]) as conn:
            await _role_row(conn, role_id, lock=True)
            # The role's row lock (after the epoch row's) serialises writers of its grants, so
            # the level read here is the one the upsert replaces.
            old = await conn.fetchval(
                """SELECT permission FROM auth_grants
                   WHERE role_id = $1 AND resource_type = $2 AND resource_pattern = $3""",
                role_id,
                resource_type.value,
                pattern,
            )
            row = await conn.fetchrow(
                f"""INSERT INTO auth_grants AS g
                        (role_id, resource_type, resource_pattern, permission)
                    VALUES ($1, $2, $3, $4)
                    ON CONFLICT (role_id, resource_type, resource_pattern)
                    DO UPDATE SET permission = EXCLUDED.permission
                    RETURNING {_GRANT_COLUMNS}""",
                role_id,
                resource_type.value,
                pattern,
                permission.name,
            )
            assert row is not None  # INSERT ... RETURNING: one row
            details = {
                "resource_type": resource_type.value,
                "resource_id": pattern,
                "permission": permission.name,
                "old": old,
                "role_permission_id": row["grant_id"],
            }
            await _audited(conn, audit, "grant.set", "role", role_id, details)
        return _role_permission(row), None if old is None else Permission[old]

    async def remove_role_permission(
        self, role_permission_id: int, *, audit: AuditContext | None = None
    ) -> None:
        async with self._changing("grant_epoch") as conn:
            row = await conn.fetchrow(
                f"""DELETE FROM auth_grants g WHERE g.grant_id = $1
                    RETURNING {_GRANT_COLUMNS}""",
                role_permission_id,
            )
            if row is None:
                raise NotFound(f"Role permission with id={role_permission_id} not found")
            await _audited(
                conn,
                audit,
                "role.permission_removed",
                "role_permission",
                role_permission_id,
                _grant_details(row),
            )

    async def list_role_permissions(self, role_id: int) -> list[RolePermission]:
        return list((await self.get_role(role_id)).permissions)

    async def update_role_permission(
        self, role_permission_id: int, permission: Permission, *, audit: AuditContext | None = None
    ) -> RolePermission:
        async with self._changing("grant_epoch") as conn:
            current = await conn.fetchrow(
                f"SELECT {_GRANT_COLUMNS} FROM auth_grants g WHERE g.grant_id = $1 FOR UPDATE",
                role_permission_id,
            )
            if current is None:
                raise NotFound(f"Role permission with id={role_permission_id} not found")
            check_grant(
                ResourceType(current["resource_type"]), current["resource_pattern"], permission
            )
            row = await conn.fetchrow(
                f"""UPDATE auth_grants g SET permission = $2 WHERE g.grant_id = $1
                    RETURNING {_GRANT_COLUMNS}""",
                role_permission_id,
                permission.name,
            )
            assert row is not None  # the row is locked above
            details = _grant_details(row, old=current["permission"])
            await _audited(conn, audit, "role.permission_updated", "role", row["role_id"], details)
        return _role_permission(row)

    async def assign_role(
        self, username: str, role_id: int, *, audit: AuditContext | None = None
    ) -> Assignment:
        try:
            async with self._changing("grant_epoch") as conn:
                user_id = await _user_id(conn, username)
                role = await _role_row(conn, role_id)
                if role["owner_user"] is not None:
                    # Sharing a hidden role would hand its owner's per-user grants to another.
                    raise InvalidParameter(f"Role {role['name']!r} is a user's own role")
                assignment_id = await conn.fetchval(
                    """INSERT INTO auth_role_users (user_id, role_id) VALUES ($1, $2)
                       RETURNING assignment_id""",
                    user_id,
                    role_id,
                )
                await _audited(conn, audit, "role.assigned", "user", username, {"role_id": role_id})
        except asyncpg.UniqueViolationError as exc:
            raise AlreadyExists(
                f"User '{username[:300]}' already has the role with id={role_id}"
            ) from exc
        return Assignment(id=assignment_id, user_id=user_id, role_id=role_id)

    async def unassign_role(
        self, username: str, role_id: int, *, audit: AuditContext | None = None
    ) -> None:
        async with self._changing("grant_epoch") as conn:
            user_id = await _user_id(conn, username)
            role = await _role_row(conn, role_id)
            if role["owner_user"] is not None:
                raise InvalidParameter(
                    f"Role {role['name']!r} is a user's own role; revoke its permissions instead"
                )
            removed = await conn.fetchval(
                """DELETE FROM auth_role_users WHERE user_id = $1 AND role_id = $2
                   RETURNING assignment_id""",
                user_id,
                role_id,
            )
            if removed is None:
                raise NotFound(f"User '{username[:300]}' does not have the role with id={role_id}")
            await _audited(conn, audit, "role.unassigned", "user", username, {"role_id": role_id})

    async def list_user_roles(self, username: str) -> list[Role]:
        async with self._db.connection() as conn:
            user_id = await _user_id(conn, username)
            return await _roles(
                conn,
                """JOIN auth_role_users ru ON ru.role_id = r.role_id
                   WHERE ru.user_id = $1 ORDER BY r.role_id""",
                user_id,
            )

    async def list_role_users(self, role_id: int) -> list[Assignment]:
        async with self._db.connection() as conn:
            await _role_row(conn, role_id)
            rows = await conn.fetch(
                """SELECT assignment_id, user_id, role_id FROM auth_role_users
                   WHERE role_id = $1 ORDER BY assignment_id""",
                role_id,
            )
        return [Assignment(r["assignment_id"], r["user_id"], r["role_id"]) for r in rows]

    # ------------------------------------------------------------ invalidation

    async def auth_epochs(self) -> AuthEpochs:
        async with self._db.connection() as conn:
            row = await conn.fetchrow("SELECT cred_epoch, grant_epoch FROM auth_state WHERE id = 1")
        assert row is not None  # migration 0009 inserts the row
        return AuthEpochs(credentials=row["cred_epoch"], grants=row["grant_epoch"])

    async def user_cred_version(self, user_id: int) -> int:
        async with self._db.connection() as conn:
            version = await conn.fetchval(
                "SELECT cred_version FROM auth_users WHERE user_id = $1", user_id
            )
        if version is None:
            raise NotFound(f"User with id={user_id} not found")
        assert isinstance(version, int)
        return version

    # ------------------------------------------------------------ audit

    async def append_audit(
        self,
        actor_id: int | None,
        actor: str | None,
        auth_method: str | None,
        client_addr: str | None,
        action: str,
        target_type: str | None,
        target_id: str | None,
        details: dict[str, Any],
        request_id: str | None = None,
    ) -> int:
        who = AuditContext(actor_id, actor, auth_method, client_addr, request_id)
        async with self._db.connection() as conn:
            return await _insert_audit(conn, who, action, target_type, target_id, details)

    async def list_audit(
        self,
        max_results: int,
        page_token: str | None,
        *,
        actor: str | None = None,
        action: str | None = None,
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> tuple[list[AuditEntry], str | None]:
        """Newest first; the page token holds the last id returned (keyset, stable under
        appends)."""
        if not 1 <= max_results <= MAX_AUDIT_RESULTS:
            raise InvalidParameter(f"max_results must be between 1 and {MAX_AUDIT_RESULTS}")
        conditions: list[str] = []
        args: list[object] = []
        # Only the filters given go into the SQL, so each shape plans on its own index.
        for value, condition in (
            (decode_keyset_token(page_token), "id < ${}"),
            (actor, "actor = ${}"),
            (action, "action = ${}"),
            (since_ms, "at >= to_timestamp(${}::bigint / 1000.0)"),
            (until_ms, "at < to_timestamp(${}::bigint / 1000.0)"),
        ):
            if value is not None:
                args.append(value)
                conditions.append(condition.format(len(args)))
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        args.append(max_results + 1)
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_AUDIT_COLUMNS} FROM audit_log {where} ORDER BY id DESC LIMIT ${len(args)}",
                *args,
            )
        entries = [
            AuditEntry(
                id=r["id"],
                at_ms=_ms(r["at"]) or 0,
                actor_id=r["actor_id"],
                actor=r["actor"],
                auth_method=r["auth_method"],
                client_addr=r["client_addr"],
                action=r["action"],
                target_type=r["target_type"],
                target_id=r["target_id"],
                details=orjson.loads(r["details"]),
                request_id=r["request_id"],
            )
            for r in rows[:max_results]
        ]
        next_token = encode_keyset_token(entries[-1].id) if len(rows) > max_results else None
        return entries, next_token
