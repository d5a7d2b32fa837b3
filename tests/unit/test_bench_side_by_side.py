"""Medians over rounds and ratios to the baseline (bench/side_by_side.py)."""

from __future__ import annotations

from metricgate.bench.report import IngestResult
from metricgate.bench.side_by_side import Measured, side_by_side_table, summarize, worst_ratio


def _result(workload: str, concurrency: int, pts: float, p50: float, **kw: object) -> IngestResult:
    result = IngestResult(workload, "http://x", 1, 1, 1, 1, 1, concurrency, 1, 1, 1)
    result.accepted_pts_s, result.visible_pts_s, result.p50_ms, result.p99_ms = (
        pts,
        pts / 2,
        p50,
        p50,
    )
    result.visible_checked = result.visible_complete = True
    for key, value in kw.items():
        setattr(result, key, value)
    return result


def test_medians_per_figure_and_variant_with_ratios_to_the_baseline() -> None:
    measured = [
        Measured("off", 1, _result("a", 8, 100, 10)),
        Measured("on", 1, _result("a", 8, 80, 20)),
        Measured("on", 2, _result("a", 8, 95, 12, errors={"503": 2})),
        Measured("off", 2, _result("a", 8, 120, 8)),
        Measured("on", 3, _result("a", 8, 90, 11, visible_complete=False)),
        Measured("off", 3, _result("a", 8, 110, 9)),
        Measured("off", 1, _result("b", 5, 1000, 5)),
        Measured("on", 1, _result("b", 5, 1000, 5)),
    ]
    rows = summarize(measured, ["off", "on"], "off")
    assert [(r.figure, r.variant, r.rounds) for r in rows] == [
        ("a c=8", "off", 3),
        ("a c=8", "on", 3),
        ("b c=5", "off", 1),
        ("b c=5", "on", 1),
    ]
    off, on = rows[0], rows[1]
    assert (off.accepted_pts_s, on.accepted_pts_s) == (110, 90)
    assert on.accepted_ratio == 90 / 110 and on.visible_ratio == 45 / 55
    assert on.p50_ratio == 12 / 9 and off.accepted_ratio == 1.0
    assert on.errors == {"503": 2} and on.incomplete == 1 and off.incomplete == 0
    assert worst_ratio(rows, "off") == 90 / 110
    assert worst_ratio(rows[:1], "off") is None
    table = side_by_side_table(rows)
    assert "0.82x" in table and "503:2" in table


def test_no_baseline_measured_leaves_the_ratios_empty() -> None:
    rows = summarize([Measured("on", 1, _result("a", 8, 80, 20))], ["off", "on"], "off")
    assert len(rows) == 1 and rows[0].accepted_ratio is None
    assert rows[0].to_json()["accepted_pts_s"] == 80


def test_server_cpu_per_point_is_a_median_with_a_ratio_to_the_baseline() -> None:
    def result(points: int) -> IngestResult:
        r = _result("b", 50, 1000, 5)
        r.points_accepted = points
        return r

    measured = [
        Measured("off", 1, result(1_000_000), server_cpu_s=10.0),
        Measured("off", 2, result(1_000_000), server_cpu_s=12.0),
        Measured("off", 3, result(1_000_000), server_cpu_s=None),  # /proc unreadable: left out
        Measured("on", 1, result(1_000_000), server_cpu_s=13.2),
        Measured("on", 2, result(500_000), server_cpu_s=6.6),
        Measured("on", 3, result(0), server_cpu_s=1.0),  # nothing accepted: no per-point figure
    ]
    off, on = summarize(measured, ["off", "on"], "off")
    assert off.cpu_us_per_pt == 11.0 and on.cpu_us_per_pt == 13.2
    assert on.cpu_ratio == 13.2 / 11.0 and off.cpu_ratio == 1.0
    assert "13.2" in side_by_side_table([off, on]) and "1.20x" in side_by_side_table([off, on])
