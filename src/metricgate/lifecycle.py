"""Bounded shutdown of background workers and resources (see docs/design-shutdown.md).

Every step of a shutdown has a deadline, so a process ends in a known time whatever its
dependencies do: background workers share one drain deadline and are cancelled after it, and a
resource whose close does not return in time is abandoned (its sockets go with the process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from typing import Protocol

log = logging.getLogger(__name__)

# How long a cancelled worker may take to unwind before it is abandoned.
CANCEL_GRACE_S = 2.0
# The first wait before a crashed worker is restarted; it doubles up to RESTART_MAX_S.
RESTART_DELAY_S = 1.0
RESTART_MAX_S = 60.0
# How long closing one resource (a pool, a client) may take; past it, it is abandoned.
CLOSE_STEP_S = 2.0


class BackgroundWorker(Protocol):
    """What runs beside the HTTP tier (flusher, janitor, webhook dispatcher, upload sweeper)."""

    async def run(self) -> None: ...

    def stop(self) -> None: ...


async def sleep_unless_set(event: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``event`` is set; True if it was set.

    asyncio.wait, not wait_for: on Python < 3.12 wait_for can lose a cancellation that arrives
    as the inner wait completes, and then a shutdown that cancels the sleeper waits forever."""
    if event.is_set():
        return True
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait({waiter}, timeout=seconds)
    finally:
        waiter.cancel()
    return event.is_set()


async def _supervise(name: str, worker: BackgroundWorker, stopping: asyncio.Event) -> None:
    """Restart a worker that died of an unexpected error: a gateway whose flusher silently died
    would keep acknowledging writes that nobody flushes until the backlog limit stops it. The
    wait doubles up to a minute (a worker that crashes at once every time would otherwise log a
    traceback a second), and a crash after the stop request is not restarted."""
    delay_s = RESTART_DELAY_S
    while True:
        try:
            await worker.run()
            return  # stop() was called
        except asyncio.CancelledError:
            raise
        except Exception:
            if stopping.is_set():
                log.exception("%s crashed while stopping", name)
                return
            log.exception("%s crashed; restarting it in %g s", name, delay_s)
            if await sleep_unless_set(stopping, delay_s):
                return
            delay_s = min(delay_s * 2, RESTART_MAX_S)


class BackgroundWorkers:
    """Background workers that stop together under one drain deadline.

    Stopping them one after another, each with its own timeout, made the worst case the *sum*
    of the timeouts (flusher 20 s + webhooks 12 s + sweeper 10 s + janitor 5 s); together it is
    the one deadline the operator configured."""

    def __init__(self) -> None:
        self._tasks: dict[str, tuple[BackgroundWorker, asyncio.Task[None]]] = {}
        self._stopping = asyncio.Event()

    def start(self, name: str, worker: BackgroundWorker) -> None:
        task = asyncio.create_task(_supervise(name, worker, self._stopping), name=name)
        self._tasks[name] = (worker, task)

    async def stop(self, drain_timeout_s: float) -> None:
        """Ask every worker to stop, give them ``drain_timeout_s`` together to finish what they
        hold (a flusher's batch in hand, a webhook attempt in flight), cancel the rest. A
        cancelled worker loses nothing: unacknowledged stream entries stay pending for the next
        flusher, a leased webhook delivery is retried when its lease ends."""
        self._stopping.set()
        if not self._tasks:
            return
        for worker, _ in self._tasks.values():
            worker.stop()
        tasks = {task: name for name, (_, task) in self._tasks.items()}
        self._tasks.clear()
        done, late = await asyncio.wait(tasks, timeout=drain_timeout_s)
        for task in done:
            _report(tasks[task], task)
        if not late:
            return
        log.warning(
            "%s did not stop within %g s; cancelling (their unfinished work is retried later)",
            ", ".join(sorted(tasks[t] for t in late)),
            drain_timeout_s,
        )
        for task in late:
            task.cancel()
        done, stuck = await asyncio.wait(late, timeout=CANCEL_GRACE_S)
        for task in done:
            _report(tasks[task], task)
        if stuck:
            # Abandoned: the process is exiting, and its sockets close with it.
            log.warning(
                "%s ignored cancellation for %g s; abandoning",
                ", ".join(sorted(tasks[t] for t in stuck)),
                CANCEL_GRACE_S,
            )


def _report(name: str, task: asyncio.Task[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.error("%s failed", name, exc_info=exc)


async def close_bounded(
    what: str, closing: Awaitable[object], timeout_s: float = CLOSE_STEP_S
) -> bool:
    """Await a close step for at most ``timeout_s``; False (logged) if it had to be abandoned.
    A failing close is logged too: shutdown goes on with the next resource either way."""
    started = time.monotonic()
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=timeout_s)
    if not done:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait({task}, timeout=0.5)
        log.warning("closing %s took longer than %g s; abandoned it", what, timeout_s)
        return False
    if task.cancelled():
        return False
    exc = task.exception()
    if exc is not None:
        log.warning("closing %s failed after %.1f s: %r", what, time.monotonic() - started, exc)
        return False
    return True
