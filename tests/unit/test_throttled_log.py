"""health_log.ThrottledLog: one line per kind per interval, with the count of the lines it held back."""

from __future__ import annotations

import logging

import pytest

from metricgate import health_log
from metricgate.health_log import ThrottledLog


def test_first_logged_repeats_counted_then_one_line_with_the_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr(health_log.time, "monotonic", lambda: clock[0])
    throttled = ThrottledLog(logging.getLogger("t"), every_s=10.0)
    with caplog.at_level(logging.WARNING, logger="t"):
        for _ in range(50):
            throttled.warning(("route", "down"), "POST %s unavailable", "/x")
        throttled.warning(("other", "down"), "GET %s unavailable", "/y")
        clock[0] += 10.5
        throttled.warning(("route", "down"), "POST %s unavailable", "/x")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "POST /x unavailable",
        "GET /y unavailable",
        "POST /x unavailable (49 more like it in the last 10 s)",
    ]


def test_kinds_are_bounded() -> None:
    throttled = ThrottledLog(logging.getLogger("t"), max_kinds=8)
    for i in range(100):
        throttled.warning(i, "x")
    assert len(throttled._kinds) <= 8
