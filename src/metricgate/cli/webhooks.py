"""``metricgate webhooks create|list|deliveries|test|delete``: the webhook REST API from a shell."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

from metricgate.cli.http import DEFAULT_URL, ClientError, request_json, server_url

WEBHOOKS_PATH = "/api/2.0/metricgate/webhooks"


def add_webhooks_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    webhooks = sub.add_parser(
        "webhooks", help="registry webhooks: subscribe URLs to registry events"
    )
    commands = webhooks.add_subparsers(dest="webhooks_command", required=True, metavar="SUBCOMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument(
            "--url", help=f"server URL (default: $MLFLOW_TRACKING_URI, else {DEFAULT_URL})"
        )
        parser.add_argument("--json", action="store_true", help="print the server's JSON reply")
        return parser

    create = command("create", "subscribe a URL; prints the signing secret (shown only this once)")
    create.add_argument("target", help="receiver URL (http:// or https://)")
    create.add_argument(
        "--events",
        required=True,
        help="comma-separated event types or patterns, e.g. model_version.stage_changed,alias.* or *",
    )
    create.add_argument("--model", dest="model_name", help="only events of this registered model")
    create.add_argument("--description", help="free text")
    command("list", "list webhooks")
    deliveries = command(
        "deliveries", "the delivery log of a webhook (newest first), one line per attempt"
    )
    deliveries.add_argument("webhook_id")
    deliveries.add_argument("--state", choices=("pending", "delivered", "failed"))
    deliveries.add_argument("--limit", type=int, default=50)
    ping = command("test", "queue a signed webhook.ping delivery")
    ping.add_argument("webhook_id")
    delete = command("delete", "delete a webhook with its delivery log")
    delete.add_argument("webhook_id")


def run_webhooks(args: argparse.Namespace) -> int:
    base = server_url(args.url) + WEBHOOKS_PATH
    try:
        reply = _call(args, base)
    except ClientError as exc:
        print(f"metricgate: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
    else:
        for line in _format(args.webhooks_command, reply):
            print(line)
    return 0


def _call(args: argparse.Namespace, base: str) -> dict[str, Any]:
    command = args.webhooks_command
    if command == "create":
        body: dict[str, Any] = {
            "url": args.target,
            "events": [e.strip() for e in args.events.split(",") if e.strip()],
        }
        if args.model_name:
            body["model_name"] = args.model_name
        if args.description:
            body["description"] = args.description
        return request_json("POST", base, body)
    if command == "list":
        return request_json("GET", base)
    webhook = urllib.parse.quote(args.webhook_id, safe="")
    if command == "deliveries":
        query = {"max_results": str(args.limit)}
        if args.state:
            query["state"] = args.state
        return request_json("GET", f"{base}/{webhook}/deliveries?{urllib.parse.urlencode(query)}")
    if command == "test":
        return request_json("POST", f"{base}/{webhook}/test", {})
    return request_json("DELETE", f"{base}/{webhook}")


def _format(command: str, reply: dict[str, Any]) -> list[str]:
    if command == "create":
        hook = reply["webhook"]
        return [
            f"webhook {hook['id']} -> {hook['url']} events={','.join(hook['events'])}",
            f"secret: {reply['secret']}",
            "(store the secret now: it is not shown again; `rotate-secret` through the API makes a new one)",
        ]
    if command == "list":
        return [
            f"{h['id']}\t{'active' if h['active'] else 'paused'}\t{','.join(h['events'])}\t"
            f"{h.get('model_name') or '*'}\t{h['url']}"
            for h in reply["webhooks"]
        ]
    if command == "deliveries":
        lines = []
        for d in reply["deliveries"]:
            lines.append(
                f"{d['id']}  {d['event_type']}  event={d['event_id']}  {d['state']}  attempts={d['attempts']}"
            )
            for a in d["attempt_log"]:
                result = a["http_status"] if a["http_status"] is not None else (a["error"] or "")
                retry = f"  next retry at {a['next_retry_at']} ms" if a["next_retry_at"] else ""
                lines.append(
                    f"    #{a['attempt']} {a['outcome']} {result} ({a['duration_ms']} ms){retry}"
                )
        return lines
    if command == "test":
        return [f"queued ping delivery {reply['delivery_id']}"]
    return ["deleted"]
