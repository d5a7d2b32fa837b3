"""End to end: the real mlflow client changes the registry of a live ``metricgate serve``; a webhook
made with ``metricgate webhooks create`` receives the signed event on a loopback receiver."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from metricgate.domain.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, verify_signature

pytestmark = [
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.fresh_server,  # `webhooks list` shows every webhook of the server
]


class ThreadedReceiver:
    """A loopback HTTP receiver in a thread (the mlflow client and these tests are synchronous)."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                received.append((dict(self.headers.items()), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/registry-hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def wait(self, count: int, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.requests) < count:
            assert time.monotonic() < deadline, (
                f"{len(self.requests)} of {count} deliveries arrived"
            )
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[ThreadedReceiver]:
    made = ThreadedReceiver()
    made.thread.start()
    try:
        yield made
    finally:
        made.server.shutdown()
        made.server.server_close()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metricgate", "webhooks", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_stage_transition_by_the_mlflow_client_sends_a_signed_webhook(
    mlflow_tracking: str, receiver: ThreadedReceiver
) -> None:
    from mlflow import MlflowClient

    created = _cli(
        "create", receiver.url, "--events", "model_version.stage_changed", "--model", "churn",
        "--url", mlflow_tracking, "--json",
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    reply = json.loads(created.stdout)
    webhook_id, secret = reply["webhook"]["id"], reply["secret"]

    client = MlflowClient()
    client.create_registered_model("churn")
    client.create_model_version("churn", "s3://bucket/churn/1")
    client.create_registered_model("other")
    client.create_model_version("other", "s3://bucket/other/1")
    client.transition_model_version_stage("other", "1", "Production")  # another model: filtered out
    client.transition_model_version_stage("churn", "1", "Production")

    receiver.wait(1)
    time.sleep(1.5)  # more than a dispatcher poll: nothing else is on its way
    [(headers, body)] = receiver.requests
    verify_signature(secret, headers, body, tolerance_s=60)
    assert headers[EVENT_HEADER] == "model_version.stage_changed"
    event = json.loads(body)
    assert (event["type"], event["model_name"], event["version"]) == (
        "model_version.stage_changed",
        "churn",
        1,
    )
    assert (
        event["before"]["current_stage"] == "None"
        and event["after"]["current_stage"] == "Production"
    )
    assert event["actor_verified"] is False and event["webhook_id"] == webhook_id

    shown = _cli("deliveries", webhook_id, "--url", mlflow_tracking, "--json")
    assert shown.returncode == 0, shown.stderr
    [delivery] = json.loads(shown.stdout)["deliveries"]
    assert delivery["id"] == headers[DELIVERY_HEADER] == event["delivery_id"]
    assert delivery["state"] == "delivered" and delivery["attempt_log"][0]["http_status"] == 204
    text = _cli("deliveries", webhook_id, "--url", mlflow_tracking)
    assert (
        f"{delivery['id']}  model_version.stage_changed" in text.stdout
        and "#1 delivered 204" in text.stdout
    )


def test_cli_create_list_test_delete_and_errors(
    mlflow_tracking: str, receiver: ThreadedReceiver
) -> None:
    created = _cli(
        "create",
        receiver.url,
        "--events",
        "alias.*,model_version.created",
        "--url",
        mlflow_tracking,
    )
    assert created.returncode == 0, created.stderr
    first_line, secret_line = created.stdout.splitlines()[:2]
    webhook_id = first_line.split()[1]
    assert first_line.endswith("events=alias.*,model_version.created")
    secret = secret_line.removeprefix("secret: ")
    assert secret.startswith("whsec_")

    listed = _cli("list", "--url", mlflow_tracking)
    assert listed.returncode == 0 and listed.stdout.split("\t")[:2] == [webhook_id, "active"]
    pinged = _cli("test", webhook_id, "--url", mlflow_tracking)
    assert pinged.returncode == 0 and pinged.stdout.startswith("queued ping delivery ")
    receiver.wait(1)
    headers, body = receiver.requests[0]
    verify_signature(secret, headers, body)
    assert headers[EVENT_HEADER] == "webhook.ping"

    bad = _cli(
        "create", receiver.url, "--events", "model_version.promoted", "--url", mlflow_tracking
    )
    assert bad.returncode == 1 and "INVALID_PARAMETER_VALUE" in bad.stderr
    assert _cli("delete", webhook_id, "--url", mlflow_tracking).returncode == 0
    missing = _cli("deliveries", webhook_id, "--url", mlflow_tracking)
    assert missing.returncode == 1 and "RESOURCE_DOES_NOT_EXIST" in missing.stderr
