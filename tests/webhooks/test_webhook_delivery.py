"""Deliveries from the outbox to real loopback receivers: signing, retries, failures, filtering."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC

import asyncpg
import orjson
from tests.webhooks.conftest import Hooks
from webhook_receiver import Receiver, insert_event, wait_for

from metricgate.domain.webhooks.signing import (
    DELIVERY_HEADER,
    EVENT_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify_signature,
)


async def _settled(hooks: Hooks, webhook_id: str, count: int = 1) -> list[dict]:
    """Wait until ``count`` deliveries exist and none is pending any more; return them."""
    found: list[dict] = []

    async def done() -> bool:
        nonlocal found
        found = await hooks.deliveries(webhook_id)
        return len(found) >= count and all(d["state"] != "pending" for d in found)

    await wait_for(done, 15)
    return found


async def test_delivery_is_signed_and_carries_the_event(
    hooks: Hooks, conn: asyncpg.Connection, receivers
) -> None:
    receiver: Receiver = await receivers()
    webhook_id, secret = await hooks.create(receiver.url, ["model_version.*"])
    event = await insert_event(
        conn, "model_version.stage_changed", "churn", 3,
        before={"current_stage": "Staging"}, after={"current_stage": "Production"}, comment="ship it",
    )  # fmt: skip

    [delivery] = await _settled(hooks, webhook_id)
    assert delivery["state"] == "delivered"
    assert len(receiver.requests) == 1
    got = receiver.requests[0]
    # The receiver-side check: signature over "<timestamp>.<raw body>", fresh timestamp.
    timestamp = verify_signature(secret, got.headers, got.body, tolerance_s=60)
    assert abs(timestamp - time.time()) < 60
    assert got.headers[SIGNATURE_HEADER].startswith("sha256=")
    assert got.headers[EVENT_HEADER] == "model_version.stage_changed"
    assert got.headers[DELIVERY_HEADER] == delivery["id"]
    body = got.json
    assert body == {
        "id": event["id"],
        "type": "model_version.stage_changed",
        "occurred_at": event["occurred_at"].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "model_name": "churn",
        "version": 3,
        "actor": "alice",
        "actor_verified": False,
        "before": {"current_stage": "Staging"},
        "after": {"current_stage": "Production"},
        "comment": "ship it",
        "delivery_id": delivery["id"],
        "webhook_id": webhook_id,
    }
    # The log records the event as sent, and the attempt.
    assert delivery["event_id"] == event["id"]
    assert delivery["event"]["after"] == {"current_stage": "Production"}
    [attempt] = delivery["attempt_log"]
    assert attempt["outcome"] == "delivered" and attempt["http_status"] == 200
    assert attempt["duration_ms"] >= 0 and attempt["finished_at"] >= attempt["started_at"]


async def test_500_then_200_is_retried_and_both_attempts_are_logged(
    hooks: Hooks, conn: asyncpg.Connection, receivers
) -> None:
    receiver: Receiver = await receivers(statuses=[500, 200])
    webhook_id, secret = await hooks.create(receiver.url, ["model_version.created"])
    await insert_event(conn, "model_version.created", "m", 1)

    [delivery] = await _settled(hooks, webhook_id)
    assert delivery["state"] == "delivered" and delivery["attempts"] == 2
    first, second = delivery["attempt_log"]
    assert (first["outcome"], first["http_status"]) == ("retry", 500)
    assert "500" in first["error"] and first["next_retry_at"] >= first["finished_at"]
    assert (second["outcome"], second["http_status"]) == ("delivered", 200)
    assert second["started_at"] >= first["next_retry_at"] - 5  # waited for the backoff
    # Same delivery id and same body on the retry; each attempt signed afresh and valid.
    assert len(receiver.requests) == 2
    assert receiver.requests[0].body == receiver.requests[1].body
    assert {r.headers[DELIVERY_HEADER] for r in receiver.requests} == {delivery["id"]}
    for request in receiver.requests:
        verify_signature(secret, request.headers, request.body)


async def test_permanent_4xx_fails_without_retry(
    hooks: Hooks, conn: asyncpg.Connection, receivers
) -> None:
    receiver: Receiver = await receivers(statuses=[410])
    webhook_id, _ = await hooks.create(receiver.url, ["alias.set"])
    await insert_event(conn, "alias.set", "m", 2, after={"alias": "champion"})

    [delivery] = await _settled(hooks, webhook_id)
    assert delivery["state"] == "failed" and delivery["attempts"] == 1
    [attempt] = delivery["attempt_log"]
    assert (attempt["outcome"], attempt["http_status"], attempt["next_retry_at"]) == (
        "failed",
        410,
        None,
    )
    assert delivery["last_error"].startswith("HTTP 410")
    await asyncio.sleep(0.5)  # several backoff periods: nothing more is sent
    assert len(receiver.requests) == 1


async def test_retries_stop_after_max_attempts(
    hooks: Hooks, conn: asyncpg.Connection, receivers
) -> None:
    receiver: Receiver = await receivers(statuses=[503])
    webhook_id, _ = await hooks.create(receiver.url, ["*"])
    await insert_event(conn, "registered_model.deleted", "m")

    [delivery] = await _settled(hooks, webhook_id)
    assert delivery["state"] == "failed" and delivery["attempts"] == 4  # FAST_WEBHOOKS.max_attempts
    assert [a["outcome"] for a in delivery["attempt_log"]] == ["retry", "retry", "retry", "failed"]
    assert len(receiver.requests) == 4


async def test_receiver_down_then_up(hooks: Hooks, conn: asyncpg.Connection) -> None:
    receiver = Receiver()  # not started: connections to its port are refused
    webhook_id, secret = await hooks.create(receiver.url, ["model_version.*"])
    await insert_event(conn, "model_version.deleted", "m", 1)

    async def refused_once() -> bool:
        [d] = await hooks.deliveries(webhook_id)
        return any(a["outcome"] == "retry" for a in d["attempt_log"])

    await wait_for(refused_once, 10)
    [pending] = await hooks.deliveries(webhook_id)
    assert pending["state"] == "pending"
    assert pending["attempt_log"][0]["http_status"] is None
    assert pending["attempt_log"][0]["error"]  # the connection error, e.g. ClientConnectorError
    await receiver.start()
    try:
        [delivery] = await _settled(hooks, webhook_id)
        assert delivery["state"] == "delivered"
        assert len(receiver.requests) == 1
        verify_signature(secret, receiver.requests[0].headers, receiver.requests[0].body)
    finally:
        await receiver.stop()


async def test_events_and_model_filter(hooks: Hooks, conn: asyncpg.Connection, receivers) -> None:
    receiver: Receiver = await receivers()
    aliases, _ = await hooks.create(receiver.url + "?w=aliases", ["alias.set"])
    versions_m1, _ = await hooks.create(
        receiver.url + "?w=m1", ["model_version.*"], model_name="m1"
    )
    everything, _ = await hooks.create(receiver.url + "?w=all", ["*"])
    inactive, _ = await hooks.create(receiver.url + "?w=off", ["*"], active=False)
    await insert_event(conn, "model_version.created", "m1", 1)
    await insert_event(conn, "model_version.created", "m2", 1)
    await insert_event(conn, "alias.set", "m1", 1)
    await insert_event(conn, "registered_model.created", "m3")

    assert [d["event_type"] for d in await _settled(hooks, aliases)] == ["alias.set"]
    [m1] = await _settled(hooks, versions_m1)
    assert (m1["event_type"], m1["event"]["model_name"]) == ("model_version.created", "m1")
    assert len(await _settled(hooks, everything, 4)) == 4
    assert await hooks.deliveries(inactive) == []
    assert len(receiver.requests) == 6


async def test_uncommitted_event_is_delivered_once_it_commits_and_rolled_back_never(
    hooks: Hooks, conn: asyncpg.Connection, events_db: str, receivers
) -> None:
    """The outbox pitfall: event ids are taken at insert, visible at commit. A later id that
    commits first must not make the earlier one skippable, and an aborted change sends nothing."""
    receiver: Receiver = await receivers()
    webhook_id, _ = await hooks.create(receiver.url, ["model_version.*"])
    slow = await asyncpg.connect(events_db)
    try:
        slow_tx = slow.transaction()
        await slow_tx.start()
        early = await insert_event(slow, "model_version.created", "m", 1)  # smaller id, still open
        late = await insert_event(conn, "model_version.created", "m", 2)
        assert early["id"] < late["id"]
        await wait_for(lambda: len(receiver.requests) == 1, 10)
        assert receiver.requests[0].json["id"] == late["id"]
        await slow_tx.commit()
        await wait_for(lambda: len(receiver.requests) == 2, 10)
        assert receiver.requests[1].json["id"] == early["id"]

        aborted = slow.transaction()
        await aborted.start()
        await insert_event(slow, "model_version.created", "m", 3)
        await aborted.rollback()
    finally:
        await slow.close()
    await insert_event(conn, "model_version.deleted", "m", 2)  # a marker after the rollback
    await wait_for(lambda: len(receiver.requests) == 3, 10)
    assert [r.json["version"] for r in receiver.requests] == [2, 1, 2]
    assert receiver.requests[2].json["type"] == "model_version.deleted"
    assert len(await _settled(hooks, webhook_id, 3)) == 3


async def test_slow_receiver_does_not_hold_up_another_webhook(
    hooks: Hooks, conn: asyncpg.Connection, receivers
) -> None:
    slow: Receiver = await receivers(delay_s=5.0)  # beyond the 1 s attempt timeout
    fast: Receiver = await receivers()
    slow_id, _ = await hooks.create(slow.url, ["*"])
    await hooks.create(fast.url, ["*"])
    for version in range(1, 7):
        await insert_event(conn, "model_version.created", "m", version)

    started = time.monotonic()
    await wait_for(lambda: len(fast.requests) == 6, 5)
    assert time.monotonic() - started < 3.0

    # The slow one times out (per-attempt timeout) and is scheduled for retry, never delivered.
    async def timed_out() -> bool:
        return any(
            a["outcome"] == "retry" and "timed out" in (a["error"] or "")
            for d in await hooks.deliveries(slow_id)
            for a in d["attempt_log"]
        )

    await wait_for(timed_out, 10)


async def test_test_ping_is_delivered_and_logged(hooks: Hooks, receivers) -> None:
    receiver: Receiver = await receivers()
    webhook_id, secret = await hooks.create(receiver.url, ["alias.deleted"])
    status, body = await hooks.call("POST", f"/{webhook_id}/test", {})
    assert status == 200, body
    [delivery] = await _settled(hooks, webhook_id)
    assert delivery["id"] == body["delivery_id"] and delivery["state"] == "delivered"
    assert delivery["event_type"] == "webhook.ping" and delivery["event_id"] is None
    [request] = receiver.requests
    verify_signature(secret, request.headers, request.body)
    assert request.headers[EVENT_HEADER] == "webhook.ping"
    assert orjson.loads(request.body)["delivery_id"] == delivery["id"]


async def test_rotated_secret_signs_later_deliveries(
    hooks: Hooks, conn: asyncpg.Connection, receivers
) -> None:
    receiver: Receiver = await receivers()
    webhook_id, old_secret = await hooks.create(receiver.url, ["model_version.*"])
    status, body = await hooks.call("POST", f"/{webhook_id}/rotate-secret", {})
    assert status == 200, body
    new_secret = body["secret"]
    assert new_secret != old_secret and new_secret.startswith("whsec_")
    await insert_event(conn, "model_version.created", "m", 1)
    await wait_for(lambda: len(receiver.requests) == 1, 10)
    request = receiver.requests[0]
    verify_signature(new_secret, request.headers, request.body)
    try:
        verify_signature(old_secret, request.headers, request.body)
    except ValueError:
        pass
    else:
        raise AssertionError("the old secret still verifies")
    assert request.headers[TIMESTAMP_HEADER].isdigit()


async def test_receiver_error_text_with_nul_is_logged(
    hooks: Hooks, conn: asyncpg.Connection, receivers
) -> None:
    receiver: Receiver = await receivers(statuses=[400], reply_text="bad\x00request")
    webhook_id, _ = await hooks.create(receiver.url, ["alias.*"])
    await insert_event(conn, "alias.deleted", "m", 1)
    [delivery] = await _settled(hooks, webhook_id)
    assert delivery["state"] == "failed"
    assert delivery["last_error"] == "HTTP 400: bad\ufffdrequest"


async def test_delivery_whose_attempts_were_all_interrupted_fails_without_sending(
    hooks: Hooks, conn: asyncpg.Connection, receivers
) -> None:
    receiver: Receiver = await receivers()
    webhook_id, _ = await hooks.create(receiver.url, ["*"], active=False)
    status, body = await hooks.call("POST", f"/{webhook_id}/test", {})
    assert status == 200, body
    # As if four dispatchers had died mid-attempt (FAST_WEBHOOKS.max_attempts is 4).
    await conn.execute("UPDATE webhook_deliveries SET attempts = 4")
    status, body = await hooks.call("PATCH", f"/{webhook_id}", {"active": True})
    assert status == 200, body
    [delivery] = await _settled(hooks, webhook_id)
    assert delivery["state"] == "failed" and delivery["attempts"] == 5
    assert "no attempts left" in delivery["last_error"]
    assert receiver.requests == []
