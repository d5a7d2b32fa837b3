"""Percentiles and rates (pure code)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) of already sorted values, interpolating linearly between the
    two nearest ranks (numpy's default "linear" method). None for no values."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    n = len(sorted_values)
    if n == 0:
        return None
    if n == 1:
        return float(sorted_values[0])
    position = (n - 1) * q / 100.0
    lower = math.floor(position)
    upper = min(lower + 1, n - 1)
    fraction = position - lower
    return (
        float(sorted_values[lower])
        + (float(sorted_values[upper]) - float(sorted_values[lower])) * fraction
    )


def latency_summary_ms(latencies_s: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max in milliseconds from per-request latencies in seconds."""
    values = sorted(latencies_s)
    out: dict[str, float | None] = {}
    for name, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
        p = percentile(values, q)
        out[name] = None if p is None else p * 1000.0
    out["max"] = values[-1] * 1000.0 if values else None
    return out


def rate(count: float, seconds: float | None) -> float | None:
    """count/seconds, or None when the duration is unknown or not positive."""
    if seconds is None or seconds <= 0:
        return None
    return count / seconds


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator
