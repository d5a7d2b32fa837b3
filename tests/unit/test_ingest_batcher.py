"""Flush batches (ingest/batcher.py): MLflow's latest rule, index order, model points, row shapes."""

from __future__ import annotations

import math
import random
import struct
from collections import Counter

from metricgate.entities import Metric
from metricgate.ingest import wire
from metricgate.ingest.batcher import (
    PointRow,
    build_batch,
    rows_from_entries,
    rows_from_metrics,
)

RUN_A = "a" * 32
RUN_B = "b" * 32
NAN = math.nan
INF = math.inf


def row(key: str, step: int, ts: int, value: float, run: str = RUN_A, model_id: str | None = None,
        dataset_name: str | None = None, dataset_digest: str | None = None) -> PointRow:
    return (run, key, step, ts, value, model_id, dataset_name, dataset_digest)


def norm(r: PointRow) -> tuple[object, ...]:
    """Comparable form: NaN != NaN would break tuple equality; bit patterns do not."""
    return (*r[:4], struct.pack("<d", r[4]), *r[5:])


def pg_value_key(value: float) -> tuple[int, float]:
    """PostgreSQL's float8 order: NaN equals NaN and sorts above every number, +Infinity included."""
    return (1, 0.0) if math.isnan(value) else (0, value)


def mlflow_latest_key(r: PointRow) -> tuple[object, ...]:
    # MLflow: the latest metric is the one with the highest step, then timestamp, then value.
    return (r[2], r[3], pg_value_key(r[4]))


def latest_by_group(rows: list[PointRow]) -> dict[tuple[str, str], PointRow]:
    groups: dict[tuple[str, str], list[PointRow]] = {}
    for r in rows:
        groups.setdefault((r[0], r[1]), []).append(r)
    return {g: max(rs, key=mlflow_latest_key) for g, rs in groups.items()}


def latest_of(rows: list[PointRow]) -> dict[tuple[str, str], PointRow]:
    batch = build_batch(list(rows))
    result = {(r[0], r[1]): r for r in batch.latest}
    assert len(result) == len(batch.latest), "more than one latest row for a (run, key)"
    return result


def test_highest_step_wins_even_with_older_timestamp_and_smaller_value() -> None:
    rows = [row("k", 5, 1000, 9.0), row("k", 7, 1, -1.0), row("k", 6, 2000, 100.0)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 7, 1, -1.0)


def test_same_step_highest_timestamp_wins() -> None:
    rows = [row("k", 3, 50, 9.0), row("k", 3, 70, 1.0), row("k", 3, 60, 100.0)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 3, 70, 1.0)


def test_same_step_and_timestamp_highest_value_wins() -> None:
    rows = [row("k", 3, 70, 1.0), row("k", 3, 70, 2.5), row("k", 3, 70, -7.0)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 3, 70, 2.5)


def test_nan_ranks_above_infinity_like_postgresql() -> None:
    rows = [row("k", 1, 1, INF), row("k", 1, 1, NAN), row("k", 1, 1, 1e308)]
    winner = latest_of(rows)[(RUN_A, "k")]
    assert math.isnan(winner[4])
    # ... but never above a higher step or timestamp.
    rows = [row("k", 1, 1, NAN), row("k", 1, 2, -INF)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 1, 2, -INF)
    rows = [row("k", 1, 9, NAN), row("k", 2, 0, 0.0)]
    assert latest_of(rows)[(RUN_A, "k")] == row("k", 2, 0, 0.0)


def test_negative_infinity_ranks_below_every_number() -> None:
    rows = [row("k", 0, 0, -INF), row("k", 0, 0, -1.7976931348623157e308)]
    assert latest_of(rows)[(RUN_A, "k")][4] == -1.7976931348623157e308


def test_input_order_does_not_matter_for_latest() -> None:
    rows = [row("k", 1, 1, 1.0), row("k", 1, 1, NAN), row("k", 2, 0, -5.0), row("k", 2, 0, -6.0), row("j", 0, 0, 3.0)]
    expected = {g: norm(r) for g, r in latest_by_group(rows).items()}
    rng = random.Random(7)
    for _ in range(50):
        shuffled = rows[:]
        rng.shuffle(shuffled)
        assert {g: norm(r) for g, r in latest_of(shuffled).items()} == expected


