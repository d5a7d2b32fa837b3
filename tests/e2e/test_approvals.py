"""Registry approvals end to end (docs/design-auth.md B6): a live ``metricgate serve`` with
METRICGATE_AUTH=on, a policy made with ``metricgate policies create``, the unmodified mlflow
client's ``transition_model_version_stage`` answered with RESOURCE_CONFLICT naming the request,
the requester's own approval refused, two reviewers approving (REST and ``metricgate approvals
approve``), the version then in Production, and the applied change delivered by a webhook."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest
import requests
from tests.conftest import LiveServer, _mlflow_pointed_at, _serve, _server_env

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

ADMIN = ("admin", "admin-password-1")
ALICE = ("alice", "alice-password-1")
BOB = ("bob", "bob-password-12")
CAROL = ("carol", "carol-password-1")
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


class Receiver:
    """A loopback webhook receiver in a thread (the mlflow client is synchronous)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, event_type: str, stage: str | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + 20.0
        while True:
            for body in self.bodies:
                if body["type"] == event_type and (
                    stage is None or body["after"]["current_stage"] == stage
                ):
                    return body
            assert time.monotonic() < deadline, [b["type"] for b in self.bodies]
            time.sleep(0.05)


@pytest.fixture(scope="module")
def server(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("approvals-server")
    env = _server_env(module_db_url, module_redis_url, home / "artifacts")
    env.update(METRICGATE_AUTH="on", METRICGATE_AUTH_ADMIN_PASSWORD=ADMIN[1])
    with _serve(env, home / "server.log") as url:
        for username, password in (ALICE, BOB, CAROL):
            reply = requests.post(
                f"{url}/api/2.0/mlflow/users/create",
                json={"username": username, "password": password},
                auth=ADMIN,
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
        for username in ("bob", "carol"):
            grant = {
                "username": username,
                "resource_type": "registered_model",
                "resource_id": "churn",
                "permission": "EDIT",
            }
            reply = requests.post(
                f"{url}/api/3.0/mlflow/users/permissions/grant", json=grant, auth=ADMIN, timeout=10
            )
            assert reply.status_code == 200, reply.text
        yield LiveServer(url, home / "artifacts")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    try:
        yield made
    finally:
        made.server.shutdown()
        made.server.server_close()


def _cli(url: str, user: tuple[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARS}
    env.update(MLFLOW_TRACKING_USERNAME=user[0], MLFLOW_TRACKING_PASSWORD=user[1])
    return subprocess.run(
        [sys.executable, "-m", "metricgate", *args, "--url", url],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip


def test_two_reviewers_promote_a_version_the_client_asked_for(
    server: LiveServer, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import RestException

    url = server.url
    hook = {
        "url": receiver.url,
        "events": ["model_version.stage_changed", "model_version.approval_applied"],
        "model_name": "churn",
    }
    reply = requests.post(f"{url}/api/2.0/metricgate/webhooks", json=hook, auth=ADMIN, timeout=10)
    assert reply.status_code == 200, reply.text
    created = _cli(
        url, ADMIN, "policies", "create", "churn", "stage", "Production", "--approvals", "2"
    )
    assert created.returncode == 0, created.stderr
    assert "needs 2 approval(s) by users with EDIT" in created.stdout
    listed = _cli(url, BOB, "policies", "list")
    assert listed.returncode == 1 and "PERMISSION_DENIED" in listed.stderr  # admins only

    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ALICE[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ALICE[1])
    with _mlflow_pointed_at(url, monkeypatch):
        client = MlflowClient()
        client.create_registered_model("churn")
        client.create_model_version("churn", "s3://bucket/churn/1")
        client.transition_model_version_stage("churn", "1", "Staging")  # no policy: as stock
        with pytest.raises(RestException) as caught:
            client.transition_model_version_stage("churn", "1", "Production")
        assert caught.value.error_code == "RESOURCE_CONFLICT"
        found = re.search(r"Approval request (\d+) is pending", caught.value.message)
        assert found is not None, caught.value.message
        request_id = found.group(1)
        assert client.get_model_version("churn", "1").current_stage == "Staging"

        own = _cli(url, ALICE, "approvals", "approve", request_id)
        assert own.returncode == 1 and "own approval does not count" in own.stderr
        first = requests.post(
            f"{url}/api/2.0/metricgate/approvals/{request_id}/approve",
            json={"comment": "metrics look fine"},
            auth=BOB,
            timeout=10,
        )
        assert first.status_code == 200, first.text
        assert first.json()["approval_request"]["state"] == "pending"
        second = _cli(url, CAROL, "approvals", "approve", request_id, "--comment", "ship it")
        assert second.returncode == 0, second.stderr
        assert "now applied (2/2 approvals)" in second.stdout
        assert client.get_model_version("churn", "1").current_stage == "Production"

    shown = _cli(url, BOB, "approvals", "show", request_id)
    assert shown.returncode == 0, shown.stderr
    assert "state: applied" in shown.stdout and "ship it" in shown.stdout
    applied = receiver.wait_for("model_version.approval_applied")
    changed = receiver.wait_for("model_version.stage_changed", "Production")
    assert changed["actor"] == "alice"
    assert changed["actor_verified"] is True
    assert applied["after"]["request_id"] == int(request_id)
    assert applied["after"]["applied_event_id"] == changed["id"]
    assert applied["actor"] == "carol"
