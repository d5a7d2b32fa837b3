"""Several dispatchers on one outbox (as several gateways run them): each delivery is sent once,
in-flight work stays within the configured bounds, and a stopped dispatcher stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import asyncpg
from tests.webhooks.conftest import FAST_WEBHOOKS
from webhook_receiver import Receiver, insert_event, wait_for

from metricgate.config import PostgresSettings, WebhookSettings
from metricgate.service import background_workers
from metricgate.stores.postgres.pool import Database, create_pool
from metricgate.stores.postgres.webhooks import PgWebhookStore
from metricgate.webhooks.dispatcher import WebhookDispatcher


@contextlib.asynccontextmanager
async def _dispatchers(
    db_url: str, count: int, settings: WebhookSettings
) -> AsyncIterator[PgWebhookStore]:
    """``count`` dispatchers, each with its own pool (like separate processes); yields a store."""
    async with contextlib.AsyncExitStack() as stack:
        stores = []
        for _ in range(count):
            pool = await create_pool(PostgresSettings(url=db_url, pool_min_size=1, pool_max_size=4))
            db = Database(pool, 5.0)
            stack.push_async_callback(db.aclose)
            stores.append(PgWebhookStore(db))
        # Entered after the pools: the dispatchers stop before their pools close.
        workers = await stack.enter_async_context(background_workers(5.0))
        for index, store in enumerate(stores):
            workers.start(f"webhooks-{index}", WebhookDispatcher(store, settings))
        yield stores[-1]


class CountingReceiver(Receiver):
    """Also tracks how many requests it holds at once."""

    in_flight: int = 0
    peak: int = 0

    async def _handle(self, request):  # type: ignore[no-untyped-def]
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super()._handle(request)
        finally:
            self.in_flight -= 1


async def test_three_dispatchers_send_every_delivery_exactly_once(
    db_url: str, conn: asyncpg.Connection
) -> None:
    receivers = [await CountingReceiver(delay_s=0.05).start() for _ in range(2)]
    settings = dataclasses.replace(FAST_WEBHOOKS, concurrency=4, per_webhook_concurrency=2)
    try:
        async with _dispatchers(db_url, 3, settings) as store:
            for receiver in receivers:
                await store.create(receiver.url, ["model_version.*"], None, None, True)
            for version in range(1, 31):
                await insert_event(conn, "model_version.created", "m", version)
            await wait_for(lambda: sum(len(r.requests) for r in receivers) >= 60, 30)
            await asyncio.sleep(0.3)  # anything duplicated would show up by now
        for receiver in receivers:
            ids = [r.headers["X-Metricgate-Delivery"] for r in receiver.requests]
            assert len(ids) == len(set(ids)) == 30
            assert sorted(r.json["version"] for r in receiver.requests) == list(range(1, 31))
            # Per webhook: at most per_webhook_concurrency in flight per dispatcher.
            assert receiver.peak <= 3 * settings.per_webhook_concurrency
        states = await conn.fetch(
            "SELECT state, attempts, count(*) FROM webhook_deliveries GROUP BY 1, 2"
        )
        assert [tuple(r) for r in states] == [("delivered", 1, 60)]
    finally:
        for receiver in receivers:
            await receiver.stop()


async def test_one_webhook_never_takes_more_than_its_share(
    db_url: str, conn: asyncpg.Connection
) -> None:
    receiver = await CountingReceiver(delay_s=0.3).start()
    settings = dataclasses.replace(FAST_WEBHOOKS, concurrency=8, per_webhook_concurrency=2)
    try:
        async with _dispatchers(db_url, 1, settings) as store:
            await store.create(receiver.url, ["*"], None, None, True)
            for version in range(1, 9):
                await insert_event(conn, "model_version.created", "m", version)
            await wait_for(lambda: len(receiver.requests) == 8, 20)
        assert receiver.peak == 2
    finally:
        await receiver.stop()


async def test_paused_webhook_keeps_its_deliveries_until_resumed(
    db_url: str, conn: asyncpg.Connection
) -> None:
    receiver = await Receiver().start()
    try:
        async with _dispatchers(db_url, 1, FAST_WEBHOOKS) as store:
            hook, _ = await store.create(receiver.url, ["*"], None, None, True)
            await store.update(hook.id, {"active": False})
            # Queued while paused: it waits in the outbox instead of being sent or dropped.
            await store.enqueue_ping(hook.id)
            await asyncio.sleep(0.5)
            assert receiver.requests == []
            [pending] = await store.list_deliveries(hook.id, 10)
            assert pending.state == "pending" and pending.attempts == 0
            await store.update(hook.id, {"active": True})
            await wait_for(lambda: len(receiver.requests) == 1, 10)
    finally:
        await receiver.stop()


async def test_old_completed_deliveries_are_purged_at_start(
    db_url: str, conn: asyncpg.Connection
) -> None:
    pool = await create_pool(PostgresSettings(url=db_url, pool_min_size=1, pool_max_size=2))
    store = PgWebhookStore(Database(pool, 5.0))
    try:
        hook, _ = await store.create("http://127.0.0.1:9/", ["*"], None, None, False)
        ids = [await store.enqueue_ping(hook.id) for _ in range(4)]
    finally:
        await pool.close()
    ages = [("delivered", 40), ("failed", 31), ("delivered", 1), ("pending", 90)]
    for delivery_id, (state, days) in zip(ids, ages, strict=True):
        await conn.execute(
            """UPDATE webhook_deliveries SET state = $2, created_at = now() - make_interval(days => $3),
                   completed_at = CASE WHEN $2 = 'pending' THEN NULL ELSE now() - make_interval(days => $3) END
               WHERE id = $1::uuid""",
            delivery_id, state, days,
        )  # fmt: skip
    async with _dispatchers(db_url, 1, dataclasses.replace(FAST_WEBHOOKS, retention_days=30)):

        async def purged() -> bool:
            return await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 2

        await wait_for(purged, 10)
    kept = await conn.fetch("SELECT id::text, state FROM webhook_deliveries ORDER BY created_at")
    assert [(r["id"], r["state"]) for r in kept] == [(ids[3], "pending"), (ids[2], "delivered")]
