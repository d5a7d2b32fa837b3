"""Logs a dependency outage once when it starts and once when it ends.

A background loop that polls PostgreSQL or Redis every 100 ms would otherwise write ten
warnings a second for as long as the dependency is away: the line that says *when* the outage
began scrolls out of view, and the log volume itself becomes a problem during an incident.
``OutageLog`` keeps one bit per dependency per loop: the first failure is logged at WARNING,
the failures after it are only counted, and the first success after them is logged at INFO with
how long it lasted and how many failures were not logged.
"""

from __future__ import annotations

import logging
import time

from aiohttp.http_exceptions import HttpProcessingError


class OutageLog:
    def __init__(self, logger: logging.Logger, what: str) -> None:
        self._log = logger
        self.what = what
        self.down = False
        self._since = 0.0
        self._suppressed = 0

    def failed(self, exc: BaseException | str) -> None:
        if self.down:
            self._suppressed += 1
            return
        self.down = True
        self._since = time.monotonic()
        self._suppressed = 0
        self._log.warning(
            "%s is unavailable: %s (logged again only when it is back)", self.what, _describe(exc)
        )

    def ok(self) -> None:
        # The common case is one attribute test: this runs on hot paths (every metric append).
        if not self.down:
            return
        self.down = False
        self._log.info(
            "%s is available again after %.1f s (%d more failure(s) meanwhile)",
            self.what,
            time.monotonic() - self._since,
            self._suppressed,
        )


def _describe(exc: BaseException | str) -> str:
    if isinstance(exc, str):
        return exc
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class RepeatedWarningFilter(logging.Filter):
    """For a library's own retry loop that we cannot give an ``OutageLog``: asyncpg's pool tries
    to restore its connection floor during a PostgreSQL outage and logs each failed attempt
    with a full traceback. The first record passes with its error on one line; repeats within
    ``every_s`` are dropped."""

    def __init__(self, message_start: str, every_s: float = 60.0) -> None:
        super().__init__()
        self._start = message_start
        self._every_s = every_s
        self._last = -float("inf")

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self._start):
            return True
        now = time.monotonic()
        if now - self._last < self._every_s:
            return False
        self._last = now
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()} ({_describe(error)}; repeats are not logged for {self._every_s:.0f} s)"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class ClientProtocolErrorFilter(logging.Filter):
    """aiohttp logs every request its HTTP parser refuses (an oversized request line or header,
    a bad Content-Length: the plain-text 400s of docs/errors.md) at ERROR with a traceback, so a
    scanner or a broken client fills the log with what is the client's mistake. Such records
    become one INFO line without a traceback; anything else on aiohttp.server passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if (
            isinstance(error, HttpProcessingError)
            and (error.code or 400) < 500
            and str(record.msg).startswith("Error handling request")
        ):
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error.message or error}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_library_logs() -> None:
    """Install the filters above (once per process)."""
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, RepeatedWarningFilter) for f in pool_log.filters):
        pool_log.addFilter(RepeatedWarningFilter("Failed to restore the pool connection floor"))
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientProtocolErrorFilter) for f in server_log.filters):
        server_log.addFilter(ClientProtocolErrorFilter())


class ThrottledLog:
    """Per-request refusals of one kind (503s while Redis is away, a full read pool): the first
    is logged, then at most one line per ``every_s`` per kind, carrying how many were not. The
    request counters (metricgate_http_requests_total) still count every one."""

    def __init__(self, logger: logging.Logger, every_s: float = 10.0, max_kinds: int = 256) -> None:
        self._log = logger
        self._every_s = every_s
        self._max_kinds = max_kinds
        self._kinds: dict[object, tuple[float, int]] = {}  # kind -> (last logged, suppressed since)

    def warning(self, kind: object, message: str, *args: object) -> None:
        now = time.monotonic()
        last, suppressed = self._kinds.get(kind, (-float("inf"), 0))
        if now - last < self._every_s:
            self._kinds[kind] = (last, suppressed + 1)
            return
        if kind not in self._kinds and len(self._kinds) >= self._max_kinds:
            self._kinds.clear()  # bounded memory; at worst a few extra lines
        self._kinds[kind] = (now, 0)
        if suppressed:
            message += " (%d more like it in the last %.0f s)"
            args = (*args, suppressed, now - last)
        self._log.warning(message, *args)
