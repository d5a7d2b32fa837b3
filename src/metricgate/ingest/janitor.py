"""Abandoned runs: a run still RUNNING that has logged nothing for ``abandoned_after_s`` (its
process died without ``end_run``) is tagged ``metricgate.abandoned`` and, if configured, FAILED.

Last activity = the latest of the run's start time, its last acknowledged metric write (the
gateway records it in Redis with every append) and its newest metric timestamp in PostgreSQL.
Several flusher processes may run a janitor; marking is idempotent, so no leader is needed.
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.exceptions import RedisError

from metricgate.config import FlushSettings
from metricgate.domain.errors import MetricgateError
from metricgate.health_log import OutageLog
from metricgate.ingest.streams import IngestStreams
from metricgate.lifecycle import sleep_unless_set
from metricgate.stores.base import IdleRuns

log = logging.getLogger(__name__)

ABANDONED_TAG = "metricgate.abandoned"


class AbandonedRunJanitor:
    def __init__(
        self, runs: IdleRuns, settings: FlushSettings, streams: IngestStreams | None = None
    ) -> None:
        self._runs = runs
        self._streams = streams
        self._settings = settings
        self._stopping = asyncio.Event()
        self._outage = OutageLog(log, "abandoned-run janitor: PostgreSQL or Redis")

    def stop(self) -> None:
        self._stopping.set()

    @property
    def interval_s(self) -> float:
        return min(60.0, max(1.0, self._settings.abandoned_after_s / 4))

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except (MetricgateError, RedisError, OSError) as exc:
                self._outage.failed(exc)
            else:
                self._outage.ok()
            await sleep_unless_set(self._stopping, self.interval_s)

    async def sweep(self) -> list[str]:
        """Mark every abandoned run; returns their ids."""
        now_ms = int(time.time() * 1000)
        cutoff_ms = now_ms - int(self._settings.abandoned_after_s * 1000)
        candidates = await self._runs.running_idle_since(cutoff_ms)
        if not candidates:
            return []
        last_writes = await self._streams.last_writes_ms(list(candidates)) if self._streams else {}
        marked = []
        for run_id, last_activity_ms in candidates.items():
            last_ms = max(last_activity_ms, last_writes.get(run_id, 0))
            if last_ms <= cutoff_ms:
                await self._runs.mark_abandoned(
                    run_id, ABANDONED_TAG, last_ms, fail=self._settings.abandoned_fail
                )
                marked.append(run_id)
        if marked:
            log.info("marked %d abandoned run(s): %s", len(marked), ", ".join(marked[:10]))
            if self._streams and self._settings.abandoned_fail:
                await self._streams.forget_runs(marked)
        return marked
