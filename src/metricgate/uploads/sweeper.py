"""Upload garbage collection, run inside every ``serve`` process (no leader needed).

Each sweep: (1) expires open sessions past their TTL and drops their staged data; (2) rolls
forward commits whose committer died (stale heartbeat); (3) aborts staged uploads that no
live session owns and that are older than the TTL: what a gateway that crashed between
``stage_begin`` and recording the session left behind (or an abandoned MLflow multipart upload).
Rows are claimed with ``FOR UPDATE SKIP LOCKED``, so gateways sweeping at once never collide.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from metricgate.config import UploadSettings
from metricgate.domain.errors import InvalidParameter, MetricgateError
from metricgate.health_log import OutageLog
from metricgate.lifecycle import sleep_unless_set
from metricgate.stores.artifacts.base import StagingArea
from metricgate.stores.base import UploadSweeps
from metricgate.uploads.commit import SessionCommitter

log = logging.getLogger(__name__)


@dataclass
class SweepReport:
    expired: int = 0
    rolled_forward: int = 0
    orphans_aborted: int = 0


class UploadSweeper:
    def __init__(
        self,
        store: StagingArea,
        uploads: UploadSweeps,
        committer: SessionCommitter,
        settings: UploadSettings,
    ) -> None:
        self._store = store
        self._uploads = uploads
        self._committer = committer
        self._settings = settings
        self._stopping = asyncio.Event()
        self._outage = OutageLog(log, "upload sweeper: PostgreSQL or the artifact store")

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except (MetricgateError, OSError) as exc:
                self._outage.failed(exc)
            else:
                self._outage.ok()
            await sleep_unless_set(self._stopping, self._settings.sweep_interval_s)

    async def sweep(self) -> SweepReport:
        report = SweepReport()
        report.expired = await self._expire()
        report.rolled_forward = await self._roll_forward()
        report.orphans_aborted = await self._abort_orphans()
        if report.expired or report.rolled_forward or report.orphans_aborted:
            log.info("upload sweep: %s", report)
        return report

    async def _expire(self) -> int:
        count = 0
        while sessions := await self._uploads.expire_due():
            for session in sessions:
                for file in session.files:
                    # A failure here leaves an orphan that step 3 retries once it is old enough.
                    with contextlib.suppress(MetricgateError, OSError):
                        await self._store.stage_abort(file.dest_path, file.staging_id)
            count += len(sessions)
        return count

    async def _roll_forward(self) -> int:
        count = 0
        for session_id in await self._uploads.claim_stale_commits(self._settings.commit_lease_s):
            session = await self._uploads.get(session_id)
            try:
                await self._committer.commit(session)
                count += 1
            except InvalidParameter as exc:
                log.warning(
                    "rolled-forward commit of %s was rolled back: %s", session_id, exc.message
                )
            except (MetricgateError, OSError) as exc:
                # Stays committing (hidden); the next sweep claims it again after the lease.
                log.warning("rolling forward the commit of %s failed: %s", session_id, exc)
        return count

    async def _abort_orphans(self) -> int:
        cutoff = time.time() - self._settings.ttl_s
        staged = [
            (p, sid) for p, sid, started in await self._store.stage_list() if started < cutoff
        ]
        if not staged:
            return 0
        live = await self._uploads.live_staging_ids()
        count = 0
        for path, staging_id in staged:
            if staging_id in live:
                continue
            with contextlib.suppress(MetricgateError, OSError):
                await self._store.stage_abort(path, staging_id)
                count += 1
        return count
