"""Real ``metricgate serve`` processes killed with SIGKILL while deliveries are pending or in flight:
after a restart every delivery arrives, exactly as recorded, signed (at least once)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from webhook_receiver import Receiver, wait_for

from metricgate.domain.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, verify_signature
from scripts import devservices

START_TIMEOUT_S = 30.0


class Gateway:
    """One ``python -m metricgate serve`` process; ``kill()`` is SIGKILL (no shutdown work at all)."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.port = devservices.find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> Gateway:
        cmd = [
            sys.executable,
            "-m",
            "metricgate",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession() as session:
            while True:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gateway did not start:\n{self.log()}", pytrace=False)
                try:
                    async with session.get(self.url + "/health") as resp:
                        if resp.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.url + path, json=body) as resp:
                payload = await resp.json()
                assert resp.status == 200, payload
                return payload


@pytest.fixture
def gateway_env(db_url: str, redis_client_url: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICGATE_")}
    env.update(
        METRICGATE_DATABASE_URL=db_url,
        METRICGATE_REDIS_URL=redis_client_url,
        METRICGATE_ARTIFACTS_URI=(tmp_path / "artifacts").as_uri(),
        METRICGATE_SHUTDOWN_TIMEOUT_S="5",
        METRICGATE_WEBHOOK_TIMEOUT_S="1",
        METRICGATE_WEBHOOK_BACKOFF_BASE_S="0.2",
        METRICGATE_WEBHOOK_BACKOFF_MAX_S="0.5",
        METRICGATE_WEBHOOK_POLL_INTERVAL_S="0.1",
        METRICGATE_WEBHOOK_MAX_ATTEMPTS="1000",
    )
    return env


async def _deliveries(gateway: Gateway, webhook_id: str) -> list[dict[str, Any]]:
    return (await gateway.call("GET", f"/api/2.0/metricgate/webhooks/{webhook_id}/deliveries"))[
        "deliveries"
    ]  # type: ignore[no-any-return]


async def _register_model(gateway: Gateway, name: str) -> None:
    """A registry change through the MLflow REST API: it writes a registered_model.created event."""
    await gateway.call("POST", "/api/2.0/mlflow/registered-models/create", {"name": name})


async def _recorded_event(db_url: str, model_name: str) -> asyncpg.Record:
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            "SELECT * FROM registry_events WHERE model_name = $1 AND event_type = 'registered_model.created'",
            model_name,
        )
    finally:
        await conn.close()
    assert row is not None
    return row


async def test_pending_delivery_survives_sigkill_and_arrives_after_restart(
    gateway_env: dict[str, str], db_url: str, tmp_path: Path
) -> None:
    receiver = Receiver()  # down for now
    first = await Gateway(gateway_env, tmp_path / "gateway.log").start()
    try:
        created = await first.call(
            "POST",
            "/api/2.0/metricgate/webhooks",
            {"url": receiver.url, "events": ["registered_model.*"]},
        )
        webhook_id, secret = created["webhook"]["id"], created["secret"]
        await _register_model(first, "churn")

        async def failed_at_least_once() -> bool:
            found = await _deliveries(first, webhook_id)
            return len(found) == 1 and any(a["outcome"] == "retry" for a in found[0]["attempt_log"])

        await wait_for(failed_at_least_once, 30)
        first.kill()
    finally:
        first.stop()

    second = await Gateway(gateway_env, tmp_path / "gateway.log").start()
    await receiver.start()
    try:

        async def delivered() -> bool:
            return [d["state"] for d in await _deliveries(second, webhook_id)] == ["delivered"]

        await wait_for(delivered, 30)
        [delivery] = await _deliveries(second, webhook_id)
    finally:
        second.stop()
        await receiver.stop()

    event = await _recorded_event(db_url, "churn")
    [request] = receiver.requests
    verify_signature(secret, request.headers, request.body)
    assert request.headers[DELIVERY_HEADER] == delivery["id"]
    assert request.headers[EVENT_HEADER] == "registered_model.created"
    body = request.json
    assert body["delivery_id"] == delivery["id"] and body["webhook_id"] == webhook_id
    assert body["id"] == event["id"] == delivery["event_id"]
    assert (body["type"], body["model_name"], body["actor_verified"]) == (
        "registered_model.created",
        "churn",
        False,
    )
    assert body["after"] == (None if event["after"] is None else orjson.loads(event["after"]))
    assert {k: v for k, v in body.items() if k not in ("delivery_id", "webhook_id")} == delivery[
        "event"
    ]
    outcomes = [a["outcome"] for a in delivery["attempt_log"]]
    assert (
        outcomes[-1] == "delivered"
        and set(outcomes[:-1]) <= {"retry", "interrupted"}
        and len(outcomes) >= 2
    )


async def test_attempt_in_flight_at_sigkill_is_sent_again_after_the_lease(
    gateway_env: dict[str, str], tmp_path: Path
) -> None:
    # The receiver accepts the request but sits on it: the gateway dies mid-attempt (well
    # within the 3 s attempt timeout, so the attempt is really in flight).
    env = {**gateway_env, "METRICGATE_WEBHOOK_TIMEOUT_S": "3"}
    receiver = await Receiver(delay_s=30.0).start()
    first = await Gateway(env, tmp_path / "gateway.log").start()
    try:
        created = await first.call(
            "POST", "/api/2.0/metricgate/webhooks", {"url": receiver.url, "events": ["*"]}
        )
        webhook_id, secret = created["webhook"]["id"], created["secret"]
        await _register_model(first, "fraud")
        await wait_for(lambda: len(receiver.requests) == 1, 15)
        first.kill()
    finally:
        first.stop()
    receiver.delay_s = 0.0
    second = await Gateway(env, tmp_path / "gateway.log").start()
    try:

        async def delivered() -> bool:
            return [d["state"] for d in await _deliveries(second, webhook_id)] == ["delivered"]

        # The lease (2 x timeout + 5 s = 11 s) must run out before another dispatcher may resend
        # it; the rest of the budget is for a loaded machine.
        await wait_for(delivered, 60)
        [delivery] = await _deliveries(second, webhook_id)
    finally:
        second.stop()
        await receiver.stop()
    # At least once: the interrupted attempt and the new one carry the same delivery id and body.
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert {r.headers[DELIVERY_HEADER] for r in receiver.requests} == {delivery["id"]}
    verify_signature(secret, receiver.requests[1].headers, receiver.requests[1].body)
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["interrupted", "delivered"]
