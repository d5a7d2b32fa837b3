"""Flusher: stream entries -> PostgreSQL in large batches; XACK only after COMMIT.

Delivery is at least once and the writer is idempotent, so a flusher may die at any instruction:
- before COMMIT: the entries stay pending under its name; a live flusher reclaims them after
  ``claim_idle_s`` (XAUTOCLAIM), or it re-reads them itself on restart (XREADGROUP id 0);
- between COMMIT and XACK: the same, and the replayed batch writes nothing new.
Entries are trimmed from the stream only once no consumer holds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import asyncpg
from redis.exceptions import RedisError, ResponseError

from metricgate.config import FlushSettings
from metricgate.domain.errors import InvalidParameter, StoreUnavailable
from metricgate.domain.metrics import wire
from metricgate.domain.metrics.chunks import FlushBatch, build_batch, chunks_from_entries
from metricgate.health_log import OutageLog
from metricgate.ingest.streams import Entry, IngestStreams
from metricgate.lifecycle import sleep_unless_set
from metricgate.observability import METRICS
from metricgate.stores.base import MetricBatchWriter

T = TypeVar("T")

log = logging.getLogger(__name__)

# Errors after which retrying the same batch can succeed: the database or Redis is away.
_TRANSIENT = (
    StoreUnavailable,
    RedisError,
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncio.TimeoutError,
    # A flush writes its chunks in entry order, not index order (sorting cost more than it
    # saved), so two flushes holding the same chunk - a replay of an entry still being written
    # by a slow flusher, or a client's retry that landed in another flush - can deadlock on
    # the unique index. PostgreSQL aborts one of them; its retry then meets the committed
    # chunks and takes the ON CONFLICT path. Rare, bounded, and never a lost or doubled point.
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
)
# Conflicts between concurrent writers, not outages: logged each time, they are rare.
_CONFLICTS = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# Errors that retrying the same entries cannot fix (a value PostgreSQL refuses).
_PERMANENT = (asyncpg.PostgresError, InvalidParameter)
_RETRY_MAX_S = 5.0
# Once stopping, a write still in hand is retried this often: if the dependency comes back
# within the drain timeout the batch is finished and acknowledged instead of replayed later.
_RETRY_MAX_STOPPING_S = 0.5
# How long a cancelled write may take to unwind (release its connection) before run() returns.
_CANCEL_GRACE_S = 1.0


class _GaveUp(Exception):
    """A read-side operation failed while stopping: nothing is in hand, so nothing to finish."""


@dataclass
class _Prepared:
    entries: list[Entry]  # everything read: all of it is acknowledged after the commit
    decoded: list[tuple[Entry, wire.PointBatch]]
    poison: list[tuple[Entry, str]]  # undecodable: dead-lettered, never written
    batch: FlushBatch


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Flusher:
    def __init__(
        self, streams: IngestStreams, writer: MetricBatchWriter, settings: FlushSettings
    ) -> None:
        self._streams = streams
        self._writer = writer
        self._settings = settings
        self.consumer = consumer_name()
        self._stopping = asyncio.Event()
        self._redis = OutageLog(log, f"flusher {self.consumer}: Redis")
        self._postgres = OutageLog(log, f"flusher {self.consumer}: PostgreSQL")

    def stop(self) -> None:
        """Stop reading new entries; the batch in hand is still written and acknowledged."""
        self._stopping.set()

    async def run(self) -> None:
        try:
            await self._with_retry(self._streams.ensure_groups, self._redis, finish=False)
        except _GaveUp:
            log.info("flusher %s stopped before it started", self.consumer)
            return
        # Recovery first: entries this consumer name read but never acknowledged. A fresh name
        # has none; orphans of dead consumers come back through claim_orphans.
        last_claim = last_trim = 0.0
        # Two batches in hand at most: while PostgreSQL writes one (the flusher only waits), the
        # next is read and decoded. Writes stay one at a time and in order, so a run's points
        # still commit in the order they were read, and XACK still follows each COMMIT.
        committing: asyncio.Task[None] | None = None
        try:
            try:
                while not self._stopping.is_set():
                    now = time.monotonic()
                    if now - last_claim >= max(self._settings.claim_idle_s / 2, 0.5):
                        claimed = await self._with_retry(self._claim, self._redis, finish=False)
                        committing = await self._hand_over(committing, self._prepare(claimed))
                        last_claim = time.monotonic()
                    entries = await self._with_retry(self._collect, self._redis, finish=False)
                    committing = await self._hand_over(committing, self._prepare(entries))
                    if time.monotonic() - last_trim >= self._settings.trim_interval_s:
                        await self._with_retry(self._streams.trim, self._redis, finish=False)
                        last_trim = time.monotonic()
            except _GaveUp:
                pass  # stopping with Redis away: what was read stays pending for the next flusher
            if committing is not None:
                await committing
        except asyncio.CancelledError:
            if committing is not None:
                committing.cancel()
                # Let the write unwind (roll back, release its connection) before the pool
                # closes; bounded, and its entries stay pending either way.
                await asyncio.wait({committing}, timeout=_CANCEL_GRACE_S)
            raise
        log.info("flusher %s stopped", self.consumer)

    async def _hand_over(
        self, committing: asyncio.Task[None] | None, prepared: _Prepared | None
    ) -> asyncio.Task[None] | None:
        """Wait for the write in progress, then start writing ``prepared`` in the background."""
        if prepared is None:
            return committing
        if committing is not None:
            await committing
        return asyncio.create_task(self._commit(prepared))

    async def _claim(self) -> list[Entry]:
        min_idle_ms = int(self._settings.claim_idle_s * 1000)
        claimed = await self._streams.claim_orphans(self.consumer, min_idle_ms, count=1000)
        if claimed:
            log.info("flusher %s reclaimed %d orphaned entries", self.consumer, len(claimed))
        return claimed

    async def _collect(self) -> list[Entry]:
        """Read until the batch is big enough or the oldest entry has waited max_delay."""
        batch: list[Entry] = []
        points = 0
        deadline = time.monotonic() + self._settings.max_delay_ms / 1000
        block_ms = max(1, self._settings.max_delay_ms)
        while not self._stopping.is_set():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if batch and remaining_ms <= 0:
                break
            wait_ms = max(1, remaining_ms) if batch else block_ms
            entries = await self._streams.read(self.consumer, count=1000, block_ms=wait_ms)
            if not entries:
                # Idle: return so run() gets to reclaim orphans and trim even with no traffic.
                break
            batch.extend(entries)
            points += sum(e.fields.get(b"k", b"").count(b"\n") + 1 for e in entries)
            if points >= self._settings.batch_points:
                break
        return batch

    def _prepare(self, entries: Sequence[Entry]) -> _Prepared | None:
        """The CPU part of a flush: decode entries and build the rows one transaction writes."""
        if not entries:
            return None
        decoded, poison = [], []
        for entry in entries:
            try:
                decoded.append((entry, wire.decode(entry.fields)))
            except wire.WireError as exc:
                poison.append((entry, str(exc)))
        batch = build_batch(chunks_from_entries([b for _, b in decoded]))
        return _Prepared(list(entries), decoded, poison, batch)

    async def _commit(self, prepared: _Prepared) -> None:
        """COMMIT, then dead-letter what can never be written, then XACK."""
        decoded, poison = prepared.decoded, list(prepared.poison)
        started = time.monotonic()
        try:
            await self._with_retry(lambda: self._writer.write(prepared.batch), self._postgres)
        except _PERMANENT as exc:
            # Not transient: some entry can never be written. Find it entry by entry.
            log.error("batch of %d entries failed (%s); isolating the bad entry", len(decoded), exc)
            decoded, bad = await self._write_one_by_one(decoded)
            poison.extend(bad)
        for entry, reason in poison:
            log.error("dead-lettering entry %s of %s: %s", entry.entry_id, entry.stream, reason)
            await self._with_retry(
                functools.partial(self._streams.dead_letter, entry, reason), self._redis
            )
            METRICS.dead_lettered.inc()
        # XACK strictly after COMMIT: an ack lost here only causes a harmless replay.
        await self._with_retry(lambda: self._streams.ack(prepared.entries), self._redis)
        await self._with_retry(
            lambda: self._streams.forget_flushed((b.run_id, e.entry_id) for e, b in decoded),
            self._redis,
        )
        self._observe(decoded, started)

    async def _write(self, batches: list[wire.PointBatch]) -> None:
        await self._writer.write(build_batch(chunks_from_entries(batches)))

    async def _write_one_by_one(
        self, decoded: list[tuple[Entry, wire.PointBatch]]
    ) -> tuple[list[tuple[Entry, wire.PointBatch]], list[tuple[Entry, str]]]:
        good, bad = [], []
        for entry, batch in decoded:
            try:
                await self._with_retry(functools.partial(self._write, [batch]), self._postgres)
                good.append((entry, batch))
            except _PERMANENT as exc:
                bad.append((entry, f"{type(exc).__name__}: {exc}"))
        return good, bad

    def _observe(self, decoded: list[tuple[Entry, wire.PointBatch]], started: float) -> None:
        now_ms = time.time() * 1000
        points = sum(len(b) for _, b in decoded)
        METRICS.flush_seconds.observe(time.monotonic() - started)
        METRICS.flush_batch_points.observe(points)
        METRICS.points_flushed.inc(points)
        for _, batch in decoded:
            METRICS.ack_to_visible_seconds.observe(max(0.0, (now_ms - batch.acked_at_ms) / 1000))

    async def _with_retry(
        self, operation: Callable[[], Awaitable[T]], dependency: OutageLog, *, finish: bool = True
    ) -> T:
        """Retry transient failures with capped backoff, for as long as it takes: giving up
        would mean dropping acknowledged points. On shutdown the drain timeout cancels it.

        ``finish=False`` marks the read side (claim, read, trim): once stopping, a failure there
        raises ``_GaveUp`` at once instead of retrying, because nothing read is lost (it stays
        pending) and waiting would only spend the drain timeout. An outage is logged once when
        it starts and once when it ends (``dependency``), not at every retry."""
        delay_s = 0.1
        while True:
            try:
                result = await operation()
            except _TRANSIENT as exc:
                if isinstance(exc, _CONFLICTS):
                    log.warning("flusher %s: %s; retrying in %.1f s", self.consumer, exc, delay_s)
                else:
                    dependency.failed(exc)
                if not finish and self._stopping.is_set():
                    raise _GaveUp from exc
                if isinstance(exc, ResponseError) and (
                    "NOGROUP" in str(exc) or "no such key" in str(exc)
                ):
                    # Redis came back without its data (no AOF, or a new instance): appends
                    # recreated the streams, but not our consumer group.
                    with contextlib.suppress(RedisError):
                        await self._streams.ensure_groups()
                if finish:
                    await asyncio.sleep(
                        min(delay_s, _RETRY_MAX_STOPPING_S) if self._stopping.is_set() else delay_s
                    )
                else:
                    # A stop during the wait ends it, and the read side gives up.
                    if await sleep_unless_set(self._stopping, delay_s):
                        raise _GaveUp from exc
                delay_s = min(delay_s * 2, _RETRY_MAX_S)
            else:
                dependency.ok()
                return result
