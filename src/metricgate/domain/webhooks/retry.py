"""What to do after a delivery attempt: delivered, retry later, or give up. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# 408 and 425 mean "try again" as much as 429 does; every 5xx is the receiver's trouble.
RETRYABLE_4XX = frozenset({408, 425, 429})


@dataclass(frozen=True)
class Verdict:
    outcome: str  # "delivered" | "retry" | "failed"
    delay_s: float = 0.0


def backoff_delay_s(
    attempt: int, base_s: float, max_s: float, rng: random.Random | None = None
) -> float:
    """Exponential with "equal jitter": half the step is fixed, half random, so retries of many
    deliveries that failed together (a receiver outage) spread out instead of arriving in waves."""
    growth: int = 2 ** max(0, attempt - 1)  # int ** int is typed Any (a negative power is float)
    step = min(max_s, base_s * growth)
    return step / 2 + (rng or random).uniform(0, step / 2)


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def judge(
    status: int | None,
    attempt: int,
    max_attempts: int,
    base_s: float,
    max_s: float,
    retry_after: float | None = None,
) -> Verdict:
    """``status`` None means a network error or timeout (retryable)."""
    if status is not None and 200 <= status < 300:
        return Verdict("delivered")
    retryable = status is None or status >= 500 or status in RETRYABLE_4XX
    if not retryable or attempt >= max_attempts:
        return Verdict("failed")
    delay = backoff_delay_s(attempt, base_s, max_s)
    if retry_after is not None and status in (429, 503):
        # Honour the receiver's wish, within our own ceiling.
        delay = min(max_s, max(delay, retry_after))
    return Verdict("retry", delay)
