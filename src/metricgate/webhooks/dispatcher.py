"""Delivers due webhook deliveries from the PostgreSQL outbox: signed POSTs, bounded and retried.

Any number of dispatchers (one per ``serve`` process) share the outbox: a claim leases rows with
``FOR UPDATE SKIP LOCKED``, so two never send the same attempt, and a dispatcher that dies
mid-attempt only delays its deliveries until the lease runs out. Delivery is therefore at least
once; ``X-Metricgate-Delivery`` lets receivers drop the rare duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

import aiohttp

from metricgate import __version__
from metricgate.config import WebhookSettings
from metricgate.domain.errors import Unavailable
from metricgate.domain.webhooks.entities import ClaimedDelivery, delivery_body
from metricgate.domain.webhooks.retry import judge, retry_after_s
from metricgate.domain.webhooks.signing import DELIVERY_HEADER, EVENT_HEADER, signature_headers
from metricgate.health_log import OutageLog
from metricgate.stores.base import DeliveryStore

log = logging.getLogger(__name__)

# A receiver's error text is kept in the log, not its whole body.
_ERROR_BODY_BYTES = 200
# How often old delivered/failed deliveries are purged (each dispatcher; purging twice is harmless).
PURGE_INTERVAL_S = 3600.0


def lease_s(settings: WebhookSettings) -> float:
    """How long a claimed delivery stays invisible to other dispatchers: the request timeout plus
    room to record the result. Past it, the delivery is presumed abandoned and sent again."""
    return settings.timeout_s * 2 + 5.0


class WebhookDispatcher:
    def __init__(self, store: DeliveryStore, settings: WebhookSettings) -> None:
        self._store = store
        self._settings = settings
        self._stopping = False
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_webhook: Counter[str] = Counter()
        self._session: aiohttp.ClientSession | None = None
        self._outage = OutageLog(log, "webhook dispatcher: PostgreSQL")
        self._next_purge = 0.0  # monotonic time; the first purge runs at start

    def stop(self) -> None:
        """Claim nothing more; ``run`` returns once the attempts in flight are recorded."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        # _stopping is not reset here: stop() may come before this task first runs.
        # limit = concurrency: the connection pool can never hold more than the slots we fill.
        connector = aiohttp.TCPConnector(limit=self._settings.concurrency, ttl_dns_cache=60)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
            self._session = session
            try:
                while not self._stopping:
                    await self._purge_when_due()
                    if not await self._claim_round():
                        await self._sleep(self._settings.poll_interval_s)
            finally:
                # On cancellation gather cancels the attempts too; their leases bring them back.
                if self._tasks:
                    await asyncio.gather(*self._tasks, return_exceptions=True)
                self._session = None

    async def _sleep(self, seconds: float) -> None:
        # asyncio.wait, not wait_for: on Python < 3.12 wait_for can lose a cancellation that
        # arrives as the inner wait completes, and then shutdown would wait forever.
        waiter = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({waiter}, timeout=seconds)
        finally:
            waiter.cancel()
        self._wake.clear()

    async def _purge_when_due(self) -> None:
        if self._settings.retention_days <= 0 or time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_INTERVAL_S
        try:
            total = 0
            while not self._stopping:
                deleted = await self._store.purge_completed(self._settings.retention_days * 86400)
                total += deleted
                if deleted == 0:
                    break
        except Unavailable:
            self._next_purge = time.monotonic() + 60.0
            return
        if total:
            log.info(
                "purged %d webhook deliveries older than %g days",
                total,
                self._settings.retention_days,
            )

    def _saturated(self) -> list[str]:
        cap = self._settings.per_webhook_concurrency
        return [webhook for webhook, count in self._per_webhook.items() if count >= cap]

    async def _claim_round(self) -> bool:
        """Fill free slots; True when it is worth claiming again right away."""
        free = self._settings.concurrency - len(self._tasks)
        if free <= 0:
            return False
        try:
            claimed = await self._store.claim(free, self._saturated(), lease_s(self._settings))
        except Unavailable as exc:
            self._outage.failed(exc.message)
            return False
        self._outage.ok()
        for delivery in claimed:
            self._start(delivery)
        return bool(claimed) and len(claimed) < free

    def _start(self, delivery: ClaimedDelivery) -> None:
        self._per_webhook[delivery.webhook_id] += 1
        task = asyncio.create_task(self._attempt(delivery), name=f"webhook-delivery-{delivery.id}")
        self._tasks.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._tasks.discard(finished)
            self._per_webhook[delivery.webhook_id] -= 1
            if self._per_webhook[delivery.webhook_id] <= 0:
                del self._per_webhook[delivery.webhook_id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "webhook delivery %s failed unexpectedly",
                    delivery.id,
                    exc_info=finished.exception(),
                )
            self._wake.set()  # a slot is free

        task.add_done_callback(done)

    async def _attempt(self, delivery: ClaimedDelivery) -> None:
        s = self._settings
        if delivery.attempt > s.max_attempts:
            # Earlier attempts were all cut short (their dispatchers died): give up like any other.
            await self._record(
                delivery, "failed", None, "no attempts left (earlier attempts were interrupted)", 0
            )
            return
        status, error, retry_after, duration_ms = await self._post(delivery)
        verdict = judge(
            status, delivery.attempt, s.max_attempts, s.backoff_base_s, s.backoff_max_s, retry_after
        )
        if verdict.outcome == "failed" and error is None:
            error = f"HTTP {status}"
        if await self._record(
            delivery, verdict.outcome, status, error, duration_ms, verdict.delay_s
        ):
            if verdict.outcome != "delivered":
                log.info(
                    "webhook delivery %s to %s attempt %d: %s (%s)",
                    delivery.id, delivery.url, delivery.attempt, verdict.outcome, error,
                )  # fmt: skip

    async def _record(
        self,
        delivery: ClaimedDelivery,
        outcome: str,
        status: int | None,
        error: str | None,
        duration_ms: int,
        delay_s: float = 0.0,
    ) -> bool:
        if error is not None:
            # Receiver text goes into PostgreSQL text, which cannot hold NUL.
            error = error.replace("\x00", "\ufffd")
        try:
            kept = await self._store.record_attempt(
                delivery.id, delivery.attempt, outcome, status, error, duration_ms, delay_s
            )
        except Unavailable:
            # The lease expires and the delivery is attempted again: at least once still holds.
            log.warning(
                "could not record webhook delivery %s attempt %d", delivery.id, delivery.attempt
            )
            return False
        if not kept:
            log.info(
                "webhook delivery %s attempt %d finished after its lease ran out",
                delivery.id,
                delivery.attempt,
            )
        return kept

    async def _post(
        self, delivery: ClaimedDelivery
    ) -> tuple[int | None, str | None, float | None, int]:
        """One signed POST: (HTTP status or None, error text, Retry-After seconds, duration ms)."""
        assert self._session is not None
        body = delivery_body(delivery.id, delivery.webhook_id, delivery.payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"metricgate-webhooks/{__version__}",
            EVENT_HEADER: delivery.event_type,
            DELIVERY_HEADER: delivery.id,
            **signature_headers(delivery.secret, body),
        }
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        retry_after: float | None = None
        try:
            async with self._session.post(
                delivery.url,
                data=body,
                headers=headers,
                # A redirect is not followed: the signature was made for this receiver.
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout_s),
            ) as response:
                status = response.status
                if not 200 <= status < 300:
                    retry_after = retry_after_s(response.headers.get("Retry-After"))
                    snippet = (
                        (await response.content.read(_ERROR_BODY_BYTES))
                        .decode("utf-8", "replace")
                        .strip()
                    )
                    error = f"HTTP {status}" + (f": {snippet}" if snippet else "")
        except TimeoutError:
            error = f"timed out after {self._settings.timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        duration_ms = int((time.monotonic() - started) * 1000)
        return status, error, retry_after, duration_ms
