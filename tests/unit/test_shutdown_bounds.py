"""Every shutdown step is bounded (docs/design-shutdown.md): background workers stop together
under one deadline, a worker that ignores cancellation is abandoned, a close that hangs is
abandoned (the PostgreSQL pools' bounded close: tests/integration/test_pool_close.py)."""

from __future__ import annotations

import asyncio
import time

import pytest

from metricgate import lifecycle
from metricgate.lifecycle import BackgroundWorkers, close_bounded, sleep_unless_set


class Worker:
    """Runs until stopped; ``ignore_stop`` keeps it running (a drain that cannot finish),
    ``ignore_cancel`` makes it swallow cancellation too (a library that eats CancelledError)."""

    def __init__(self, ignore_stop: bool = False, ignore_cancel: bool = False) -> None:
        self.ignore_stop = ignore_stop
        self.ignore_cancel = ignore_cancel
        self.stopping = asyncio.Event()
        self.finished = False
        self.cancelled = False

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        while True:
            try:
                if not self.ignore_stop:
                    await self.stopping.wait()
                    self.finished = True
                    return
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                self.cancelled = True
                if not self.ignore_cancel:
                    raise


async def test_workers_that_stop_in_time_are_not_cancelled() -> None:
    workers = BackgroundWorkers()
    a, b = Worker(), Worker()
    workers.start("a", a)
    workers.start("b", b)
    await asyncio.sleep(0)
    await workers.stop(drain_timeout_s=5)
    assert a.finished and b.finished and not (a.cancelled or b.cancelled)


async def test_stuck_workers_share_one_deadline_then_are_cancelled() -> None:
    workers = BackgroundWorkers()
    stuck = [Worker(ignore_stop=True) for _ in range(3)]
    for i, worker in enumerate(stuck):
        workers.start(f"stuck-{i}", worker)
    await asyncio.sleep(0)
    started = time.monotonic()
    await workers.stop(drain_timeout_s=1.0)
    took = time.monotonic() - started
    assert all(w.cancelled for w in stuck)
    # One deadline for all three: one after the other would take 3 s.
    assert took < 2.5, took


async def test_a_worker_that_swallows_cancellation_is_abandoned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lifecycle, "CANCEL_GRACE_S", 0.3)
    workers = BackgroundWorkers()
    rogue = Worker(ignore_stop=True, ignore_cancel=True)
    workers.start("rogue", rogue)
    await asyncio.sleep(0)
    await asyncio.wait_for(workers.stop(drain_timeout_s=0.2), 10)  # returns instead of hanging
    assert rogue.cancelled
    rogue.ignore_cancel = False  # let the test end it
    for task in asyncio.all_tasks():
        if task.get_name() == "rogue":
            task.cancel()


async def test_close_bounded_abandons_a_hanging_close_and_reports_a_failing_one() -> None:
    async def hangs() -> None:
        await asyncio.sleep(3600)

    async def fails() -> None:
        raise ConnectionResetError("peer gone")

    async def works() -> None:
        return None

    assert await asyncio.wait_for(close_bounded("hanging", hangs(), timeout_s=0.2), 10) is False
    assert await close_bounded("failing", fails()) is False
    assert await close_bounded("fine", works()) is True


async def test_sleep_unless_set_ends_when_the_event_is_set() -> None:
    event = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, event.set)
    assert await asyncio.wait_for(sleep_unless_set(event, 3600), 10) is True
    assert await sleep_unless_set(asyncio.Event(), 0.01) is False


class Crashes:
    """Crashes on its first ``crashes`` runs, then runs until stopped."""

    def __init__(self, crashes: int) -> None:
        self.crashes = crashes
        self.runs = 0
        self.stopping = asyncio.Event()

    def stop(self) -> None:
        self.stopping.set()

    async def run(self) -> None:
        self.runs += 1
        if self.runs <= self.crashes:
            raise RuntimeError("boom")
        await self.stopping.wait()


async def test_a_crashed_worker_is_restarted_with_a_growing_wait(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lifecycle, "RESTART_DELAY_S", 0.05)
    workers = BackgroundWorkers()
    worker = Crashes(crashes=3)
    workers.start("crashy", worker)
    for _ in range(200):
        if worker.runs == 4:
            break
        await asyncio.sleep(0.01)
    await workers.stop(drain_timeout_s=5)
    assert worker.runs == 4
    waits = [
        r.getMessage().rsplit(" in ", 1)[1]
        for r in caplog.records
        if "restarting it" in r.getMessage()
    ]
    assert waits == ["0.05 s", "0.1 s", "0.2 s"]


async def test_a_worker_crashed_when_the_stop_comes_is_not_restarted() -> None:
    workers = BackgroundWorkers()
    worker = Crashes(crashes=1)  # then waits RESTART_DELAY_S (1 s) before its restart
    workers.start("crashy", worker)
    await asyncio.sleep(0.05)
    await asyncio.wait_for(workers.stop(drain_timeout_s=30), 10)
    assert worker.runs == 1
