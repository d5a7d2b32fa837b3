"""Registry approvals (docs/design-auth.md B6); MLflow has none.

- ``GET approvals [?state=&model=&max_results=&page_token=]``: requests newest first, only those
  on models the caller may read.
- ``GET approvals/{request_id}``: one request with its votes (READ on the model).
- ``POST approvals/{request_id}/approve|reject {comment?}``: a vote; the requester's own never
  counts (403), and the voter needs the policy's level on the model (admins hold every level).
  The approval that reaches the quorum applies the change in the same transaction.
- ``POST approvals/{request_id}/cancel``: the requester or an admin withdraws it.
- ``POST|GET approval-policies``, ``DELETE approval-policies/{policy_id}``: admins.

Policies need verified users, so with ``METRICGATE_AUTH=off`` every route answers 400 saying so.
The changes a policy gates (transition-stage, alias) answer 409 RESOURCE_CONFLICT naming the
request and the policy (registry/service.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from metricgate.api.access import client_addr
from metricgate.api.auth_common import params
from metricgate.api.codec import Fields, json_response, read_json
from metricgate.api.keys import SERVICE, caller
from metricgate.api.routing import Route
from metricgate.api.search_access import search_visibility
from metricgate.domain.auth.access import Admin, Authenticated, Filtered
from metricgate.domain.auth.entities import Credential
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.errors import InvalidParameter, PermissionDenied, Unauthenticated
from metricgate.domain.registry import approvals as rules
from metricgate.domain.registry.approvals import ApprovalPolicy, ApprovalRequest, Decision
from metricgate.domain.registry.entities import Audit
from metricgate.stores.base import ApprovalStore

PREFIX = "/api/2.0/metricgate"
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 1000


def _ms(value: Any) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


def encode_policy(policy: ApprovalPolicy) -> dict[str, Any]:
    return {
        "id": policy.id,
        "model_pattern": policy.model_pattern,
        "kind": policy.kind,
        "target": policy.target,
        "approvals": policy.approvals,
        "approver_permission": policy.approver_permission.name,
        "created_by": policy.created_by,
        "created_at": _ms(policy.created_at),
    }


def encode_request(request: ApprovalRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "policy_id": request.policy_id,
        "model_name": request.model_name,
        "version": str(request.version),
        "kind": request.kind,
        "target": request.target,
        "archive_existing_versions": request.archive_existing,
        "requester": request.requester,
        "approvals": request.approvals,
        "approvals_needed": request.approvals_needed,
        "approver_permission": request.approver_permission.name,
        "state": request.state,
        "created_at": _ms(request.created_at),
        "closed_at": _ms(request.closed_at),
        "applied_event_id": request.applied_event_id,
        "votes": [
            {
                "voter": v.voter,
                "decision": v.decision,
                "comment": v.comment,
                "voted_at": _ms(v.voted_at),
            }
            for v in request.votes
        ],
    }


def _store(request: web.Request) -> ApprovalStore:
    store = request.app[SERVICE].registry.approvals
    if store is None:
        raise InvalidParameter(
            "Approval policies need verified users: access control is off on this server "
            "(METRICGATE_AUTH=off). Turn it on to create and use approval policies."
        )
    return store


def _me(request: web.Request) -> Credential:
    credential = caller(request)
    if credential is None:
        raise Unauthenticated("You are not authenticated.")
    return credential


async def _level(request: web.Request, me: Credential, model_name: str) -> Permission:
    authenticator = request.app[SERVICE].authenticator
    if me.is_admin or authenticator is None:
        return Permission.MANAGE if me.is_admin else Permission.NO_PERMISSIONS
    return await authenticator.decide_for(me, ResourceType.REGISTERED_MODEL, model_name)


def _path_id(request: web.Request, name: str) -> int:
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidParameter(f"'{name}' must be a positive integer, got {raw[:50]!r}.")
    return int(raw)


async def _readable(request: web.Request, me: Credential, found: ApprovalRequest) -> None:
    if not (await _level(request, me, found.model_name)).can_read:
        raise PermissionDenied()


def _audit(request: web.Request, me: Credential, comment: str | None = None) -> Audit:
    """The caller as the audit entries of this step name them: who, how, from where."""
    return Audit(
        actor=me.username,
        comment=comment,
        actor_verified=True,
        auth_method=me.method,
        client_addr=client_addr(request),
    )


async def _body(request: web.Request) -> Fields:
    if not (await request.read()).strip():
        return Fields({})
    return await read_json(request)


# ------------------------------------------------------------ requests


async def list_requests(request: web.Request) -> web.Response:
    store = _store(request)
    _me(request)  # what the caller may read is the store's predicate (search_visibility)
    fields = await params(request)
    state = fields.str("state") or None
    if state is not None and state not in rules.STATES:
        raise InvalidParameter(f"Invalid state {state[:50]!r}: expected one of {rules.STATES}.")
    count = fields.int("max_results")
    max_results = DEFAULT_PER_PAGE if count is None else count
    if not 1 <= max_results <= MAX_PER_PAGE:
        raise InvalidParameter(f"max_results must be between 1 and {MAX_PER_PAGE}.")
    found, token = await store.list_requests(
        state,
        fields.str("model") or None,
        max_results,
        fields.str("page_token") or None,
        visibility=await search_visibility(request, ResourceType.REGISTERED_MODEL),
    )
    body: dict[str, Any] = {"approval_requests": [encode_request(item) for item in found]}
    if token:
        body["next_page_token"] = token
    return json_response(body)


async def get_request(request: web.Request) -> web.Response:
    store = _store(request)
    me = _me(request)
    found = await store.get_request(_path_id(request, "request_id"))
    await _readable(request, me, found)
    return json_response({"approval_request": encode_request(found)})


async def _vote(request: web.Request, decision: Decision) -> web.Response:
    store = _store(request)
    me = _me(request)
    request_id = _path_id(request, "request_id")
    fields = await _body(request)
    comment = rules.check_comment(fields.str("comment"))
    found = await store.get_request(request_id)
    await _readable(request, me, found)
    level = await _level(request, me, found.model_name)
    audit = _audit(request, me, comment)
    after = await store.vote(request_id, audit, decision, level)
    return json_response({"approval_request": encode_request(after)})


async def approve(request: web.Request) -> web.Response:
    return await _vote(request, "approve")


async def reject(request: web.Request) -> web.Response:
    return await _vote(request, "reject")


async def cancel(request: web.Request) -> web.Response:
    store = _store(request)
    me = _me(request)
    request_id = _path_id(request, "request_id")
    fields = await _body(request)
    comment = rules.check_comment(fields.str("comment"))
    audit = _audit(request, me, comment)
    after = await store.cancel(request_id, audit, me.is_admin)
    return json_response({"approval_request": encode_request(after)})


# ------------------------------------------------------------ policies


async def create_policy(request: web.Request) -> web.Response:
    store = _store(request)
    me = _me(request)
    fields = await read_json(request)
    kind = rules.check_kind(fields.req_str("kind"))
    policy = await store.create_policy(
        rules.check_model_pattern(fields.req_str("model_pattern")),
        kind,
        rules.check_target(kind, fields.req_str("target")),
        rules.check_approvals(fields.raw.get("approvals")),
        rules.check_approver_permission(fields.str("approver_permission") or "EDIT"),
        me.username,
        audit=_audit(request, me),
    )
    return json_response({"approval_policy": encode_policy(policy)})


async def list_policies(request: web.Request) -> web.Response:
    store = _store(request)
    return json_response(
        {"approval_policies": [encode_policy(p) for p in await store.list_policies()]}
    )


async def delete_policy(request: web.Request) -> web.Response:
    store = _store(request)
    me = _me(request)
    policy = await store.delete_policy(
        _path_id(request, "policy_id"), me.username, audit=_audit(request, me)
    )
    return json_response({"approval_policy": encode_policy(policy)})


# Votes and cancels check more than a rule can say (the request's model, the policy's level,
# the requester), so the handlers decide them after loading the request.
ROUTES = [
    Route("GET", "/approvals", list_requests, Filtered(ResourceType.REGISTERED_MODEL)),
    Route("GET", "/approvals/{request_id}", get_request, Authenticated()),
    Route("POST", "/approvals/{request_id}/approve", approve, Authenticated()),
    Route("POST", "/approvals/{request_id}/reject", reject, Authenticated()),
    Route("POST", "/approvals/{request_id}/cancel", cancel, Authenticated()),
    Route("POST", "/approval-policies", create_policy, Admin()),
    Route("GET", "/approval-policies", list_policies, Admin()),
    Route("DELETE", "/approval-policies/{policy_id}", delete_policy, Admin()),
]
