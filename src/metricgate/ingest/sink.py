"""The gateway's metric seam over Redis streams: acknowledge after XADD, bounded, read-your-writes.

An acknowledgement (HTTP 200) is sent only after Redis accepted the entry. Overload never queues
in gateway memory: past the backlog limit, past the in-flight limit or with Redis unreachable
the request is refused with 503 + Retry-After, which the mlflow client retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from redis.exceptions import RedisError

from metricgate.config import IngestSettings
from metricgate.domain.errors import Unavailable
from metricgate.domain.metrics import wire
from metricgate.domain.tracking.entities import Metric, MetricColumns
from metricgate.health_log import OutageLog
from metricgate.ingest.streams import IngestStreams
from metricgate.observability import METRICS
from metricgate.stores.base import MetricAppender

log = logging.getLogger(__name__)

BACKLOG_POLL_S = 0.1
CLOSE_TIMEOUT_S = 2.0


class MetricSink(Protocol):
    """The seam every metric write goes through: StreamMetricSink or DirectMetricSink."""

    async def append(self, run_id: str, metrics: list[Metric]) -> None: ...

    async def append_columns(self, run_id: str, columns: MetricColumns) -> None: ...

    async def wait_visible(self, run_id: str) -> None: ...

    async def wait_runs_visible(self, run_ids: Sequence[str]) -> None: ...

    async def wait_all_visible(self) -> None: ...


class BacklogFull(Unavailable):
    pass


class StreamMetricSink:
    def __init__(self, streams: IngestStreams, settings: IngestSettings) -> None:
        self._streams = streams
        self._settings = settings
        self._inflight = 0
        self._backlog = 0
        self._poller: asyncio.Task[None] | None = None
        self._stopping = False
        # One line when Redis goes away and one when it is back, per path (the poller runs
        # every 100 ms and appends run per request: logging each failure floods the log).
        self._poll_outage = OutageLog(log, "Redis (ingest backlog poll)")
        self._append_outage = OutageLog(log, "Redis (metric appends, answered 503 meanwhile)")

    async def start(self) -> None:
        await self._streams.ensure_groups()
        self._backlog = await self._streams.backlog_entries()
        self._poller = asyncio.create_task(self._poll_backlog(), name="backlog-poller")

    async def aclose(self) -> None:
        if self._poller is not None:
            # The flag as well as the cancel: a cancellation delivered inside a Redis call can
            # come out of redis-py as a RedisError, which the poller logs and survives; it then
            # still sees the flag and ends (found as a shutdown that hung ~1 time in 8).
            self._stopping = True
            self._poller.cancel()
            # Bounded: shutdown must end even if a Redis call ignores the cancel for a while
            # (a peer that stopped answering keeps the socket open until socket_timeout).
            done, _ = await asyncio.wait({self._poller}, timeout=CLOSE_TIMEOUT_S)
            if not done:
                log.warning(
                    "backlog poller did not stop within %.0f s; abandoning it", CLOSE_TIMEOUT_S
                )
            else:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    self._poller.result()
            self._poller = None

    async def _poll_backlog(self) -> None:
        # Polling keeps the check off the request path; the limit can be overshot by at most
        # one poll interval of intake, which is what keeps it "bounded" rather than exact.
        while not self._stopping:
            try:
                self._backlog = await self._streams.backlog_entries()
                METRICS.backlog_entries.set(self._backlog)
            except RedisError as exc:
                self._poll_outage.failed(exc)
            else:
                self._poll_outage.ok()
            await asyncio.sleep(BACKLOG_POLL_S)

    async def append(self, run_id: str, metrics: Sequence[Metric]) -> None:
        self._admit()
        await self._append_entry(
            run_id, wire.encode(run_id, metrics, int(time.time() * 1000)), len(metrics)
        )

    async def append_columns(self, run_id: str, columns: MetricColumns) -> None:
        self._admit()
        await self._append_entry(
            run_id, wire.encode_columns(run_id, columns, int(time.time() * 1000)), len(columns)
        )

    def _admit(self) -> None:
        """Backpressure before any work: a full backlog or too many appends in flight."""
        if self._backlog >= self._settings.max_backlog_entries:
            METRICS.rejections.labels("backlog").inc()
            raise BacklogFull("metric ingest backlog is full; retry later", retry_after_s=2)
        if self._inflight >= self._settings.max_inflight_requests:
            METRICS.rejections.labels("inflight").inc()
            raise Unavailable("too many concurrent metric writes; retry later", retry_after_s=1)

    async def _append_entry(self, run_id: str, fields: dict[bytes, bytes], points: int) -> None:
        self._inflight += 1
        try:
            await self._streams.append(run_id, fields)
        except RedisError as exc:
            METRICS.rejections.labels("redis").inc()
            self._append_outage.failed(exc)
            raise Unavailable(
                "metric buffer (Redis) is unavailable; retry later", retry_after_s=2
            ) from exc
        finally:
            self._inflight -= 1
        self._append_outage.ok()
        METRICS.points_accepted.inc(points)

    async def wait_visible(self, run_id: str) -> None:
        """Return once every point acknowledged for ``run_id`` before this call is in PostgreSQL."""
        await self.wait_runs_visible((run_id,))

    async def wait_runs_visible(self, run_ids: Sequence[str]) -> None:
        """``wait_visible`` for several runs (a bulk read): one Redis round trip when none of
        them has anything in flight."""
        try:
            for shard, entry_id in await self._streams.pending_ids_of_runs(run_ids):
                if entry_id is not None:
                    await self._wait_flushed(shard, entry_id)
        except RedisError as exc:
            raise Unavailable(
                "metric buffer (Redis) is unavailable; retry later", retry_after_s=2
            ) from exc

    async def wait_all_visible(self) -> None:
        """For reads spanning many runs (search): wait for everything acknowledged so far."""
        try:
            last_ids = await self._streams.last_ids()
            for shard, entry_id in enumerate(last_ids):
                if entry_id is not None:
                    await self._wait_flushed(shard, entry_id)
        except RedisError as exc:
            raise Unavailable(
                "metric buffer (Redis) is unavailable; retry later", retry_after_s=2
            ) from exc

    async def _wait_flushed(self, shard: int, entry_id: bytes) -> None:
        deadline = time.monotonic() + self._settings.read_wait_s
        delay_s = 0.002
        while not await self._streams.is_flushed(shard, entry_id):
            if time.monotonic() >= deadline:
                METRICS.rejections.labels("read_wait").inc()
                raise Unavailable(
                    "recently logged metrics are not yet readable (is a flusher running?); retry later",
                    retry_after_s=2,
                )
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.05)


class DirectMetricSink:
    """``INGEST_MODE=direct``: write through to PostgreSQL in the request; always visible."""

    def __init__(self, writer: MetricAppender) -> None:
        self._writer = writer

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    async def append_columns(self, run_id: str, columns: MetricColumns) -> None:
        await self.append(run_id, columns.metrics())

    async def append(self, run_id: str, metrics: Sequence[Metric]) -> None:
        await self._writer.append(run_id, metrics)
        METRICS.points_accepted.inc(len(metrics))
        METRICS.points_flushed.inc(len(metrics))  # committed in the request

    async def wait_visible(self, run_id: str) -> None:
        return None

    async def wait_runs_visible(self, run_ids: Sequence[str]) -> None:
        return None

    async def wait_all_visible(self) -> None:
        return None
