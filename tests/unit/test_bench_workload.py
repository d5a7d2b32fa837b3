"""Workload planning of the ingest benchmark: sizes, request steps, values, CLI planning."""

from __future__ import annotations

import argparse

import pytest

from metricgate.bench.workload import (
    BASE_TIMESTAMP_MS,
    PRESETS,
    QUICK,
    Workload,
    WorkloadError,
    batch_metrics,
    iter_copy_rows,
    metric_value,
    parse_concurrency,
)
from metricgate.cli.bench import add_bench_parser, plan


def test_presets_match_the_issue() -> None:
    a, b = PRESETS["a"], PRESETS["b"]
    assert (a.runs, a.keys, a.steps_per_request, a.metrics_per_request) == (200, 10, 1, 10)
    assert (b.runs, b.metrics_per_request) == (50, 1000)
    assert a.total_requests == 200 * 100 and a.total_points == 200 * 100 * 10
    assert b.total_requests == 50 * 20 and b.total_points == 1_000_000
    for quick in QUICK.values():
        assert quick.total_points <= 10_000


def test_uneven_last_request() -> None:
    w = Workload("w", runs=3, steps=7, keys=2, steps_per_request=3)
    assert w.requests_per_run == 3
    assert [list(w.request_steps(i)) for i in range(3)] == [[0, 1, 2], [3, 4, 5], [6]]
    assert w.total_requests == 9 and w.points_per_run == 14 and w.total_points == 42
    with pytest.raises(IndexError):
        w.request_steps(3)
    # the whole run is covered exactly once
    assert sum(len(w.request_steps(i)) for i in range(w.requests_per_run)) == w.steps


def test_invalid_workloads() -> None:
    with pytest.raises(WorkloadError, match="runs"):
        Workload("w", runs=0, steps=1, keys=1, steps_per_request=1)
    with pytest.raises(WorkloadError, match="at most 1000"):
        Workload("w", runs=1, steps=100, keys=101, steps_per_request=10)
    # a short run caps the batch: 5 steps x 200 keys fits although B x K = 2000
    assert (
        Workload("w", runs=1, steps=5, keys=200, steps_per_request=10).metrics_per_request == 1000
    )


def test_batch_metrics_are_deterministic_and_distinct() -> None:
    w = Workload("w", runs=2, steps=4, keys=3, steps_per_request=2)
    names = w.key_names()
    assert names == ["metric_000", "metric_001", "metric_002"]
    first = batch_metrics(w, 1, 1, names)
    assert first == batch_metrics(w, 1, 1, names)
    assert [(m["key"], m["step"], m["timestamp"]) for m in first] == [
        (k, s, BASE_TIMESTAMP_MS + s) for s in (2, 3) for k in names
    ]
    values = {
        metric_value(w.seed, r, k, s) for r in range(50) for k in range(20) for s in range(50)
    }
    assert len(values) == 50 * 20 * 50
    assert all(0.0 <= v < 1.0 for v in values)
    assert metric_value(1, 0, 0, 0) != metric_value(2, 0, 0, 0)


def test_copy_rows_follow_send_order() -> None:
    w = Workload("w", runs=2, steps=3, keys=2, steps_per_request=2)
    rows = list(iter_copy_rows(w, ["r0", "r1"]))
    assert len(rows) == w.total_points
    assert len({(r, k, s) for r, k, s, _, _ in rows}) == w.total_points
    assert [(r, s) for r, _, s, _, _ in rows[:4]] == [("r0", 0), ("r0", 0), ("r0", 1), ("r0", 1)]
    assert rows[4][0] == "r1"  # round-robin: run 1's first request comes before run 0's second


def test_parse_concurrency() -> None:
    assert parse_concurrency(["64,256", " 8 "]) == (64, 256, 8)
    assert parse_concurrency(None) == ()
    for bad in (["0"], ["x"], ["-3"]):
        with pytest.raises(WorkloadError):
            parse_concurrency(bad)


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", "--url", "http://127.0.0.1:1", *argv])


def test_cli_plan() -> None:
    assert [(w.name, c) for w, c in plan(_args())] == [("a", (64, 256))]
    pairs = plan(_args("--workload", "a,b", "--quick"))
    assert [(w.name, c) for w, c in pairs] == [("a-quick", (8, 32)), ("b-quick", (5,))]
    ((w, c),) = plan(_args("--workload", "b", "--runs", "3", "--steps", "40", "-c", "2,4"))
    assert (w.runs, w.steps, w.keys, c) == (3, 40, 100, (2, 4))
    with pytest.raises(WorkloadError):
        plan(_args("--workload", "z"))
