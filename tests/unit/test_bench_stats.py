"""Percentile math and rates of the benchmark."""

from __future__ import annotations

import random

import pytest

from metricgate.bench.stats import latency_summary_ms, percentile, rate, ratio


def test_percentile_linear_interpolation() -> None:
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 25) == pytest.approx(1.75)
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_percentile_matches_numpy_linear() -> None:
    numpy = pytest.importorskip("numpy")
    rng = random.Random(7)
    values = sorted(rng.expovariate(1.0) for _ in range(1001))
    for q in (50, 95, 99, 99.9):
        assert percentile(values, q) == pytest.approx(float(numpy.percentile(values, q)))


def test_latency_summary_in_ms() -> None:
    summary = latency_summary_ms([0.003, 0.001, 0.002] + [0.010] * 97)
    assert summary["p50"] == pytest.approx(10.0)
    assert summary["max"] == pytest.approx(10.0)
    assert latency_summary_ms([]) == {"p50": None, "p95": None, "p99": None, "max": None}
    p99 = latency_summary_ms([i / 1000 for i in range(1, 101)])["p99"]
    assert p99 == pytest.approx(99.01)


def test_rate_and_ratio() -> None:
    assert rate(100, 4.0) == 25.0
    assert rate(100, 0.0) is None and rate(100, None) is None
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None and ratio(1.0, 0.0) is None
