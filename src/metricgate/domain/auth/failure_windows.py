"""Failed logins counted in fixed windows, in process memory: what the login limiter uses while
Redis is away (docs/design-auth.md B7), with the same rule as its Redis keys.

A key's window opens at its first failure and lasts ``window_s``; every failure inside it counts;
once ``failures`` are counted, attempts wait until the window closes. Memory is bounded by
``max_keys``: all windows of one counter have the same length, so the order keys were opened in
is the order they close in, and the oldest is dropped first (expired ones, then, when a flood
of new keys fills the table, the live one closest to its end).
"""

from __future__ import annotations

from dataclasses import dataclass

from metricgate.domain.lru import Lru

DEFAULT_MAX_KEYS = 100_000


@dataclass(frozen=True, slots=True)
class Limit:
    failures: int  # allowed within one window; 0: no limit
    window_s: float

    @property
    def enabled(self) -> bool:
        return self.failures > 0


class FailureWindows:
    """Not thread-safe: one event loop owns it. Times are seconds of a monotonic clock."""

    def __init__(self, limit: Limit, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be positive")
        self.limit = limit
        self.max_keys = max_keys
        # key -> (end, count). Written only by put (a new window goes last) and replace (a
        # count, in place), read by peek: the order stays the one windows opened, and so close, in.
        self._windows: Lru[str, tuple[float, int]] = Lru(max_keys)

    def wait_s(self, key: str, now: float) -> float | None:
        """Seconds until ``key`` may try again; None when it may now."""
        if not self.limit.enabled:
            return None
        window = self._live(key, now)
        if window is None or window[1] < self.limit.failures:
            return None
        return window[0] - now

    def count(self, key: str, now: float) -> int:
        window = self._live(key, now)
        return 0 if window is None else window[1]

    def fail(self, key: str, now: float) -> int:
        """Count a failure; the key's count in its window, this one included."""
        if not self.limit.enabled:
            return 0
        window = self._live(key, now)
        if window is not None:
            end, count = window[0], window[1] + 1
            self._windows.replace(key, (end, count))
            return count
        self._expire(now)
        self._windows.put(key, (now + self.limit.window_s, 1))  # a full table drops its oldest
        return 1

    def clear(self, key: str) -> None:
        self._windows.pop(key)

    def __len__(self) -> int:
        return len(self._windows)

    def _live(self, key: str, now: float) -> tuple[float, int] | None:
        window = self._windows.peek(key)
        if window is None:
            return None
        if window[0] <= now:
            self._windows.pop(key)
            return None
        return window

    def _expire(self, now: float) -> None:
        while (oldest := self._windows.oldest()) is not None and oldest[1][0] <= now:
            self._windows.pop(oldest[0])
