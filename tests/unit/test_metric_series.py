"""Unit tests for stores/postgres/metric_series.py: merging stored chunks into one history,
SQL point rows as series, and MLflow's downsampling for bulk-interval reads (checked against the
installed MLflow's own SQL store).

The Python merge must answer exactly as the SQL reads do (DISTINCT ON with PostgreSQL's float8
order and the plain-copy-first rule), because a history switches between the two paths as it
grows; these tests pin that contract without a database.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from metricgate.domain.tracking.entities import MetricSeries
from metricgate.stores.postgres.metric_series import (
    ChunkSpan,
    merge_chunks,
    rank_positions,
    ranks_are_positions,
    sample_ranks,
    sample_series,
    series_of_points,
)

NAN = math.nan
INF = math.inf
PLAIN = (None, None, None)


def chunk(
    steps, timestamps, vals, model_id=None, dataset_name=None, dataset_digest=None, run_id="r"
):
    return (
        run_id,
        list(steps),
        list(timestamps),
        list(vals),
        model_id,
        dataset_name,
        dataset_digest,
    )


def _v(value: float) -> Any:
    # NaN != NaN would make every comparison of a series holding one fail.
    return "nan" if value != value else value


def points(series: MetricSeries) -> list[tuple[Any, ...]]:
    extras = series.extras if series.extras is not None else [PLAIN] * len(series)
    return [
        (s, t, _v(v), e)
        for s, t, v, e in zip(
            series.steps, series.timestamps_ms, series.values, extras, strict=True
        )
    ]


def triples(series: MetricSeries) -> list[tuple[Any, ...]]:
    return [
        (s, t, _v(v))
        for s, t, v in zip(series.steps, series.timestamps_ms, series.values, strict=True)
    ]


# --- merge_chunks ---------------------------------------------------------------------------


def test_merge_chunks_out_of_order_fast_path():
    # The store returns chunks in no particular order; consecutive chunks are the common case.
    chunks = [
        chunk([4, 5], [40, 50], [0.4, 0.5]),
        chunk([0, 1], [0, 10], [0.0, 0.1]),
        chunk([2, 3], [20, 30], [0.2, 0.3]),
    ]
    series = merge_chunks("r", "loss", chunks)
    assert series.run_id == "r" and series.key == "loss"
    assert series.steps == [0, 1, 2, 3, 4, 5]
    assert series.timestamps_ms == [0, 10, 20, 30, 40, 50]
    assert series.values == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert series.extras is None


def test_merge_chunks_does_not_alias_chunk_lists():
    # Records from the driver may be reused by callers; the series must own its columns.
    c = chunk([0, 1], [0, 1], [1.0, 2.0])
    series = merge_chunks("r", "k", [c])
    series.steps.append(99)
    assert c[1] == [0, 1]


def test_merge_chunks_empty():
    series = merge_chunks("r", "k", [])
    assert len(series) == 0 and series.extras is None


def test_merge_chunks_unsorted_inside_chunk_is_sorted():
    # Concatenation alone must not be trusted: the ascending check covers the points, not chunks.
    series = merge_chunks("r", "k", [chunk([3, 1, 2], [3, 1, 2], [3.0, 1.0, 2.0])])
    assert series.steps == [1, 2, 3]
    assert series.values == [1.0, 2.0, 3.0]
    assert series.extras is None


def test_merge_chunks_overlapping_chunks_keep_identical_points_once():
    # A retried write can store the same points in two chunks.
    a = chunk([0, 1, 2], [0, 10, 20], [1.0, 2.0, 3.0])
    b = chunk([1, 2, 3], [10, 20, 30], [2.0, 3.0, 4.0])
    series = merge_chunks("r", "k", [b, a])
    assert triples(series) == [(0, 0, 1.0), (1, 10, 2.0), (2, 20, 3.0), (3, 30, 4.0)]
    assert series.extras is None


def test_merge_chunks_same_step_differing_points_all_kept():
    # Same step, different timestamp or value: distinct points, not duplicates.
    a = chunk([1, 1], [5, 5], [2.0, 1.0])
    b = chunk([1, 1], [3, 5], [9.0, 1.0])
    series = merge_chunks("r", "k", [a, b])
    assert triples(series) == [(1, 3, 9.0), (1, 5, 1.0), (1, 5, 2.0)]


def test_merge_chunks_orders_by_step_then_timestamp_then_value():
    c = chunk([2, 1, 1, 1, 0], [1, 7, 3, 3, 9], [0.0, -1.0, 5.0, 4.0, 8.0])
    series = merge_chunks("r", "k", [c])
    assert triples(series) == [(0, 9, 8.0), (1, 3, 4.0), (1, 3, 5.0), (1, 7, -1.0), (2, 1, 0.0)]


def test_merge_chunks_nan_ranks_above_infinity_and_equal_nans_fold():
    # PostgreSQL float8: NaN = NaN and NaN > +Infinity; any NaN payload or sign is the same NaN.
    neg_nan = math.copysign(NAN, -1.0)
    a = chunk([0, 0, 0, 0], [1, 1, 1, 1], [NAN, INF, -INF, 1.0])
    b = chunk([0, 0], [1, 1], [neg_nan, float("nan")])
    series = merge_chunks("r", "k", [a, b])
    assert triples(series) == [(0, 1, -INF), (0, 1, 1.0), (0, 1, INF), (0, 1, "nan")]


def test_merge_chunks_signed_zeros_fold():
    # -0.0 = 0.0 in float8, so DISTINCT ON keeps one of them.
    series = merge_chunks("r", "k", [chunk([0, 0], [1, 1], [-0.0, 0.0]), chunk([0], [1], [0.0])])
    assert len(series) == 1
    assert series.values[0] == 0.0


def test_merge_chunks_plain_copy_wins_over_model_copy():
    # log_model copies step-0 points onto the model; a read must still answer the plain copy,
    # whichever chunk sorts first.
    model = chunk([0], [1], [0.5], model_id="m-1")
    plain = chunk([0], [1], [0.5])
    for chunks in ([model, plain], [plain, model]):
        series = merge_chunks("r", "k", chunks)
        assert points(series) == [(0, 1, 0.5, PLAIN)]
        # The extras column still exists: some chunk carried extras.
        assert series.extras == [PLAIN]


def test_merge_chunks_plain_copy_wins_across_signed_zero():
    # Folding must not care which zero the plain copy was logged with.
    model = chunk([0], [1], [0.0], model_id="m")
    plain = chunk([0], [1], [-0.0])
    series = merge_chunks("r", "k", [model, plain])
    assert series.extras == [PLAIN]


def test_merge_chunks_plain_copy_wins_with_nan():
    model = chunk([0], [1], [NAN], model_id="m")
    plain = chunk([0], [1], [math.copysign(NAN, -1.0)])
    series = merge_chunks("r", "k", [model, plain])
    assert points(series) == [(0, 1, "nan", PLAIN)]


@pytest.mark.parametrize(
    ("models", "winner"),
    [
        (["b", "a", "c"], "a"),
        # Code-point order (COLLATE "C"), not a locale's: uppercase before lowercase.
        (["a", "B"], "B"),
        (["é", "z"], "z"),
        # Code point, not UTF-16 unit: U+FFFD sorts before an astral character.
        (["\U0001f600", "\ufffd"], "\ufffd"),
    ],
)
def test_merge_chunks_smallest_model_id_wins(models, winner):
    chunks = [chunk([3], [7], [1.5], model_id=m) for m in models]
    for order in (chunks, chunks[::-1]):
        series = merge_chunks("r", "k", order)
        assert points(series) == [(3, 7, 1.5, (winner, None, None))]


def test_merge_chunks_null_dataset_before_named_dataset():
    # NULLS FIRST on every extras column, as the SQL _PLAIN_FIRST orders them.
    with_ds = chunk([0], [0], [1.0], model_id="m", dataset_name="d", dataset_digest="x")
    without = chunk([0], [0], [1.0], model_id="m")
    series = merge_chunks("r", "k", [with_ds, without])
    assert series.extras == [("m", None, None)]
    only_ds = chunk([0], [0], [1.0], dataset_name="d", dataset_digest="x")
    series = merge_chunks("r", "k", [with_ds, only_ds])
    assert series.extras == [(None, "d", "x")]


def test_merge_chunks_extras_kept_per_point():
    a = chunk([0, 1], [0, 1], [1.0, 2.0])
    b = chunk([2, 3], [2, 3], [3.0, 4.0], model_id="m", dataset_name="ds", dataset_digest="dg")
    series = merge_chunks("r", "k", [b, a])
    assert series.steps == [0, 1, 2, 3]
    assert series.extras == [PLAIN, PLAIN, ("m", "ds", "dg"), ("m", "ds", "dg")]


def test_merge_chunks_matches_reference_on_random_chunks():
    # Reference: PostgreSQL's DISTINCT ON (step, ts, value) ORDER BY ..., plain/smallest first.
    rng = random.Random(20240611)
    value_pool = [0.0, -0.0, 1.0, -1.5, INF, -INF, NAN, 2.5]
    extras_pool = [PLAIN, PLAIN, ("a", None, None), ("b", "d", "x"), (None, "d", "x")]
    for _ in range(300):
        chunks = []
        for _ in range(rng.randint(1, 4)):
            n = rng.randint(1, 6)
            extras = rng.choice(extras_pool)
            chunks.append(
                chunk(
                    [rng.randint(-2, 5) for _ in range(n)],
                    [rng.randint(0, 2) for _ in range(n)],
                    [rng.choice(value_pool) for _ in range(n)],
                    *extras,
                )
            )
        best: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for c in chunks:
            e = (c[4], c[5], c[6])
            rank = (e != PLAIN, tuple("" if x is None else x for x in e))
            for s, t, v in zip(c[1], c[2], c[3], strict=True):
                k = (s, t, (v != v, 0.0 if v != v else v))
                if k not in best or rank < best[k][0]:
                    best[k] = (rank, e)
        expected = [(k[0], k[1], "nan" if k[2][0] else k[2][1], best[k][1]) for k in sorted(best)]
        series = merge_chunks("r", "k", chunks)
        assert points(series) == expected
        any_extras = any((c[4], c[5], c[6]) != PLAIN for c in chunks)
        assert (series.extras is not None) == any_extras


# --- series_of_points -------------------------------------------------------------------------


def test_series_of_points_groups_runs_in_given_order():
    rows = [
        ("r2", 0, 10, 1.0, None, None, None),
        ("r2", 1, 11, 2.0, None, None, None),
        ("r1", 5, 50, 3.0, "m", None, None),
        ("r1", 6, 60, 4.0, None, None, None),
    ]
    out = series_of_points("acc", rows)
    assert [s.run_id for s in out] == ["r2", "r1"]
    assert all(s.key == "acc" for s in out)
    assert (
        out[0].steps == [0, 1] and out[0].timestamps_ms == [10, 11] and out[0].values == [1.0, 2.0]
    )
    assert out[0].extras is None
    assert out[1].steps == [5, 6]
    assert out[1].extras == [("m", None, None), PLAIN]


def test_series_of_points_empty():
    assert series_of_points("k", []) == []


def test_series_of_points_accepts_record_like_rows():
    # asyncpg records index positionally; lists stand in for them.
    out = series_of_points("k", [["r", 0, 1, 2.0, None, None, None]])
    assert len(out) == 1 and out[0].values == [2.0] and out[0].extras is None


# --- MLflow's sampling ---------------------------------------------------------------------


def test_sample_ranks_small_returns_every_point():
    assert sample_ranks(5, 10) == [0, 1, 2, 3, 4]
    assert sample_ranks(10, 10) == list(range(10))
    assert sample_ranks(0, 10) == []


def test_sample_ranks_first_of_each_ntile_bucket_then_the_last_point():
    # 11 points in 5 buckets: sizes 3, 2, 2, 2, 2 -> starts 0, 3, 5, 7, 9; the last (10) replaces 9.
    assert sample_ranks(11, 5) == [0, 3, 5, 7, 10]
    # 200k points at 320: exactly 320, never 321 (the old step sampling added the last step).
    ranks = sample_ranks(200_000, 320)
    assert (
        len(ranks) == 320 and ranks[0] == 0 and ranks[-1] == 199_999 and ranks == sorted(set(ranks))
    )


@pytest.mark.parametrize("max_results", [1, 0, -7])
def test_sample_ranks_one_means_the_last_point(max_results):
    assert sample_ranks(10, max_results) == [9]


def test_sample_series_range_then_ranks():
    s = merge_chunks("r", "k", [chunk(range(100), range(100), [float(i) for i in range(100)])])
    assert sample_series(s, 5, 10, 20).steps == [10, 13, 15, 17, 20]
    assert sample_series(s, 500, None, None) is s
    assert len(sample_series(s, 5, 200, 300)) == 0


def _spans(chunks, start, end):
    """What _CHUNK_SPANS computes in SQL for (ascending) chunks: count in range, first position."""
    lo, hi = (start, end) if start is not None else (-(2**63), 2**63 - 1)
    out = []
    for c in sorted(chunks, key=lambda c: c[1][0]):
        steps = c[1]
        if steps[-1] < lo or steps[0] > hi:
            continue
        count = sum(lo <= s <= hi for s in steps)
        out.append(
            ChunkSpan(
                steps[0],
                steps[-1],
                steps == sorted(set(steps)),
                count,
                sum(s < lo for s in steps) + 1,
            )
        )
    return out


def test_rank_positions_pick_the_points_sample_series_picks():
    # The rank-from-counts path must choose exactly the points the general path chooses.
    rng = random.Random(99)
    for _ in range(300):
        chunks, step = [], rng.randint(-50, 50)
        for _ in range(rng.randint(1, 12)):
            n = rng.randint(1, 40)
            steps = []
            for _ in range(n):
                step += rng.randint(1, 3)
                steps.append(step)
            chunks.append(
                chunk(steps, [rng.randint(0, 9) for _ in steps], [rng.random() for _ in steps])
            )
        rng.shuffle(chunks)
        start, end = (
            (None, None) if rng.random() < 0.5 else sorted(rng.sample(range(-60, step + 10), 2))
        )
        max_results = rng.choice([1, 2, 5, 37, 320])
        spans = _spans(chunks, start, end)
        assert ranks_are_positions(spans)
        ordered = sorted(chunks, key=lambda c: c[1][0])
        ordered = [
            c
            for c in ordered
            if c[1][-1] >= (start if start is not None else -(2**63))
            and c[1][0] <= (end if end is not None else 2**63 - 1)
        ]
        ranks = sample_ranks(sum(s.count for s in spans), max_results)
        picked = [
            (ordered[i][1][p - 1], ordered[i][2][p - 1], ordered[i][3][p - 1])
            for i, positions in rank_positions(spans, ranks)
            for p in positions
        ]
        expected = triples(sample_series(merge_chunks("r", "k", chunks), max_results, start, end))
        assert picked == expected


def test_ranks_are_positions_refuses_overlap_and_disorder():
    a = ChunkSpan(0, 9, True, 10, 1)
    assert ranks_are_positions([a, ChunkSpan(10, 19, True, 10, 1)])
    assert not ranks_are_positions([a, ChunkSpan(9, 19, True, 10, 1)])  # step 9 in both
    assert not ranks_are_positions([a, ChunkSpan(20, 29, False, 10, 1)])
