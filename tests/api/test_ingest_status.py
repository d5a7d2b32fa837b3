"""The live ingest view: /api/2.0/metricgate/ingest/status, the page, and the same gauges in /metrics.

Every figure is produced for real: entries appended through the API and left unflushed (no
flusher), a dead-lettered entry, an open upload session, an abandoned-run tag, a failed webhook
delivery. Counters are process-wide, so totals are checked as differences.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer
from tests import upload_client as uc
from tests.api.conftest import Api, now_ms
from tests.api.test_api_ingest import tuned

from metricgate.api.app import create_app
from metricgate.config import Settings
from metricgate.ingest.live_status import LiveStatus
from metricgate.ingest.streams import DEAD_LETTER_STREAM, IngestStreams
from metricgate.stores.postgres.live_counts import PgLiveCounts
from metricgate.stores.postgres.pool import Database, create_pool

pytestmark = pytest.mark.asyncio

STATUS = "/api/2.0/metricgate/ingest/status"


async def _status(api: Api) -> dict[str, Any]:
    body: dict[str, Any] = (await api.get(STATUS, absolute=True)).ok()
    return body


async def _log_batch(api: Api, run_id: str, points: int, step0: int = 0) -> None:
    metrics = [
        {"key": "loss", "value": 0.5, "timestamp": now_ms(), "step": step0 + i}
        for i in range(points)
    ]
    (await api.post("/runs/log-batch", {"run_id": run_id, "metrics": metrics})).ok()


async def _wait_for(api: Api, check: Any, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = await _status(api)
        if check(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.3)


async def test_unflushed_entries_show_as_backlog_and_lag(settings: Settings) -> None:
    no_flusher = tuned(settings, ingest={"embedded_flusher": False})
    async with TestClient(TestServer(create_app(no_flusher))) as client:
        api = Api(client)
        before = await _status(api)
        run_id = await api.new_run_id()
        await _log_batch(api, run_id, 5)
        await _log_batch(api, run_id, 5, step0=5)
        await asyncio.sleep(2.2)  # older than the refresh interval: a new reading, and lag > 2 s
        body = await _status(api)

    assert body["points_accepted_total"] - before["points_accepted_total"] == 10
    assert len(body["shards"]) == no_flusher.ingest.shards
    assert sum(s["entries"] for s in body["shards"]) == 2
    assert sum(s["undelivered"] for s in body["shards"]) == 2  # no flusher read them
    assert sum(s["pending"] for s in body["shards"]) == 0
    assert body["flush_lag_s"] >= 2.0
    assert body["backlog_entries"] >= 0
    assert body["errors"] == []


async def test_flushed_points_clear_the_lag(client: TestClient[Any, Any]) -> None:
    api = Api(client)
    before = await _status(api)
    run_id = await api.new_run_id()
    await _log_batch(api, run_id, 7)
    body = await _wait_for(
        api,
        lambda b: (
            b["points_flushed_total"] - before["points_flushed_total"] >= 7
            and b["flush_lag_s"] == 0
        ),
    )
    assert body["points_flushed_total"] - before["points_flushed_total"] == 7
    assert body["flush_lag_s"] == 0
    assert all(s["undelivered"] == 0 and s["pending"] == 0 for s in body["shards"])


async def test_dead_letters_uploads_abandoned_runs_and_failed_deliveries(
    client: TestClient[Any, Any], settings: Settings, redis_client_url: str
) -> None:
    api = Api(client)
    redis = aioredis.from_url(redis_client_url)
    try:
        await redis.xadd(DEAD_LETTER_STREAM, {b"_reason": b"test"})
    finally:
        await redis.aclose()
    run_id = await api.new_run_id()
    (
        await api.post(
            "/runs/set-tag", {"run_id": run_id, "key": "metricgate.abandoned", "value": "true"}
        )
    ).ok()
    (await uc.create(client, run_id, "ckpt.bin", [{"size": 10}], 5 * 1024 * 1024)).ok()
    pool = await create_pool(settings.postgres)
    try:
        webhook_id = await pool.fetchval(
            "INSERT INTO webhooks (url, events, secret) VALUES ('http://127.0.0.1:9/', '{*}', 's') RETURNING id"
        )
        await pool.execute(
            "INSERT INTO webhook_deliveries (webhook_id, event_type, payload, state) VALUES ($1, 'x', '{}', 'failed')",
            webhook_id,
        )
    finally:
        await pool.close()
    await asyncio.sleep(2.1)  # past the refresh interval of an earlier reading
    body = await _status(api)
    assert body["dead_letter_entries"] == 1
    assert body["abandoned_runs"] == 1
    assert body["upload_sessions"] == {"open": 1, "committing": 0}
    assert body["webhook_deliveries"]["failed"] == 1

    # /metrics carries the same figures (the page reads them back from that exposition).
    async with client.get("/metrics") as resp:
        text = await resp.text()
    assert "metricgate_ingest_dead_letter_entries 1.0" in text
    assert "metricgate_abandoned_runs 1.0" in text
    assert 'metricgate_upload_sessions{state="open"} 1.0' in text
    assert 'metricgate_webhook_deliveries{state="failed"} 1.0' in text


async def test_page_is_served(client: TestClient[Any, Any]) -> None:
    async with client.get("/metricgate/ingest") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        html = await resp.text()
    assert "/api/2.0/metricgate/ingest/status" in html
    assert "<svg" in html


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_redis_is_reported_not_raised(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    port = _closed_port()
    with socket.socket() as probe:  # the fault is real: nothing listens there
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    dead = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    pool = await create_pool(settings.postgres)
    try:
        status = LiveStatus(IngestStreams(dead, 2), PgLiveCounts(Database(pool, 2.0)), max_age_s=0)
        for _ in range(2):
            await status.refresh()
        assert list(status.errors) == ["redis"]
        assert "postgres" not in status.errors
        warnings = [r for r in caplog.records if "redis is unreachable" in r.getMessage()]
        assert len(warnings) == 1  # once per state change, not once per refresh
    finally:
        await dead.aclose()
        await pool.close()
