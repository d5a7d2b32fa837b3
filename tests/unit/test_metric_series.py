"""Unit tests for stores/postgres/metric_series.py: merging stored chunks into one history,
SQL point rows as series, and MLflow's step downsampling for bulk-interval reads.

The Python merge must answer exactly as the SQL reads do (DISTINCT ON with PostgreSQL's float8
order and the plain-copy-first rule), because a history switches between the two paths as it
grows; these tests pin that contract without a database.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from metricgate.entities import MetricSeries
from metricgate.stores.postgres.metric_series import merge_chunks, sample_steps, sampled, series_of_points

NAN = math.nan
INF = math.inf
PLAIN = (None, None, None)


def chunk(steps, timestamps, vals, model_id=None, dataset_name=None, dataset_digest=None, run_id="r"):
    return (run_id, list(steps), list(timestamps), list(vals), model_id, dataset_name, dataset_digest)


def _v(value: float) -> Any:
    # NaN != NaN would make every comparison of a series holding one fail.
    return "nan" if value != value else value


def points(series: MetricSeries) -> list[tuple[Any, ...]]:
    extras = series.extras if series.extras is not None else [PLAIN] * len(series)
    return [(s, t, _v(v), e) for s, t, v, e in zip(series.steps, series.timestamps_ms, series.values, extras)]


def triples(series: MetricSeries) -> list[tuple[Any, ...]]:
    return [(s, t, _v(v)) for s, t, v in zip(series.steps, series.timestamps_ms, series.values)]


# --- merge_chunks ---------------------------------------------------------------------------


def test_merge_chunks_out_of_order_fast_path():
    # The store returns chunks in no particular order; consecutive chunks are the common case.
    chunks = [chunk([4, 5], [40, 50], [0.4, 0.5]), chunk([0, 1], [0, 10], [0.0, 0.1]), chunk([2, 3], [20, 30], [0.2, 0.3])]
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
            chunks.append(chunk(
                [rng.randint(-2, 5) for _ in range(n)],
                [rng.randint(0, 2) for _ in range(n)],
                [rng.choice(value_pool) for _ in range(n)],
                *extras,
            ))
        best: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for c in chunks:
            e = (c[4], c[5], c[6])
            rank = (e != PLAIN, tuple("" if x is None else x for x in e))
            for s, t, v in zip(c[1], c[2], c[3]):
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
    assert out[0].steps == [0, 1] and out[0].timestamps_ms == [10, 11] and out[0].values == [1.0, 2.0]
    assert out[0].extras is None
    assert out[1].steps == [5, 6]
    assert out[1].extras == [("m", None, None), PLAIN]


def test_series_of_points_empty():
    assert series_of_points("k", []) == []


def test_series_of_points_accepts_record_like_rows():
    # asyncpg records index positionally; lists stand in for them.
    out = series_of_points("k", [["r", 0, 1, 2.0, None, None, None]])
    assert len(out) == 1 and out[0].values == [2.0] and out[0].extras is None


# --- sample_steps -------------------------------------------------------------------------------


def test_sample_steps_small_union_returns_every_step():
    assert sample_steps([[0, 2, 4], [1, 4, 9]], 10, None, None) == [0, 1, 2, 4, 9]


def test_sample_steps_spreads_evenly():
    assert sample_steps([list(range(100))], 10, None, None) == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 99]


def test_sample_steps_keeps_each_runs_first_and_last_step():
    # A short run's boundaries would otherwise fall between sampled steps and vanish from plots.
    out = sample_steps([list(range(100)), [37, 41, 53]], 10, None, None)
    assert {37, 53} <= set(out)
    assert 41 not in out
    assert {0, 99} <= set(out)


def test_sample_steps_respects_range():
    out = sample_steps([list(range(100)), [5, 95]], 100, 20, 50)
    assert out == list(range(20, 51))
    out = sample_steps([list(range(100)), [25, 45]], 3, 20, 50)
    assert out[0] == 20 and out[-1] == 50
    assert {25, 45} <= set(out)
    assert all(20 <= s <= 50 for s in out)


def test_sample_steps_default_range_starts_at_zero():
    # MLflow's default range is [0, last step]: negative steps appear only when asked for.
    assert sample_steps([[-5, -1, 0, 3]], 10, None, None) == [0, 3]
    assert sample_steps([[-5, -1, 0, 3]], 10, -5, 3) == [-5, -1, 0, 3]


def test_sample_steps_one_bound_only_is_ignored():
    assert sample_steps([[-5, 0, 3]], 10, -5, None) == [0, 3]
    assert sample_steps([[-5, 0, 3]], 10, None, 0) == [0, 3]


@pytest.mark.parametrize("max_results", [1, 0, -7])
def test_sample_steps_max_results_below_one_is_one(max_results):
    assert sample_steps([list(range(10))], max_results, None, None) == [0, 9]


def test_sample_steps_empty():
    assert sample_steps([], 10, None, None) == []
    assert sample_steps([[], []], 10, None, None) == []
    assert sample_steps([[1, 2, 3]], 10, 5, 9) == []


def test_sample_steps_bounds_on_random_inputs():
    rng = random.Random(7)
    for _ in range(500):
        runs = [sorted(set(rng.sample(range(-20, 200), rng.randint(0, 60)))) for _ in range(rng.randint(1, 4))]
        max_results = rng.randint(-1, 30)
        if rng.random() < 0.5:
            start, end = sorted(rng.sample(range(-30, 220), 2))
        else:
            start = end = None
        out = sample_steps(runs, max_results, start, end)
        union = {s for r in runs for s in r}
        lo, hi = (0, max(union, default=0)) if start is None else (start, end)
        in_range = sorted(s for s in union if lo <= s <= hi)
        assert out == sorted(set(out))
        assert set(out) <= set(in_range)
        for r in runs:
            for b in (r[:1] + r[-1:]):
                if lo <= b <= hi:
                    assert b in out
        if in_range:
            assert in_range[0] in out and in_range[-1] in out
        assert len(out) <= max(1, max_results) + 1 + 2 * len(runs)


def test_sample_steps_matches_mlflow():
    # The installed MLflow's own step sampling is the oracle: a fake store with one point per
    # step makes every sampled step come back, so the union of returned steps is its sample.
    abstract_store = pytest.importorskip("mlflow.store.tracking.abstract_store")
    entities = pytest.importorskip("mlflow.entities")

    class FakeStore(abstract_store.AbstractStore):
        def __init__(self, runs: dict[str, list[int]]) -> None:
            self._runs = runs

        def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):
            return [entities.Metric(metric_key, 0.0, s, s) for s in self._runs[run_id]]

    rng = random.Random(11)
    for _ in range(200):
        runs = {
            f"r{i}": sorted(set(rng.sample(range(0, 300), rng.randint(1, 80)))) for i in range(rng.randint(1, 3))
        }
        max_results = rng.randint(1, 40)
        if rng.random() < 0.5:
            start, end = sorted(rng.sample(range(0, 320), 2))
        else:
            start = end = None
        theirs = FakeStore(runs).get_metric_history_bulk_interval(list(runs), "k", max_results, start, end)
        expected = sorted({m.step for m in theirs})
        assert sample_steps(list(runs.values()), max_results, start, end) == expected, (runs, max_results, start, end)


# --- sampled ----------------------------------------------------------------------------------


def reference_sampled(
    merged: dict[str, MetricSeries], run_ids: list[str], max_results: int, start: int | None, end: int | None
) -> list[list[tuple[Any, ...]]]:
    steps = sample_steps([sorted(set(s.steps)) for s in merged.values()], max_results, start, end)
    keep, limit = set(steps), max(max_results, len(steps))
    out, seen = [], set()
    for run_id in run_ids:
        if run_id in seen or run_id not in merged:
            continue
        seen.add(run_id)
        pts = [p for p in points(merged[run_id]) if p[0] in keep][:limit]
        if pts:
            out.append([run_id, *pts])
    return out


def _random_merged(rng: random.Random) -> dict[str, MetricSeries]:
    merged = {}
    for i in range(rng.randint(0, 4)):
        chunks = []
        for _ in range(rng.randint(1, 3)):
            n = rng.randint(1, 25)
            base = rng.randint(-10, 60)
            # Duplicate steps (several points per step) come from small step ranges.
            steps = [base + rng.randint(0, rng.choice([2, 30])) for _ in range(n)]
            extras = rng.choice([PLAIN, PLAIN, ("m", None, None)])
            chunks.append(chunk(steps, [rng.randint(0, 3) for _ in range(n)], [rng.random() for _ in range(n)], *extras, run_id=f"r{i}"))
        merged[f"r{i}"] = merge_chunks(f"r{i}", "k", chunks)
    return merged


def test_sampled_matches_reference_on_random_inputs():
    rng = random.Random(424242)
    for _ in range(400):
        merged = _random_merged(rng)
        run_ids = list(merged) + ["missing"] + rng.sample(list(merged), k=min(2, len(merged)))
        rng.shuffle(run_ids)
        max_results = rng.choice([-1, 0, 1, 2, 3, 5, 10, 50, 500])
        if rng.random() < 0.4:
            start, end = sorted(rng.sample(range(-15, 100), 2))
        else:
            start = end = None
        got = sampled(merged, run_ids, max_results, start, end)
        assert [[s.run_id, *points(s)] for s in got] == reference_sampled(merged, run_ids, max_results, start, end)
        for s in got:
            assert s.key == "k"
            # A run's extras column exists exactly when its merged series had one.
            assert (s.extras is None) == (merged[s.run_id].extras is None)


def test_sampled_fast_path_returns_series_unchanged():
    a = merge_chunks("a", "k", [chunk([0, 1, 2], [0, 1, 2], [1.0, 2.0, 3.0], run_id="a")])
    b = merge_chunks("b", "k", [chunk([1, 3], [0, 1], [1.0, 2.0], model_id="m", run_id="b")])
    out = sampled({"a": a, "b": b}, ["b", "x", "a", "b"], 10, None, None)
    assert len(out) == 2
    assert out[0] is b and out[1] is a


def test_sampled_per_run_limit_truncates_in_history_order():
    # Many points on one step: the per-run cap keeps the first ones in (step, ts, value) order.
    s = merge_chunks("a", "k", [chunk([0] * 6 + [1], [6, 5, 4, 3, 2, 1, 0], [0.0] * 7, run_id="a")])
    out = sampled({"a": s}, ["a"], 3, None, None)
    # Steps {0, 1} sampled, limit max(3, 2) = 3.
    assert points(out[0]) == [(0, 1, 0.0, PLAIN), (0, 2, 0.0, PLAIN), (0, 3, 0.0, PLAIN)]


def test_sampled_omits_runs_without_sampled_points():
    a = merge_chunks("a", "k", [chunk(range(100), range(100), [0.0] * 100, run_id="a")])
    b = merge_chunks("b", "k", [chunk([-3, -2], [0, 1], [1.0, 2.0], run_id="b")])
    out = sampled({"a": a, "b": b}, ["a", "b"], 5, None, None)
    assert [s.run_id for s in out] == ["a"]


def test_sampled_nothing_asked():
    assert sampled({}, ["a"], 10, None, None) == []
