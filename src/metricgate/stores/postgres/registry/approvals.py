"""Registry approval policies, requests and votes in PostgreSQL (migration 0010_approvals.sql,
docs/design-auth.md B6).

Every step runs in one transaction that locks the model row first, as every registry write does
(load.lock_model), so a gated change, a vote and the change it applies serialize per model: of
concurrent approvals exactly one sees the count reach the quorum while the request is pending,
and the change applies once. Each step writes its registry_events row (the webhook outbox
trigger fans it out in the same transaction) and an audit_log row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, cast

import asyncpg
import orjson

from metricgate.domain.auth.permissions import WILDCARD, Permission
from metricgate.domain.auth.visibility import UNRESTRICTED, Mode, Visibility
from metricgate.domain.errors import AlreadyExists, Conflict, NotFound
from metricgate.domain.registry import approvals as rules
from metricgate.domain.registry.approvals import (
    ApprovalForbidden,
    ApprovalPolicy,
    ApprovalRequest,
    Decision,
    Kind,
    Vote,
)
from metricgate.domain.registry.entities import Audit, ModelVersion
from metricgate.domain.search.paging import decode_keyset_token, encode_keyset_token
from metricgate.observability import current_request_id
from metricgate.stores.postgres.auth import inet_or_none
from metricgate.stores.postgres.pool import Database, PgConnection
from metricgate.stores.postgres.registry import events, versions
from metricgate.stores.postgres.registry.load import lock_model, lock_version

_REQUEST_SQL = """SELECT r.*, rm.name AS model_name FROM approval_requests AS r
                  JOIN registered_models AS rm USING (model_key)"""


def _not_found(request_id: int) -> NotFound:
    return NotFound(f"Approval request {request_id} not found.")


def _policy(row: asyncpg.Record) -> ApprovalPolicy:
    return ApprovalPolicy(
        id=row["policy_id"],
        model_pattern=row["model_pattern"],
        kind=cast(Kind, row["kind"]),
        target=row["target"],
        approvals=row["approvals"],
        approver_permission=Permission[row["approver_permission"]],
        created_by=row["created_by_name"],
        created_at=row["created_at"],
    )


def _request(row: asyncpg.Record, votes: Sequence[asyncpg.Record] = ()) -> ApprovalRequest:
    return ApprovalRequest(
        id=row["request_id"],
        policy_id=row["policy_id"],
        model_name=row["model_name"],
        version=row["version"],
        kind=cast(Kind, row["kind"]),
        target=row["target"],
        archive_existing=row["archive_existing"],
        requester=row["requester"],
        approvals_needed=row["approvals_needed"],
        approver_permission=Permission[row["approver_permission"]],
        state=row["state"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
        applied_event_id=row["applied_event_id"],
        votes=tuple(
            Vote(v["voter"], cast(Decision, v["decision"]), v["comment"], v["voted_at"])
            for v in votes
        ),
    )


async def _load(conn: PgConnection, request_id: int, *, lock: bool = False) -> ApprovalRequest:
    row = await conn.fetchrow(
        f"{_REQUEST_SQL} WHERE r.request_id = $1{' FOR UPDATE OF r' if lock else ''}", request_id
    )
    if row is None:
        raise _not_found(request_id)
    votes = await conn.fetch(
        "SELECT * FROM approval_votes WHERE request_id = $1 ORDER BY voted_at, user_id", request_id
    )
    return _request(row, votes)


async def _user_id(conn: PgConnection, username: str | None) -> int:
    found = await conn.fetchval("SELECT user_id FROM auth_users WHERE username = $1", username)
    if found is None:
        raise ApprovalForbidden("Approvals need an authenticated user (METRICGATE_AUTH=on).")
    return int(found)


async def _audit_log(
    conn: PgConnection,
    audit: Audit,
    action: str,
    target_type: str,
    target_id: int,
    details: dict[str, Any],
) -> None:
    """The step's audit entry in its transaction: who (``audit``: the verified caller, how they
    authenticated and from where; a system step such as a supersede by a delete has the
    deleter's), and the HTTP request's id (not the approval request's)."""
    await conn.execute(
        """INSERT INTO audit_log (actor_id, actor, auth_method, client_addr, action, target_type,
                                  target_id, details, request_id)
           VALUES ((SELECT user_id FROM auth_users WHERE username = $1), $1, $2, $3::inet, $4,
                   $5, $6, $7::jsonb, $8)""",
        audit.actor, audit.auth_method, inet_or_none(audit.client_addr), action, target_type,
        str(target_id), orjson.dumps(details).decode(), current_request_id(),
    )  # fmt: skip


def _by(username: str, audit: Audit | None) -> Audit:
    """An admin's policy change: their name, with how and from where when the caller said."""
    if audit is None:
        return Audit(actor=username, actor_verified=True)
    return replace(audit, actor=username)


def _summary(request: ApprovalRequest, **more: Any) -> dict[str, Any]:
    return {
        "request_id": request.id,
        "policy_id": request.policy_id,
        "kind": request.kind,
        "target": request.target,
        "archive_existing": request.archive_existing,
        "requester": request.requester,
        "approvals_needed": request.approvals_needed,
        "approver_permission": request.approver_permission.name,
        **more,
    }


async def _step(
    conn: PgConnection,
    event_type: str,
    request: ApprovalRequest,
    audit: Audit,
    **more: Any,
) -> None:
    """One step of a request: its registry event (and so its webhook deliveries) and audit row."""
    after = _summary(request, **more)
    await events.record(conn, event_type, request.model_name, request.version, audit, None, after)
    action = event_type.replace("model_version.", "")
    await _audit_log(conn, audit, action, "approval_request", request.id, after)


class PgApprovalStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------ policies

    async def create_policy(
        self,
        model_pattern: str,
        kind: Kind,
        target: str,
        approvals: int,
        approver_permission: Permission,
        created_by: str,
        *,
        audit: Audit | None = None,
    ) -> ApprovalPolicy:
        """``audit``: how ``created_by`` authenticated and from where, for the audit entry."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """INSERT INTO approval_policies
                       (model_pattern, kind, target, approvals, approver_permission, created_by)
                   VALUES ($1, $2, $3, $4, $5, (SELECT user_id FROM auth_users WHERE username = $6))
                   ON CONFLICT (model_pattern, kind, target) DO NOTHING
                   RETURNING *, $6::text AS created_by_name""",
                model_pattern, kind, target, approvals, approver_permission.name, created_by,
            )  # fmt: skip
            if row is None:
                raise AlreadyExists(
                    f"An approval policy for {kind} '{target}' on model pattern "
                    f"'{model_pattern}' already exists."
                )
            policy = _policy(row)
            await _audit_log(
                conn, _by(created_by, audit), "approval_policy.created", "approval_policy",
                policy.id, _policy_details(policy),
            )  # fmt: skip
            return policy

    async def list_policies(self) -> list[ApprovalPolicy]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """SELECT p.*, u.username AS created_by_name FROM approval_policies AS p
                   LEFT JOIN auth_users AS u ON u.user_id = p.created_by ORDER BY p.policy_id"""
            )
        return [_policy(r) for r in rows]

    async def delete_policy(
        self, policy_id: int, deleted_by: str, *, audit: Audit | None = None
    ) -> ApprovalPolicy:
        """NotFound for an unknown policy; Conflict while one of its requests is pending (cancel
        them first: deleting the policy must not leave requests nobody can complete).
        ``audit``: as for ``create_policy``."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """SELECT p.*, u.username AS created_by_name FROM approval_policies AS p
                   LEFT JOIN auth_users AS u ON u.user_id = p.created_by
                   WHERE p.policy_id = $1 FOR UPDATE OF p""",
                policy_id,
            )
            if row is None:
                raise NotFound(f"Approval policy {policy_id} not found.")
            pending = await conn.fetchval(
                """SELECT count(*) FROM approval_requests
                   WHERE policy_id = $1 AND state = 'pending'""",
                policy_id,
            )
            if pending:
                raise Conflict(
                    f"Approval policy {policy_id} has {pending} pending request(s); "
                    "cancel them before deleting the policy."
                )
            await conn.execute("DELETE FROM approval_policies WHERE policy_id = $1", policy_id)
            policy = _policy(row)
            await _audit_log(
                conn, _by(deleted_by, audit), "approval_policy.deleted", "approval_policy",
                policy_id, _policy_details(policy),
            )  # fmt: skip
            return policy

    # ------------------------------------------------------------ gated changes

    async def transition_or_request(
        self, audit: Audit, name: str, version: int, stage: str, archive_existing: bool
    ) -> ModelVersion | ApprovalRequest:
        """The transition as RegistryStore.transition_stage makes it, unless a policy governs
        entering ``stage`` on the model: then the pending request for it (made or reused)."""
        async with self._db.transaction() as conn:
            model, _ = await lock_version(conn, name, version)
            policy = await _governing(conn, name, "stage", stage)
            if policy is None:
                return await versions.transition(
                    conn, audit, name, version, stage, archive_existing
                )
            return await _request_for(
                conn, audit, policy, model["model_key"], name, version, stage, archive_existing
            )

    async def set_alias_or_request(
        self, audit: Audit, name: str, alias: str, version: int
    ) -> ApprovalRequest | None:
        """The alias set as RegistryStore.set_alias does (None), unless a policy governs it."""
        async with self._db.transaction() as conn:
            model, _ = await lock_version(conn, name, version)
            policy = await _governing(conn, name, "alias", alias)
            if policy is None:
                await versions.set_alias(conn, audit, name, alias, version)
                return None
            return await _request_for(
                conn, audit, policy, model["model_key"], name, version, alias, False
            )

    # ------------------------------------------------------------ requests

    async def get_request(self, request_id: int) -> ApprovalRequest:
        async with self._db.connection() as conn:
            return await _load(conn, request_id)

    async def list_requests(
        self,
        state: str | None,
        model_name: str | None,
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> tuple[list[ApprovalRequest], str | None]:
        """Newest first; keyset pages (requests keep arriving). ``visibility`` (the caller's
        registered-model reads) is a predicate on the model name, so pages stay full."""
        before = decode_keyset_token(page_token)
        if visibility.mode is Mode.NONE:
            return [], None
        args: list[object] = [state, model_name, before, max_results + 1]
        shown = ""
        if visibility.mode is Mode.ONLY:
            shown, args = "AND rm.name = ANY($5::text[])", [*args, visibility.names()]
        elif visibility.mode is Mode.ALL_EXCEPT and visibility.ids:
            shown, args = "AND NOT (rm.name = ANY($5::text[]))", [*args, visibility.names()]
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"""{_REQUEST_SQL}
                    WHERE ($1::text IS NULL OR r.state = $1)
                      AND ($2::text IS NULL OR rm.name = $2)
                      AND ($3::bigint IS NULL OR r.request_id < $3) {shown}
                    ORDER BY r.request_id DESC LIMIT $4""",
                *args,
            )
            ids = [r["request_id"] for r in rows[:max_results]]
            votes = await conn.fetch(
                """SELECT * FROM approval_votes WHERE request_id = ANY($1::bigint[])
                   ORDER BY voted_at, user_id""",
                ids,
            )
        by_request: dict[int, list[asyncpg.Record]] = {}
        for v in votes:
            by_request.setdefault(v["request_id"], []).append(v)
        found = [_request(r, by_request.get(r["request_id"], [])) for r in rows[:max_results]]
        token = encode_keyset_token(found[-1].id) if len(rows) > max_results else None
        return found, token

    async def vote(
        self,
        request_id: int,
        audit: Audit,
        decision: Decision,
        level: Permission,
    ) -> ApprovalRequest:
        """Record ``audit.actor``'s vote (``level``: their permission on the model, resolved by
        the caller). A rejection closes the request; the approval that reaches the quorum applies
        the change here, in the vote's transaction."""
        async with self._db.transaction() as conn:
            request = await _lock_request(conn, request_id)
            rules.check_open(request)
            rules.check_voter(request, audit.actor or "", level)
            voter_id = await _user_id(conn, audit.actor)
            inserted = await conn.fetchval(
                """INSERT INTO approval_votes (request_id, user_id, voter, decision, comment)
                   VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1""",
                request_id, voter_id, audit.actor, decision, audit.comment,
            )  # fmt: skip
            if inserted is None:
                raise Conflict(f"You have already voted on approval request {request_id}.")
            request = await _load(conn, request_id)
            await _step(conn, rules.VOTED, request, audit, decision=decision,
                        approvals=request.approvals)  # fmt: skip
            state = rules.outcome(request, decision, request.approvals)
            if state == "rejected":
                await _close(conn, request_id, "rejected")
                await _step(conn, rules.REJECTED, request, audit, state="rejected")
            elif state == "applied":
                await _apply(conn, request, audit)
            return await _load(conn, request_id)

    async def cancel(self, request_id: int, audit: Audit, is_admin: bool) -> ApprovalRequest:
        """The requester or an admin withdraws a pending request."""
        async with self._db.transaction() as conn:
            request = await _lock_request(conn, request_id)
            rules.check_open(request)
            if not is_admin and audit.actor != request.requester:
                raise ApprovalForbidden(
                    f"Only the requester ({request.requester}) or an admin can cancel approval "
                    f"request {request_id}."
                )
            await _close(conn, request_id, "cancelled")
            await _step(conn, rules.CANCELLED, request, audit, state="cancelled")
            return await _load(conn, request_id)


