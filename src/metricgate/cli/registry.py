"""``metricgate registry history NAME``: a model's audit trail, read from a running server."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from metricgate.cli.http import DEFAULT_URL, ClientError, request_json, server_url

HISTORY_PATH = "/api/2.0/metricgate/registry/history"
PAGE_SIZE = 500


def add_registry_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    registry = sub.add_parser("registry", help="model registry tools (audit history)")
    commands = registry.add_subparsers(dest="registry_command", required=True, metavar="SUBCOMMAND")
    history = commands.add_parser(
        "history", help="who changed a registered model, when and how (newest first)"
    )
    history.add_argument("name", help="registered model name (history follows renames)")
    history.add_argument("--version", help="only events of this model version")
    history.add_argument(
        "--url", help=f"server URL (default: $MLFLOW_TRACKING_URI, else {DEFAULT_URL})"
    )
    history.add_argument("--json", action="store_true", help="print the events as JSON lines")
    history.add_argument("--limit", type=int, default=None, help="at most this many events")


def run_registry(args: argparse.Namespace) -> int:
    base_url = server_url(args.url)
    try:
        for event in _events(base_url, args.name, args.version, args.limit):
            print(json.dumps(event, sort_keys=True) if args.json else format_event(event))
    except ClientError as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 1
    return 0


def _events(base_url: str, name: str, version: str | None, limit: int | None) -> Any:
    token, count = None, 0
    while True:
        query = {"name": name, "max_results": str(PAGE_SIZE)}
        if version:
            query["version"] = version
        if token:
            query["page_token"] = token
        body = request_json("GET", f"{base_url}{HISTORY_PATH}?{urllib.parse.urlencode(query)}")
        for event in body.get("events", []):
            if limit is not None and count >= limit:
                return
            count += 1
            yield event
        token = body.get("next_page_token")
        if not token:
            return


def format_event(event: dict[str, Any]) -> str:
    """One line: time, event, version, actor (marked unverified), change, comment."""
    version = f" v{event['version']}" if event.get("version") else ""
    actor = event.get("actor") or "unknown"
    if not event.get("actor_verified"):
        actor += " (unverified)"
    line = f"{event['occurred_at']}  {event['event_type']}{version}  by {actor}  {_change(event)}"
    if event.get("comment"):
        line += f"  # {event['comment']}"
    return line


def _change(event: dict[str, Any]) -> str:
    before, after = event.get("before"), event.get("after")
    if before and after:
        keys = sorted(set(before) | set(after))
        # A tag or alias keeps its name; show it, then what changed.
        same = [
            f"{k}={before[k]}"
            for k in ("key", "alias")
            if k in before and before.get(k) == after.get(k)
        ]
        return " ".join([*same, ""]) + ", ".join(
            f"{k}: {_short(before.get(k))} -> {_short(after.get(k))}"
            for k in keys
            if before.get(k) != after.get(k)
        )
    if after:
        return "+ " + json.dumps(after, sort_keys=True)[:200]
    if before:
        return "- " + json.dumps(before, sort_keys=True)[:200]
    return ""


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."
