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
        self._log.warning("%s is unavailable: %s (logged again only when it is back)", self.what, _describe(exc))

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
