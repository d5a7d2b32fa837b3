"""``metricgate approvals list|show|approve|reject|cancel`` and ``metricgate policies
create|list|delete``: registry approval policies (docs/design-auth.md B6) over the REST API, with
the credentials of the other access-control commands (cli/auth.py).

A transition or alias change under a policy answers with the request's id; reviewers then run
``metricgate approvals approve ID``. Exit status: 0 done; 1 the server refused or could not be
reached; 2 bad input caught before anything was sent.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from metricgate.cli.auth import METRICGATE, InputError, Session, _Group, login_header, table, when
from metricgate.cli.http import ClientError, server_url

COMMANDS = ("approvals", "policies")
APPROVALS = f"{METRICGATE}/approvals"
POLICIES = f"{METRICGATE}/approval-policies"
STATES = ("pending", "applied", "rejected", "cancelled", "superseded")
LEVELS = ("READ", "USE", "EDIT", "MANAGE")
MAX_RESULTS = 1000

Command = Callable[[Session, argparse.Namespace], tuple[dict[str, Any], list[str]]]


def add_approvals_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = _Group(sub, "approvals", "registry approval requests: list, review, approve")
    listing = command("list", "approval requests, newest first (on models you can read)")
    listing.add_argument("--state", choices=STATES, help="only requests in this state")
    listing.add_argument("--model", help="only requests on this registered model")
    listing.add_argument(
        "--max-results", type=int, default=100, metavar="N", help=f"1 to {MAX_RESULTS} (100)"
    )
    listing.add_argument("--page-token", help="the next page, as the previous listing printed")
    command("show", "one request with its votes").add_argument("request_id", type=int)
    for verb, text in (
        ("approve", "approve a request (not your own); the last approval needed applies it"),
        ("reject", "reject a request; it is closed"),
        ("cancel", "withdraw a request (the requester or an admin)"),
    ):
        parser = command(verb, text)
        parser.add_argument("request_id", type=int)
        parser.add_argument("--comment", help="why (kept with the vote and in the history)")

    policies = _Group(sub, "policies", "registry approval policies (admins)")
    create = policies("create", "require approvals to enter a stage or set an alias")
    create.add_argument("model_pattern", metavar="MODEL", help="a registered model name, or *")
    create.add_argument("kind", choices=("stage", "alias"))
    create.add_argument("target", metavar="TARGET", help="the stage (Production) or the alias")
    create.add_argument(
        "--approvals", type=int, required=True, metavar="N", help="approvals needed (1 to 20)"
    )
    create.add_argument(
        "--permission",
        type=str.upper,
        choices=LEVELS,
        default="EDIT",
        help="what an approver must hold on the model (EDIT)",
    )
    policies("list", "every policy")
    policies("delete", "delete a policy (none of its requests pending)").add_argument(
        "policy_id", type=int
    )


def run_approvals(args: argparse.Namespace) -> int:
    command = _approvals if args.command == "approvals" else _policies
    try:
        session = Session(server_url(args.url), login_header(args))
        reply, lines = command(session, args)
    except InputError as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
    else:
        for line in lines:
            print(line)
    return 0


def _approvals(s: Session, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    command = args.auth_command
    if command == "list":
        if not 1 <= args.max_results <= MAX_RESULTS:
            raise InputError(f"--max-results must be between 1 and {MAX_RESULTS}")
        query = {"max_results": str(args.max_results)}
        for name in ("state", "model", "page_token"):
            value = getattr(args, name)
            if value:
                query[name] = value
        reply = s.call("GET", APPROVALS, query=query)
        lines = request_table(reply.get("approval_requests", []))
        if reply.get("next_page_token"):
            lines.append(f"more: --page-token {reply['next_page_token']}")
        return reply, lines
    if args.request_id < 1:
        raise InputError("a request id is a positive integer")
    if command == "show":
        reply = s.call("GET", f"{APPROVALS}/{args.request_id}")
        return reply, describe(reply["approval_request"])
    body = {"comment": args.comment} if args.comment else {}
    reply = s.call("POST", f"{APPROVALS}/{args.request_id}/{command}", body)
    found = reply["approval_request"]
    done = {"approve": "approved", "reject": "rejected", "cancel": "cancelled"}[command]
    return reply, [
        f"{done} request {found['id']}: now {found['state']} "
        f"({found['approvals']}/{found['approvals_needed']} approvals)"
    ]


def _policies(s: Session, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    command = args.auth_command
    if command == "create":
        body = {
            "model_pattern": args.model_pattern,
            "kind": args.kind,
            "target": args.target,
            "approvals": args.approvals,
            "approver_permission": args.permission,
        }
        reply = s.call("POST", POLICIES, body)
        policy = reply["approval_policy"]
        return reply, [f"created approval policy {policy['id']}: {_rule(policy)}"]
    if command == "list":
        reply = s.call("GET", POLICIES)
        return reply, policy_table(reply["approval_policies"])
    reply = s.call("DELETE", f"{POLICIES}/{args.policy_id}")
    return reply, [f"deleted approval policy {args.policy_id}"]


def _rule(policy: dict[str, Any]) -> str:
    what = "entering stage" if policy["kind"] == "stage" else "setting alias"
    return (
        f"{what} {policy['target']} on {policy['model_pattern']} needs {policy['approvals']} "
        f"approval(s) by users with {policy['approver_permission']}"
    )


def _change(r: dict[str, Any]) -> str:
    if r["kind"] == "stage":
        archive = " (archive others)" if r.get("archive_existing_versions") else ""
        return f"{r['model_name']} v{r['version']} -> {r['target']}{archive}"
    return f"{r['model_name']}@{r['target']} -> v{r['version']}"


def request_table(requests: Sequence[dict[str, Any]]) -> list[str]:
    rows = [
        [
            str(r["id"]),
            r["state"],
            _change(r),
            f"{r['approvals']}/{r['approvals_needed']}",
            r["requester"],
            when(r.get("created_at")),
        ]
        for r in requests
    ]
    return table(["ID", "STATE", "CHANGE", "APPROVALS", "REQUESTER", "CREATED"], rows)


def describe(r: dict[str, Any]) -> list[str]:
    lines = [
        f"request {r['id']}: {_change(r)}",
        f"state: {r['state']}  approvals: {r['approvals']}/{r['approvals_needed']} "
        f"(by users with {r['approver_permission']}; policy {r.get('policy_id') or '-'})",
        f"requested by {r['requester']} at {when(r.get('created_at'))}",
    ]
    if r.get("closed_at"):
        lines.append(f"closed at {when(r['closed_at'])}")
    votes = [
        [v["voter"], v["decision"], when(v.get("voted_at")), v.get("comment") or ""]
        for v in r.get("votes", [])
    ]
    return lines + (table(["VOTER", "DECISION", "AT", "COMMENT"], votes) if votes else ["no votes"])


def policy_table(policies: Sequence[dict[str, Any]]) -> list[str]:
    rows = [
        [
            str(p["id"]),
            p["model_pattern"],
            p["kind"],
            p["target"],
            str(p["approvals"]),
            p["approver_permission"],
            p.get("created_by") or "-",
        ]
        for p in policies
    ]
    return table(["ID", "MODEL", "KIND", "TARGET", "APPROVALS", "APPROVERS", "CREATED BY"], rows)
