"""Webhook tests: the app with a fast dispatcher, loopback receivers, registry events by SQL."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from webhook_receiver import Receiver

from metricgate.config import Settings, WebhookSettings

HOOKS = "/api/2.0/metricgate/webhooks"

# Quick retries and polling so a retry schedule plays out in well under a second.
FAST_WEBHOOKS = WebhookSettings(
    max_attempts=4,
    timeout_s=1.0,
    concurrency=8,
    per_webhook_concurrency=2,
    backoff_base_s=0.1,
    backoff_max_s=0.4,
    poll_interval_s=0.05,
)


@pytest.fixture
def events_db(db_url: str) -> str:
    """A migrated database: registry_events (0002) with the webhook fan-out trigger (0003)."""
    return db_url


@pytest.fixture
def hook_settings(events_db: str, redis_client_url: str, tmp_path: Path) -> Settings:
    base = Settings.from_env(
        {},
        database_url=events_db,
        redis_url=redis_client_url,
        artifacts_uri="file://" + str(tmp_path / "artifacts"),
    )
    return dataclasses.replace(base, webhooks=FAST_WEBHOOKS)


@pytest.fixture
async def hook_client(hook_settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """The whole app (its dispatcher runs inside, as in ``serve``)."""
    from metricgate.api.app import create_app

    async with TestClient(TestServer(create_app(hook_settings))) as test_client:
        yield test_client


@pytest.fixture
async def receivers() -> AsyncIterator[Callable[..., Awaitable[Receiver]]]:
    """``await receivers(statuses=[500, 200])``: a started receiver, stopped after the test."""
    made: list[Receiver] = []

    async def make(**kwargs: Any) -> Receiver:
        receiver = Receiver(**kwargs)
        made.append(receiver)
        return await receiver.start()

    yield make
    for receiver in made:
        await receiver.stop()


class Hooks:
    """The webhook REST API through the test client."""

    def __init__(self, client: TestClient[Any, Any]) -> None:
        self.client = client

    async def call(
        self, method: str, path: str = "", body: Any = None, params: Any = None
    ) -> tuple[int, Any]:
        async with self.client.request(method, HOOKS + path, json=body, params=params) as resp:
            return resp.status, await resp.json()

    async def create(self, url: str, events: list[str], **extra: Any) -> tuple[str, str]:
        """(webhook id, secret)."""
        status, body = await self.call("POST", "", {"url": url, "events": events, **extra})
        assert status == 200, body
        return body["webhook"]["id"], body["secret"]

    async def deliveries(self, webhook_id: str, **params: Any) -> list[dict[str, Any]]:
        status, body = await self.call("GET", f"/{webhook_id}/deliveries", params=params)
        assert status == 200, body
        return body["deliveries"]  # type: ignore[no-any-return]


@pytest.fixture
def hooks(hook_client: TestClient[Any, Any]) -> Hooks:
    return Hooks(hook_client)