def _policy_details(policy: ApprovalPolicy) -> dict[str, Any]:
    return {
        "model_pattern": policy.model_pattern,
        "kind": policy.kind,
        "target": policy.target,
        "approvals": policy.approvals,
        "approver_permission": policy.approver_permission.name,
    }


async def _governing(
    conn: PgConnection, name: str, kind: Kind, target: str
) -> ApprovalPolicy | None:
    rows = await conn.fetch(
        """SELECT p.*, u.username AS created_by_name FROM approval_policies AS p
           LEFT JOIN auth_users AS u ON u.user_id = p.created_by
           WHERE p.kind = $1 AND p.target = $2 AND p.model_pattern IN ($3, $4)""",
        kind,
        target,
        name,
        WILDCARD,
    )
    return rules.governing_policy([_policy(r) for r in rows], name, kind, target)


async def _request_for(
    conn: PgConnection,
    audit: Audit,
    policy: ApprovalPolicy,
    model_key: int,
    name: str,
    version: int,
    target: str,
    archive_existing: bool,
) -> ApprovalRequest:
    """The pending request for this change: a new one (its ``approval_requested`` event
    written), or the one already pending for the same target (``approval_one_pending``)."""
    requester_id = await _user_id(conn, audit.actor)
    request_id = await conn.fetchval(
        """INSERT INTO approval_requests (policy_id, model_key, version, kind, target,
               archive_existing, requested_by, requester, approvals_needed, approver_permission)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (model_key, version, kind, target) WHERE state = 'pending' DO NOTHING
           RETURNING request_id""",
        policy.id, model_key, version, policy.kind, target, archive_existing, requester_id,
        audit.actor, policy.approvals, policy.approver_permission.name,
    )  # fmt: skip
    if request_id is None:
        existing = await conn.fetchval(
            """SELECT request_id FROM approval_requests WHERE model_key = $1 AND version = $2
               AND kind = $3 AND target = $4 AND state = 'pending'""",
            model_key, version, policy.kind, target,
        )  # fmt: skip
        return await _load(conn, int(existing))
    request = await _load(conn, int(request_id))
    await _step(conn, rules.REQUESTED, request, audit)
    return request


