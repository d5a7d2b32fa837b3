"""The server's live state for operators: stream backlog per shard, flush lag, dead letters,
abandoned runs, uploads in progress and webhook deliveries.

These live in Redis and PostgreSQL, not in any one process, so they are read when someone looks
(a ``/metrics`` scrape or the ingest page), at most once per ``max_age_s``, and published as
Prometheus gauges. ``/metrics`` and the ingest page therefore show the same numbers. A dependency
that is down leaves its gauges at their last value and is reported in ``errors``; the change of
state is logged once, not on every refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from redis.exceptions import RedisError

from metricgate.domain.errors import MetricgateError
from metricgate.ingest.streams import IngestStreams
from metricgate.observability import METRICS
from metricgate.stores.base import LiveCountSource

log = logging.getLogger(__name__)


@dataclass
class LiveStatus:
    streams: IngestStreams | None  # None in direct ingest mode: no stream to watch
    counts: LiveCountSource
    max_age_s: float = 2.0
    errors: dict[str, str] = field(default_factory=dict)
    _refreshed_at: float = float("-inf")
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def refresh(self) -> None:
        # Concurrent lookers share one refresh; a fresh enough one is reused.
        async with self._lock:
            if time.monotonic() - self._refreshed_at < self.max_age_s:
                return
            await self._refresh_streams()
            await self._refresh_counts()
            self._refreshed_at = time.monotonic()

    async def _refresh_streams(self) -> None:
        if self.streams is None:
            return
        try:
            shards = await asyncio.wait_for(self.streams.shard_status(), 2.0)
            dead = await asyncio.wait_for(self.streams.dead_letter_entries(), 2.0)
        except (TimeoutError, RedisError, OSError) as exc:
            self._failed("redis", exc)
            return
        self._recovered("redis")
        now_ms = time.time() * 1000
        oldest = [s.oldest_unflushed_ms for s in shards if s.oldest_unflushed_ms is not None]
        for s in shards:
            label = str(s.shard)
            METRICS.stream_entries.labels(label).set(s.entries)
            METRICS.pending_entries.labels(label).set(s.pending)
            if s.undelivered is not None:
                METRICS.undelivered_entries.labels(label).set(s.undelivered)
        METRICS.flush_lag_seconds.set(max(0.0, (now_ms - min(oldest)) / 1000) if oldest else 0.0)
        METRICS.dead_letter_entries.set(dead)

    async def _refresh_counts(self) -> None:
        try:
            counts = await asyncio.wait_for(self.counts.counts(), 2.0)
        except (TimeoutError, MetricgateError, OSError) as exc:
            self._failed("postgres", exc)
            return
        self._recovered("postgres")
        METRICS.abandoned_runs.set(counts.abandoned_runs)
        METRICS.upload_sessions.labels("open").set(counts.uploads_open)
        METRICS.upload_sessions.labels("committing").set(counts.uploads_committing)
        METRICS.webhook_deliveries.labels("pending").set(counts.deliveries_pending)
        METRICS.webhook_deliveries.labels("failed").set(counts.deliveries_failed)

    def _failed(self, part: str, exc: BaseException) -> None:
        if part not in self.errors:
            log.warning(
                "live status: %s is unreachable (%s); its figures are stale",
                part,
                exc or type(exc).__name__,
            )
        self.errors[part] = f"{part} unreachable: {exc or type(exc).__name__}"

    def _recovered(self, part: str) -> None:
        if self.errors.pop(part, None) is not None:
            log.info("live status: %s is reachable again", part)
