"""health_log: an outage is one WARNING when it starts and one INFO when it ends."""

from __future__ import annotations

import logging

import pytest

from metricgate.health_log import OutageLog, RepeatedWarningFilter


def test_an_outage_logs_once_down_and_once_back(caplog: pytest.LogCaptureFixture) -> None:
    outage = OutageLog(logging.getLogger("test.outage"), "Redis (test)")
    with caplog.at_level(logging.INFO, logger="test.outage"):
        outage.ok()  # healthy: nothing to say
        for _ in range(30):  # 3 s of a 100 ms poller
            outage.failed(ConnectionError("Connection refused"))
        outage.ok()
        outage.ok()
        outage.failed("second outage")
        outage.ok()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in lines] == ["WARNING", "INFO", "WARNING", "INFO"], lines
    assert lines[0][1].startswith(
        "Redis (test) is unavailable: ConnectionError: Connection refused"
    )
    assert "29 more failure(s) meanwhile" in lines[1][1]
    assert lines[2][1].startswith("Redis (test) is unavailable: second outage")
    assert "0 more failure(s)" in lines[3][1]


def test_a_repeated_library_warning_passes_once_without_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.asyncpg.pool")
    logger.addFilter(
        RepeatedWarningFilter("Failed to restore the pool connection floor", every_s=60)
    )
    with caplog.at_level(logging.WARNING, logger="test.asyncpg.pool"):
        for _ in range(5):
            try:
                raise ConnectionRefusedError(111, "Connect call failed")
            except OSError:
                logger.warning(
                    "Failed to restore the pool connection floor; retrying", exc_info=True
                )
        logger.warning("something else")
    records = caplog.records
    assert [r.getMessage().split(";")[0] for r in records] == [
        "Failed to restore the pool connection floor",
        "something else",
    ]
    assert records[0].exc_info is None
    assert "ConnectionRefusedError" in records[0].getMessage()
