"""Registry approval policies (docs/design-auth.md B6), pure: the records, which policy governs a
change, the request's state machine and the quorum count.

A policy says "entering stage S (``kind`` stage) or setting alias A (``kind`` alias) on model M
(or on every model, ``*``) needs N approvals by users holding permission P on the model". Under
one, a transition or alias change becomes a pending request; other users vote; the first
eligible rejection closes it, the N-th approval (the requester's never counts) applies it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from metricgate.domain.auth.permissions import WILDCARD, Permission
from metricgate.domain.errors import Conflict, InvalidParameter, PermissionDenied
from metricgate.domain.registry import rules

Kind = Literal["stage", "alias"]
State = Literal["pending", "applied", "rejected", "cancelled", "superseded"]
Decision = Literal["approve", "reject"]

KINDS: tuple[Kind, ...] = ("stage", "alias")
STATES: tuple[State, ...] = ("pending", "applied", "rejected", "cancelled", "superseded")
DECISIONS: tuple[Decision, ...] = ("approve", "reject")
MAX_APPROVALS = 20
MAX_COMMENT_CHARS = 5000
# A policy names who may approve by a level on the model; DENY and NO_PERMISSIONS name nobody.
APPROVER_LEVELS = (Permission.READ, Permission.USE, Permission.EDIT, Permission.MANAGE)

# registry_events types (and webhook event types) of the steps of a request.
REQUESTED = "model_version.approval_requested"
VOTED = "model_version.approval_voted"
REJECTED = "model_version.approval_rejected"
APPLIED = "model_version.approval_applied"
CANCELLED = "model_version.approval_cancelled"
SUPERSEDED = "model_version.approval_superseded"
EVENT_TYPES = (REQUESTED, VOTED, REJECTED, APPLIED, CANCELLED, SUPERSEDED)


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    id: int
    model_pattern: str
    kind: Kind
    target: str
    approvals: int
    approver_permission: Permission
    created_by: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Vote:
    voter: str
    decision: Decision
    comment: str | None
    voted_at: datetime


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    id: int
    policy_id: int | None
    model_name: str
    version: int
    kind: Kind
    target: str
    archive_existing: bool
    requester: str
    approvals_needed: int
    approver_permission: Permission
    state: State
    created_at: datetime
    closed_at: datetime | None
    applied_event_id: int | None
    votes: tuple[Vote, ...] = ()

    @property
    def approvals(self) -> int:
        return count_approvals(self.votes, self.requester)


class ApprovalForbidden(PermissionDenied):
    """A vote or a cancel the caller may not cast: their own request, or no level on the model."""


class ApprovalPending(Conflict):
    """The answer to a change that needs approval (HTTP 409 RESOURCE_CONFLICT; the mlflow client
    raises ``RestException`` and does not retry a 409). ``extra_fields`` join the error body."""

    def __init__(self, request: ApprovalRequest, policy_id: int) -> None:
        super().__init__(pending_message(request, policy_id))
        self.extra_fields: dict[str, object] | None = {
            "approval_request_id": request.id,
            "approval_policy_id": policy_id,
        }


# ------------------------------------------------------------ policies


def check_kind(kind: object) -> Kind:
    for known in KINDS:
        if kind == known:
            return known
    raise InvalidParameter(f"Invalid kind {kind!r}: expected 'stage' or 'alias'.")


def check_target(kind: Kind, target: str | None) -> str:
    """A stage (canonical spelling: ``production`` is ``Production``) or a valid alias."""
    if kind == "stage":
        return rules.canonical_stage(target)
    return rules.validate_alias(target)


def check_model_pattern(pattern: str | None) -> str:
    if pattern == WILDCARD:
        return pattern
    return rules.validate_model_name(pattern, "model_pattern")


def check_approvals(count: object) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_APPROVALS:
        raise InvalidParameter(
            f"'approvals' must be an integer from 1 to {MAX_APPROVALS}, got {count!r}."
        )
    return count


def check_approver_permission(value: object) -> Permission:
    for level in APPROVER_LEVELS:
        if value == level.name:
            return level
    names = ", ".join(level.name for level in APPROVER_LEVELS)
    raise InvalidParameter(f"Invalid approver_permission {value!r}: expected one of {names}.")


def check_comment(comment: str | None) -> str | None:
    if comment is not None and len(comment) > MAX_COMMENT_CHARS:
        raise InvalidParameter(f"'comment' exceeds the maximum length of {MAX_COMMENT_CHARS}.")
    return comment or None


def governing_policy(
    policies: Iterable[ApprovalPolicy], model_name: str, kind: Kind, target: str
) -> ApprovalPolicy | None:
    """The policy over entering ``target`` on ``model_name``: the model's own beats ``*``."""
    wildcard: ApprovalPolicy | None = None
    for policy in policies:
        if policy.kind != kind or policy.target != target:
            continue
        if policy.model_pattern == model_name:
            return policy
        if policy.model_pattern == WILDCARD:
            wildcard = policy
    return wildcard


# ------------------------------------------------------------ requests and votes


def count_approvals(votes: Iterable[Vote], requester: str) -> int:
    """Approvals that count: the requester's own never does."""
    return sum(1 for v in votes if v.decision == "approve" and v.voter != requester)


def check_open(request: ApprovalRequest) -> None:
    """Votes and cancels need a pending request; a closed one is a conflict naming its state."""
    if request.state != "pending":
        raise Conflict(f"Approval request {request.id} is {request.state}, not pending.")


def check_voter(request: ApprovalRequest, voter: str, level: Permission) -> None:
    """``voter`` may vote with ``level`` on the model: not the requester, and at least the
    policy's level (``level`` is what decide() resolved: MANAGE for admins)."""
    if voter == request.requester:
        raise ApprovalForbidden(
            f"You requested approval request {request.id}; your own approval does not count. "
            "Another user must approve it."
        )
    if not level.allows(request.approver_permission):
        raise ApprovalForbidden(
            f"Voting on approval request {request.id} needs {request.approver_permission.name} "
            f"on the registered model '{request.model_name}'."
        )


def outcome(request: ApprovalRequest, decision: Decision, approvals_after: int) -> State:
    """The state after an eligible vote: a rejection closes the request, the N-th approval
    applies it, anything else leaves it pending."""
    if decision == "reject":
        return "rejected"
    return "applied" if approvals_after >= request.approvals_needed else "pending"


def describe_change(request: ApprovalRequest) -> str:
    if request.kind == "stage":
        return (
            f"Transition of model '{request.model_name}' version {request.version} "
            f"to stage '{request.target}'"
        )
    return (
        f"Setting alias '{request.target}' of model '{request.model_name}' "
        f"to version {request.version}"
    )


def pending_message(request: ApprovalRequest, policy_id: int) -> str:
    needed = request.approvals_needed
    return (
        f"{describe_change(request)} needs {needed} approval{'s' if needed != 1 else ''} by users "
        f"with {request.approver_permission.name} on the model (approval policy {policy_id}). "
        f"Approval request {request.id} is pending: metricgate approvals approve {request.id}"
    )
