"""``metricgate audit list``: the audit log (admins; docs/design-auth.md B7) over the REST API,
newest first, with the credentials of the other access-control commands (cli/auth.py).

``--since`` and ``--until`` take milliseconds since the epoch, an ISO 8601 date or time (UTC
unless it names its offset) or an age such as ``30m``, ``12h`` or ``7d``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from metricgate.cli.auth import METRICGATE, InputError, Session, _Group, run_rest, table, when

COMMANDS = ("audit",)
MAX_RESULTS = 1000
_AGE = re.compile(r"(\d+)([smhd])")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DETAILS_CHARS = 80


def add_audit_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    command = _Group(sub, "audit", "the audit log: who changed users, grants, tokens (admins)")
    listing = command("list", "audit entries, newest first")
    listing.add_argument("--actor", help="only entries by this username")
    listing.add_argument("--action", help="only this action (user.created, grant.set, ...)")
    listing.add_argument("--since", help="from this time on: epoch ms, ISO 8601, or an age (7d)")
    listing.add_argument("--until", help="before this time: epoch ms, ISO 8601, or an age")
    listing.add_argument(
        "--max-results", type=int, default=100, metavar="N", help=f"1 to {MAX_RESULTS} (100)"
    )
    listing.add_argument("--page-token", help="the next page, as the previous listing printed")


def run_audit(args: argparse.Namespace) -> int:
    return run_rest(args, _list)


def parse_time(value: str, *, now_ms: int | None = None) -> int:
    """A point in time as milliseconds since the epoch (see the module docstring)."""
    text = value.strip()
    if text.isascii() and text.isdigit():
        return int(text)
    age = _AGE.fullmatch(text)
    if age is not None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now - int(age.group(1)) * _UNIT_MS[age.group(2)]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"{value!r} is not a time: give epoch milliseconds, an ISO 8601 date or time, "
            "or an age such as 30m, 12h, 7d"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _list(s: Session, args: argparse.Namespace) -> tuple[dict[str, Any], list[str]]:
    if not 1 <= args.max_results <= MAX_RESULTS:
        raise InputError(f"--max-results must be between 1 and {MAX_RESULTS}")
    query = {"max_results": str(args.max_results)}
    for name in ("actor", "action", "page_token"):
        value = getattr(args, name)
        if value:
            query[name] = value
    for name in ("since", "until"):
        value = getattr(args, name)
        if value:
            query[name] = str(parse_time(value))
    reply = s.call("GET", f"{METRICGATE}/audit", query=query)
    lines = entry_table(reply.get("entries", []))
    if reply.get("next_page_token"):
        lines.append(f"more: --page-token {reply['next_page_token']}")
    return reply, lines


def entry_table(entries: Sequence[dict[str, Any]]) -> list[str]:
    rows = [
        [
            str(e["id"]),
            when(e.get("timestamp")),
            e.get("actor") or "-",
            e.get("auth_method") or "-",
            e.get("client_addr") or "-",
            e["action"],
            f"{e.get('target_type') or '-'}:{e.get('target_id') or '-'}",
            _details(e.get("details") or {}),
        ]
        for e in entries
    ]
    return table(["ID", "TIME", "ACTOR", "METHOD", "ADDRESS", "ACTION", "TARGET", "DETAILS"], rows)


def _details(details: dict[str, Any]) -> str:
    text = json.dumps(details, sort_keys=True, separators=(",", ":")) if details else "-"
    return text if len(text) <= _DETAILS_CHARS else text[: _DETAILS_CHARS - 3] + "..."