def test_latest_per_run_and_key_matches_reference_on_random_rows() -> None:
    rng = random.Random(20240601)
    values = [NAN, INF, -INF, 0.0, 1.0, -1.0, 2.5, 1e-300]
    for _ in range(200):
        rows = [
            row(
                rng.choice(["loss", "acc", "ключ"]),
                rng.randint(-2, 2),
                rng.randint(0, 2),
                rng.choice(values),
                run=rng.choice([RUN_A, RUN_B]),
            )
            for _ in range(rng.randint(1, 40))
        ]
        expected = {g: norm(r) for g, r in latest_by_group(rows).items()}
        got = {g: norm(r) for g, r in latest_of(rows).items()}
        assert got == expected, rows


def test_points_are_all_rows_in_unique_index_order() -> None:
    rows = [
        row("b", 0, 0, 1.0, run=RUN_B),
        row("a", 1, 5, NAN),
        row("a", 1, 5, INF),
        row("a", 1, 5, -INF),
        row("a", 1, 4, 9.0),
        row("a", -3, 9, 0.0),
        row("B", 0, 0, 0.0),
        row("a", 1, 5, INF),  # duplicate stays: the database folds it
    ]
    batch = build_batch(list(rows), index_order=True)
    assert Counter(norm(r) for r in batch.points) == Counter(norm(r) for r in rows)
    expected = [
        row("B", 0, 0, 0.0),
        row("a", -3, 9, 0.0),
        row("a", 1, 4, 9.0),
        row("a", 1, 5, -INF),
        row("a", 1, 5, INF),
        row("a", 1, 5, INF),
        row("a", 1, 5, NAN),
        row("b", 0, 0, 1.0, run=RUN_B),
    ]
    assert [norm(r) for r in batch.points] == [norm(r) for r in expected]
    assert len(batch) == len(rows)


def test_random_points_sorted_by_run_key_step_timestamp_value() -> None:
    rng = random.Random(99)
    rows = [
        row(rng.choice("xyz"), rng.randint(0, 3), rng.randint(0, 3), rng.choice([NAN, INF, -INF, 0.5, -0.5]),
            run=rng.choice([RUN_A, RUN_B]))
        for _ in range(500)
    ]
    points = build_batch(list(rows), index_order=True).points
    keys = [(r[0], r[1], r[2], r[3], pg_value_key(r[4])) for r in points]
    assert keys == sorted(keys)
    assert Counter(norm(r) for r in points) == Counter(norm(r) for r in rows)


def test_points_keep_input_order_by_default_and_latest_is_in_run_key_order() -> None:
    # The flusher's path: no sort of the points (its largest cost); the latest rows, which
    # concurrent flushes upsert, still come in one global order.
    rng = random.Random(7)
    rows = [
        row(rng.choice("xyz"), rng.randint(0, 5), rng.randint(0, 5), rng.choice([NAN, INF, -INF, 0.5, -0.5]),
            run=rng.choice([RUN_A, RUN_B]))
        for _ in range(300)
    ]
    batch = build_batch(list(rows))
    assert [norm(r) for r in batch.points] == [norm(r) for r in rows]
    groups = [(r[0], r[1]) for r in batch.latest]
    assert groups == sorted(groups) and len(groups) == len(set(groups))
    assert {g: norm(r) for g, r in zip(groups, batch.latest)} == {
        g: norm(r) for g, r in latest_by_group(rows).items()
    }


def test_model_points_are_exactly_the_points_with_a_model_id() -> None:
    rows = [
        row("k", 0, 0, 1.0),
        row("k", 1, 0, 2.0, model_id="m-1"),
        row("k", 2, 0, 3.0, dataset_name="train", dataset_digest="abc"),  # dataset alone: not a model point
        row("j", 0, 0, 4.0, model_id="m-2", dataset_name="eval", dataset_digest="def"),
    ]
    batch = build_batch(list(rows))
    assert sorted(batch.model_points) == sorted([rows[1], rows[3]])
    # The latest row keeps the winning point's model id.
    latest = {(r[0], r[1]): r for r in batch.latest}
    assert latest[(RUN_A, "k")] == rows[2]
    assert latest[(RUN_A, "j")][5] == "m-2"


