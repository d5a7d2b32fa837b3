"""Runs the HTTP tier until SIGTERM/SIGINT, then drains: the one place signals are handled.

aiohttp's own run_app closes connections before a request body has fully arrived (data received
after shutdown starts is dropped), so an upload in progress would fail. Here shutdown is:
stop listening -> wait for in-flight requests (bounded) -> close connections -> stop background
workers (bounded) -> close pools (bounded). A second SIGTERM/SIGINT ends the process at once.
The bounds and what happens to unfinished work: docs/design-shutdown.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable

import uvloop
from aiohttp import web

from metricgate.api.app import create_app
from metricgate.api.keys import IN_FLIGHT
from metricgate.auth.bootstrap import ensure_admin
from metricgate.config import Settings
from metricgate.health_log import quiet_library_logs
from metricgate.observability import multiprocess_metrics_dir
from metricgate.runtime import tune_gc
from metricgate.service import open_auth_store, run_flushers

log = logging.getLogger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# aiohttp's grace period for handlers still running after the in-flight wait (AppRunner below);
# it waits up to this long for them, then cancels them and waits up to this long again.
HANDLER_GRACE_S = 1.0
# Resource closes after the drain (lifecycle.CLOSE_STEP_S each, usually instant): their share.
CLOSE_ALLOWANCE_S = 2.0
# Last resort: if a shutdown is still going this long after its own bound, something ignored
# every bound above (a blocking call in C, a bug); the process exits with EX_SOFTWARE.
WATCHDOG_GRACE_S = 15.0
WATCHDOG_EXIT_CODE = 70
# A worker of `serve --workers N` gets a stop signal twice for one stop: from the parent, which
# forwards it, and directly when the signal went to the whole process group (Ctrl-C in a
# terminal, systemd's KillMode=control-group). Repeats this close together are the same request.
WORKER_REPEAT_WINDOW_S = 0.5


def serve_shutdown_bound_s(settings: Settings) -> float:
    """The longest a `serve` process takes from SIGTERM to exit, whatever its dependencies do."""
    http = settings.http.shutdown_timeout_s + 2 * HANDLER_GRACE_S
    return http + settings.flush.drain_timeout_s + CLOSE_ALLOWANCE_S


def flush_shutdown_bound_s(settings: Settings) -> float:
    """The same for `metricgate flush`: no HTTP tier, only the drain and the closes."""
    return settings.flush.drain_timeout_s + CLOSE_ALLOWANCE_S


def _start_watchdog(after_s: float) -> None:
    def expire() -> None:
        # No logging module here: its lock may be held by the thread that is stuck.
        message = (
            f"metricgate: shutdown still running {after_s:.0f} s after the signal; exiting now\n"
        )
        with contextlib.suppress(OSError):
            os.write(sys.stderr.fileno(), message.encode())
        os._exit(WATCHDOG_EXIT_CODE)

    timer = threading.Timer(after_s, expire)
    timer.daemon = True
    timer.start()


def _stop_on_signals(stop: asyncio.Event, bound_s: float, repeat_window_s: float = 0.0) -> None:
    """The first SIGTERM/SIGINT starts a graceful shutdown (sets ``stop``). After it (after
    ``repeat_window_s``) both signals get their default action back, so a second one ends the
    process at once in the kernel, even if the event loop is stuck. Nothing acknowledged is lost
    that way: what was not acknowledged in Redis stays pending for the next flusher, and
    PostgreSQL rolls back any transaction the process had open."""
    loop = asyncio.get_running_loop()
    received = False

    def default_action_again() -> None:
        for signum in _STOP_SIGNALS:
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_DFL)

    def on_signal(signum: int) -> None:
        nonlocal received
        if received:
            return  # the same stop request, delivered twice (see WORKER_REPEAT_WINDOW_S)
        received = True
        log.info(
            "%s received: shutting down within %.0f s; a second SIGTERM/SIGINT exits at once",
            signal.Signals(signum).name,
            bound_s,
        )
        stop.set()
        _start_watchdog(bound_s + WATCHDOG_GRACE_S)
        if repeat_window_s > 0:
            loop.call_later(repeat_window_s, default_action_again)
        else:
            default_action_again()

    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, on_signal, signum)


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    reuse_port: bool = False,
    repeat_window_s: float = 0.0,
) -> None:
    """Serve until ``stop`` is set (or a signal arrives), then shut down gracefully."""
    stop = stop or asyncio.Event()
    app = create_app(settings)
    access_log = logging.getLogger("aiohttp.access") if settings.http.access_log else None
    # After the drain below, anything still running gets a short grace period, then is cancelled.
    runner = web.AppRunner(
        app, handle_signals=False, access_log=access_log, shutdown_timeout=HANDLER_GRACE_S
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.http.host, settings.http.port, reuse_port=reuse_port or None
        )
        await site.start()
        log.info("listening on http://%s:%d", settings.http.host, settings.http.port)
        if handle_signals:
            _stop_on_signals(stop, serve_shutdown_bound_s(settings), repeat_window_s)
        await stop.wait()
        log.info("shutdown requested: no new connections; draining in-flight requests")
        await site.stop()
        tracker = app[IN_FLIGHT]
        if not await tracker.wait_idle(settings.http.shutdown_timeout_s):
            log.warning(
                "%d request(s) still running after %.0f s; cancelling",
                tracker.count,
                settings.http.shutdown_timeout_s,
            )
    finally:
        await runner.cleanup()
        log.info("stopped")


def serve_forever(
    settings: Settings, reuse_port: bool = False, repeat_window_s: float = 0.0
) -> None:
    tune_gc()
    quiet_library_logs()
    uvloop.run(serve(settings, reuse_port=reuse_port, repeat_window_s=repeat_window_s))


def _worker_main(settings: Settings, configure_logging: Callable[[], None]) -> None:
    # A spawned child starts with a fresh interpreter: set logging up again. It takes
    # SIGTERM/SIGINT from the parent (or the terminal) and drains on its own.
    configure_logging()
    serve_forever(settings, reuse_port=True, repeat_window_s=WORKER_REPEAT_WINDOW_S)


def serve_workers(settings: Settings, workers: int, configure_logging: Callable[[], None]) -> int:
    """N independent server processes on one port; the kernel spreads connections over them.
    Each holds its own pool and Redis client, and its own embedded flusher (consumer group);
    their Prometheus metrics are aggregated through a shared directory (observability.py)."""
    if settings.auth.enabled:
        # Once here, before any worker starts: without an admin (and no way to make one) the
        # command ends with one line and exit 2, not N workers' tracebacks and exit 1.
        uvloop.run(_ensure_admin(settings))
    with multiprocess_metrics_dir():
        return _run_workers(settings, workers, configure_logging)


async def _ensure_admin(settings: Settings) -> None:
    async with open_auth_store(settings) as store:
        await ensure_admin(store, settings.auth)


def _run_workers(settings: Settings, workers: int, configure_logging: Callable[[], None]) -> int:
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_worker_main, args=(settings, configure_logging), name=f"worker-{i}")
        for i in range(workers)
    ]
    for child in children:
        child.start()

    forced: list[int] = []
    stopping = False

    def send(signum: int) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signum)

    def forward(signum: int, _frame: object) -> None:
        # The first signal is forwarded: each worker drains on its own, within its bound. The
        # second one ends them at once (SIGKILL: no repeat window to get in the way) and this
        # process with them; unacknowledged stream entries stay pending for the next flusher.
        nonlocal stopping
        if not stopping:
            stopping = True
            log.info(
                "%s received: stopping %d worker(s); a second SIGTERM/SIGINT stops them at once",
                signal.Signals(signum).name,
                len(children),
            )
            send(signum)
            return
        if not forced:
            forced.append(signum)
            log.warning("second %s received: killing the workers now", signal.Signals(signum).name)
            send(signal.SIGKILL)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    if forced:
        return 128 + forced[0]
    failed = [c.name for c in children if c.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        log.error("worker(s) exited with an error: %s", ", ".join(failed))
        return 1
    return 0


async def _flush(settings: Settings, workers: int) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop, flush_shutdown_bound_s(settings))
    await run_flushers(settings, stop, workers)


def flush_forever(settings: Settings, workers: int) -> None:
    tune_gc()
    quiet_library_logs()
    uvloop.run(_flush(settings, workers))
