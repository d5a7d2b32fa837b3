"""Runs the HTTP tier until SIGTERM/SIGINT, then drains: the one place signals are handled.

aiohttp's own run_app closes connections before a request body has fully arrived (data received
after shutdown starts is dropped), so an upload in progress would fail. Here shutdown is:
stop listening -> wait for in-flight requests (bounded) -> close connections -> close pools.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from metricgate.api.app import create_app
from metricgate.api.keys import IN_FLIGHT
from metricgate.config import Settings

log = logging.getLogger(__name__)


async def serve(settings: Settings, *, stop: asyncio.Event | None = None, handle_signals: bool = True) -> None:
    """Serve until ``stop`` is set (or a signal arrives), then shut down gracefully."""
    stop = stop or asyncio.Event()
    app = create_app(settings)
    access_log = logging.getLogger("aiohttp.access") if settings.http.access_log else None
    # After the drain below, anything still running gets a short grace period, then is cancelled.
    runner = web.AppRunner(app, handle_signals=False, access_log=access_log, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.http.host, settings.http.port)
        await site.start()
        log.info("listening on http://%s:%d", settings.http.host, settings.http.port)
        if handle_signals:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, stop.set)
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
