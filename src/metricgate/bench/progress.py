"""A one-line progress bar on stderr (no dependency).

On a terminal it redraws in place at most ``tty_interval_s`` apart. When stderr is not a terminal
(CI logs, pipes) it prints a plain line at most every ``log_interval_s`` seconds, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def render_bar(done: int, total: int, width: int = 24) -> str:
    """``[#########---------------]  37%`` (the fraction is clamped to 0..1)."""
    fraction = 0.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
    filled = round(fraction * width)
    return "[" + "#" * filled + "-" * (width - filled) + f"] {fraction * 100:3.0f}%"


class Progress:
    def __init__(
        self,
        label: str,
        total: int,
        *,
        stream: TextIO | None = None,
        enabled: bool = True,
        tty_interval_s: float = 0.2,
        log_interval_s: float = 10.0,
        unit: str = "pts",
    ) -> None:
        self.label = label
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.unit = unit
        self.is_tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval_s = tty_interval_s if self.is_tty else log_interval_s
        self.started = time.perf_counter()
        self._last = self.started
        self._drawn = False
        self.done = 0
        self.errors = 0

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self.started
        speed = self.done / elapsed if elapsed > 0 else 0.0
        text = f"{self.label} {render_bar(self.done, self.total)} {self.done:,}/{self.total:,} {self.unit}"
        text += f"  {speed:,.0f} {self.unit}/s  {elapsed:.0f}s"
        if self.errors:
            text += f"  errors {self.errors:,}"
        return text

    def update(self, done: int, errors: int = 0) -> None:
        self.done, self.errors = done, errors
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < self.interval_s:
            return
        self._last = now
        self._emit(self.line(now))

    def _emit(self, text: str) -> None:
        if self.is_tty:
            self.stream.write("\r\x1b[2K" + text)
            self._drawn = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, suffix: str = "") -> None:
        if not self.enabled:
            return
        text = self.line() + (f"  {suffix}" if suffix else "")
        if self.is_tty:
            self.stream.write("\r\x1b[2K" + text + "\n")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