def test_no_model_points_when_none_has_a_model_id() -> None:
    batch = build_batch([row("k", 0, 0, 1.0), row("k", 1, 0, 2.0, dataset_name="d", dataset_digest="x")])
    assert batch.model_points == []


def test_empty_batch() -> None:
    batch = build_batch([])
    assert (batch.points, batch.latest, batch.model_points, len(batch)) == ([], [], [], 0)


def _sample_metrics() -> list[Metric]:
    return [
        Metric("loss", 0.5, 1000, 0),
        Metric("loss", NAN, 1001, 1),
        Metric("acc", -0.0, 1002, 2, model_id="m-" + "c" * 32),
        Metric("acc", INF, 2**63 - 1, -(2**63), dataset_name="eval", dataset_digest="d"),
        Metric("ü", -INF, -(2**63), 2**63 - 1, model_id="m-x", dataset_name="t", dataset_digest="e"),
    ]


def test_rows_from_entries_equal_rows_from_metrics() -> None:
    metrics = _sample_metrics()
    batch = wire.decode(wire.encode(RUN_A, metrics, 1))
    from_entries = rows_from_entries([batch])
    from_metrics = rows_from_metrics(RUN_A, metrics)
    assert Counter(norm(r) for r in from_entries) == Counter(norm(r) for r in from_metrics)
    # Shape: (run_id, key, step, timestamp_ms, value, model_id, dataset_name, dataset_digest).
    assert norm(from_metrics[3]) == norm((RUN_A, "acc", -(2**63), 2**63 - 1, INF, None, "eval", "d"))
    # And both give the same flush batch.
    a, b = build_batch(from_entries), build_batch(from_metrics)
    assert Counter(norm(r) for r in a.points) == Counter(norm(r) for r in b.points)
    assert [norm(r) for r in a.latest] == [norm(r) for r in b.latest]
    assert Counter(norm(r) for r in a.model_points) == Counter(norm(r) for r in b.model_points)


def test_rows_from_entries_without_extras_and_over_several_entries() -> None:
    first = [Metric("a", 1.0, 1, 1), Metric("b", 2.0, 2, 2)]
    second = _sample_metrics()
    batches = [wire.decode(wire.encode(RUN_A, first, 1)), wire.decode(wire.encode(RUN_B, second, 2))]
    assert batches[0].extras is None and batches[1].extras is not None
    rows = rows_from_entries(batches)
    expected = rows_from_metrics(RUN_A, first) + rows_from_metrics(RUN_B, second)
    assert Counter(norm(r) for r in rows) == Counter(norm(r) for r in expected)
    assert all(type(r[2]) is int and type(r[3]) is int and type(r[4]) is float for r in rows)


def test_rows_from_entries_group_by_run_then_key_keeping_logged_order() -> None:
    # Near the unique index's order (PostgreSQL inserts a key's points into one leaf in a row),
    # without a full sort: runs in order, keys in order within a run, points of one key in the
    # order they were logged (entry by entry).
    rng = random.Random(3)
    entries, logged = [], []
    for i in range(40):
        run = rng.choice([RUN_B, RUN_A])
        metrics = [Metric(rng.choice("zyx"), float(j), i, rng.randint(0, 9)) for j in range(rng.randint(1, 6))]
        entries.append(wire.decode(wire.encode(run, metrics, i)))
        logged.extend(rows_from_metrics(run, metrics))
    rows = rows_from_entries(entries)
    assert Counter(norm(r) for r in rows) == Counter(norm(r) for r in logged)
    groups = [(r[0], r[1]) for r in rows]
    assert groups == sorted(groups)
    for group in set(groups):
        assert [norm(r) for r in rows if (r[0], r[1]) == group] == [
            norm(r) for r in logged if (r[0], r[1]) == group
        ]
