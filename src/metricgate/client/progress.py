"""A byte progress bar (bytes, rate, ETA) on top of the bench's one-line ``Progress``."""

from __future__ import annotations

import time
from typing import Any

from metricgate.bench.progress import Progress, render_bar

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def human_bytes(n: float) -> str:
    for unit in _UNITS:
        if abs(n) < 1024 or unit == _UNITS[-1]:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}:{seconds % 60:02d}"


class ByteProgress(Progress):
    """``upload ckpt.pt [#####------]  21% 1.2 GiB/5.6 GiB  410.3 MiB/s  ETA 0:11``.

    The rate counts only bytes moved in this run (a resumed upload starts part-way), so the ETA
    is not fooled by parts the server already had.
    """

    def __init__(self, label: str, total: int = 0, **kwargs: Any) -> None:
        super().__init__(label, total, unit="B", **kwargs)
        self._first_done: int | None = None

    def __call__(self, done: int, total: int) -> None:
        self.total = total
        if self._first_done is None:
            self._first_done = done
        self.update(done)

    def line(self, now: float | None = None) -> str:
        elapsed = (now or time.perf_counter()) - self.started
        moved = self.done - (self._first_done or 0)
        rate = moved / elapsed if elapsed > 0 else 0.0
        text = f"{self.label} {render_bar(self.done, self.total)} {human_bytes(self.done)}/{human_bytes(self.total)}"
        text += f"  {human_bytes(rate)}/s"
        if self.done < self.total and rate > 0:
            text += f"  ETA {human_duration((self.total - self.done) / rate)}"
        else:
            text += f"  {human_duration(elapsed)}"
        return text
