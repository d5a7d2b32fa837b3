"""Runs the HTTP tier until SIGTERM/SIGINT, then drains: the one place signals are handled.

aiohttp's own run_app closes connections before a request body has fully arrived (data received
after shutdown starts is dropped), so an upload in progress would fail. Here shutdown is:
stop listening -> wait for in-flight requests (bounded) -> close connections -> close pools.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from collections.abc import Callable

import uvloop

from aiohttp import web

from metricgate.api.app import create_app
from metricgate.api.keys import IN_FLIGHT
from metricgate.config import Settings
from metricgate.observability import multiprocess_metrics_dir
from metricgate.runtime import tune_gc
from metricgate.service import run_flushers

log = logging.getLogger(__name__)


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)


async def serve(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    reuse_port: bool = False,
) -> None:
    """Serve until ``stop`` is set (or a signal arrives), then shut down gracefully."""
    stop = stop or asyncio.Event()
    app = create_app(settings)
    access_log = logging.getLogger("aiohttp.access") if settings.http.access_log else None
    # After the drain below, anything still running gets a short grace period, then is cancelled.
    runner = web.AppRunner(app, handle_signals=False, access_log=access_log, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http.host, settings.http.port, reuse_port=reuse_port or None)
        await site.start()
        log.info("listening on http://%s:%d", settings.http.host, settings.http.port)
        if handle_signals:
            _stop_on_signals(stop)
        await stop.wait()
        log.info("shutdown requested: no new connections; draining in-flight requests")
        await site.stop()
        tracker = app[IN_FLIGHT]
        if not await tracker.wait_idle(settings.http.shutdown_timeout_s):
            log.warning("%d request(s) still running after %.0f s; cancelling", tracker.count,
                        settings.http.shutdown_timeout_s)
    finally:
        await runner.cleanup()
        log.info("stopped")


def serve_forever(settings: Settings, reuse_port: bool = False) -> None:
    tune_gc()
    uvloop.run(serve(settings, reuse_port=reuse_port))


def _worker_main(settings: Settings, configure_logging: Callable[[], None]) -> None:
    # A spawned child starts with a fresh interpreter: set logging up again. It takes
    # SIGTERM/SIGINT from the parent (or the terminal) and drains on its own.
    configure_logging()
    serve_forever(settings, reuse_port=True)


def serve_workers(settings: Settings, workers: int, configure_logging: Callable[[], None]) -> int:
    """N independent server processes on one port; the kernel spreads connections over them.
    Each holds its own pool and Redis client, and its own embedded flusher (consumer group);
    their Prometheus metrics are aggregated through a shared directory (observability.py)."""
    with multiprocess_metrics_dir():
        return _run_workers(settings, workers, configure_logging)


def _run_workers(settings: Settings, workers: int, configure_logging: Callable[[], None]) -> int:
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_worker_main, args=(settings, configure_logging), name=f"worker-{i}")
        for i in range(workers)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.pid is not None and child.is_alive():
                os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    failed = [c.name for c in children if c.exitcode not in (0, -signal.SIGTERM)]
    if failed:
        log.error("worker(s) exited with an error: %s", ", ".join(failed))
        return 1
    return 0


async def _flush(settings: Settings, workers: int) -> None:
    stop = asyncio.Event()
    _stop_on_signals(stop)
    await run_flushers(settings, stop, workers)


def flush_forever(settings: Settings, workers: int) -> None:
    tune_gc()
    uvloop.run(_flush(settings, workers))