async def _lock_request(conn: PgConnection, request_id: int) -> ApprovalRequest:
    """The request, locked after its model row (the order every registry write takes)."""
    model_name = await conn.fetchval(
        """SELECT rm.name FROM approval_requests AS r JOIN registered_models AS rm
           USING (model_key) WHERE r.request_id = $1""",
        request_id,
    )
    if model_name is None:
        raise _not_found(request_id)
    await lock_model(conn, model_name)
    return await _load(conn, request_id, lock=True)


async def _close(conn: PgConnection, request_id: int, state: str) -> None:
    await conn.execute(
        """UPDATE approval_requests SET state = $2, closed_at = clock_timestamp()
           WHERE request_id = $1""",
        request_id,
        state,
    )


async def _apply(conn: PgConnection, request: ApprovalRequest, voter: Audit) -> None:
    """Make the approved change as the requester asked it (their name on the change's event,
    verified), or mark the request superseded when the version is gone or already there."""
    change_audit = Audit(
        actor=request.requester,
        comment=f"approval request {request.id}",
        actor_verified=True,
    )
    row = await conn.fetchrow(
        """SELECT mv.current_stage, a.version AS alias_version FROM approval_requests AS r
           JOIN model_versions AS mv USING (model_key, version)
           LEFT JOIN registered_model_aliases AS a
             ON a.model_key = r.model_key AND a.alias = r.target AND r.kind = 'alias'
           WHERE r.request_id = $1""",
        request.id,
    )
    already = row is not None and (
        (request.kind == "stage" and row["current_stage"] == request.target)
        or (request.kind == "alias" and row["alias_version"] == request.version)
    )
    if row is None or already:
        await _close(conn, request.id, "superseded")
        await _step(conn, rules.SUPERSEDED, request, voter, state="superseded")
        return
    if request.kind == "stage":
        await versions.transition(
            conn, change_audit, request.model_name, request.version, request.target,
            request.archive_existing,
        )  # fmt: skip
        event_type = "model_version.stage_changed"
    else:
        await versions.set_alias(
            conn, change_audit, request.model_name, request.target, request.version
        )
        event_type = "alias.set"
    event_id = await conn.fetchval(
        """SELECT id FROM registry_events WHERE model_name = $1 AND version = $2
           AND event_type = $3 ORDER BY id DESC LIMIT 1""",
        request.model_name, request.version, event_type,
    )  # fmt: skip
    await conn.execute(
        """UPDATE approval_requests SET state = 'applied', closed_at = clock_timestamp(),
               applied_event_id = $2 WHERE request_id = $1""",
        request.id,
        event_id,
    )
    await _step(conn, rules.APPLIED, request, voter, state="applied", applied_event_id=event_id)


async def supersede_deleted_version(
    conn: PgConnection, audit: Audit, name: str, version: int
) -> None:
    """Close the deleted version's pending requests as superseded, in the delete's transaction
    (after the model row is locked), each with its event and audit row: nothing is left
    waiting for approvals that could never apply."""
    pending = await conn.fetch(
        """SELECT r.request_id FROM approval_requests AS r JOIN registered_models AS rm
           USING (model_key) WHERE rm.name = $1 AND r.version = $2 AND r.state = 'pending'
           ORDER BY r.request_id FOR UPDATE OF r""",
        name,
        version,
    )
    for row in pending:
        request = await _load(conn, row["request_id"])
        await _close(conn, request.id, "superseded")
        await _step(conn, rules.SUPERSEDED, request, audit, state="superseded")
