"""Pure: metric histories as series, from stored chunks or point rows; MLflow's downsampling.

What the history reads of stores/postgres/metrics.py compute in Python (no SQL here): merging a
run's chunks into one ordered series with identical points once, turning SQL point rows into
series, and choosing the steps a downsampled plot shows.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Sequence
from typing import Any

from metricgate.entities import NO_EXTRAS, MetricSeries, value_rank


def merge_chunks(run_id: str, key: str, chunks: Sequence[Sequence[Any]]) -> MetricSeries:
    """One run's chunks of one key (rows of run_id, steps, timestamps_ms, vals, model_id,
    dataset_name, dataset_digest) as one series in (step, timestamp, value) order, identical
    points once (what the SQL reads get with DISTINCT ON).

    The usual case costs a few C-speed list operations: chunks hold consecutive steps, so
    ordered by their first step and concatenated, the steps strictly ascend, which proves the
    order and that no point repeats. Anything else is sorted and deduplicated point by point."""
    ordered = sorted(chunks, key=_first_step)
    steps: list[int] = []
    timestamps: list[int] = []
    values: list[float] = []
    plain = True
    for chunk in ordered:
        steps += chunk[1]
        timestamps += chunk[2]
        values += chunk[3]
        if chunk[4] is not None or chunk[5] is not None or chunk[6] is not None:
            plain = False
    if plain and all(map(operator.lt, steps, steps[1:])):
        return MetricSeries(run_id, key, steps, timestamps, values)
    points = sorted(
        (
            (s, t, value_rank(v), v, (c[4], c[5], c[6]))
            for c in ordered
            for s, t, v in zip(c[1], c[2], c[3])
        ),
        key=_plain_first,
    )
    kept = [p for i, p in enumerate(points) if i == 0 or _POINT_ORDER(points[i - 1]) != _POINT_ORDER(p)]
    return MetricSeries(
        run_id,
        key,
        [p[0] for p in kept],
        [p[1] for p in kept],
        [p[3] for p in kept],
        None if plain else [p[4] for p in kept],
    )


def _first_step(chunk: Sequence[Any]) -> int:
    return chunk[1][0]


_POINT_ORDER = operator.itemgetter(0, 1, 2)


def _plain_first(point: tuple[Any, ...]) -> tuple[Any, ...]:
    """History order, and of identical points the plain one first: the copy logged without a
    model or dataset (metrics.py _PLAIN_FIRST says why)."""
    return (point[0], point[1], point[2], point[4] != NO_EXTRAS, tuple(e or "" for e in point[4]))


def series_of_points(key: str, rows: Sequence[Sequence[Any]]) -> list[MetricSeries]:
    """The two-query path's rows (run_id, step, timestamp_ms, value, extras...; runs in the
    order asked, points in order) as one series per run."""
    out: list[MetricSeries] = []
    for run_id, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        points = list(group)
        extras = [(p[4], p[5], p[6]) for p in points]
        out.append(MetricSeries(
            run_id,
            key,
            [p[1] for p in points],
            [p[2] for p in points],
            [p[3] for p in points],
            extras if any(e != NO_EXTRAS for e in extras) else None,
        ))
    return out


def sampled(
    merged: dict[str, MetricSeries], run_ids: Sequence[str], max_results: int, start_step: int | None, end_step: int | None
) -> list[MetricSeries]:
    """The two-query path's answer computed from every point of the runs: the same sampled
    steps, at most ``max(max_results, steps)`` points per run, runs in the order asked."""
    runs_steps = [sorted(set(s.steps)) for s in merged.values()]
    steps = sample_steps(runs_steps, max_results, start_step, end_step)
    per_run_limit = max(max_results, len(steps))
    every_step = len(steps) == len(set().union(*runs_steps))
    sampled = set(steps)
    out: list[MetricSeries] = []
    for run_id in dict.fromkeys(run_ids):  # the order asked, each run once
        series = merged.get(run_id)
        if series is None:
            continue
        if every_step and len(series) <= per_run_limit:
            out.append(series)
            continue
        idx = [i for i, s in enumerate(series.steps) if s in sampled][:per_run_limit]
        if not idx:
            continue
        out.append(MetricSeries(
            run_id,
            series.key,
            [series.steps[i] for i in idx],
            [series.timestamps_ms[i] for i in idx],
            [series.values[i] for i in idx],
            None if series.extras is None else [series.extras[i] for i in idx],
        ))
    return out


def sample_steps(
    runs_steps: list[list[int]], max_results: int, start_step: int | None, end_step: int | None
) -> list[int]:
    """Pick at most ~max_results steps spread evenly over the union of every run's steps,
    keeping each run's first and last step so plots keep their boundaries (MLflow's algorithm)."""
    max_results = max(1, max_results)
    all_steps = sorted({s for steps in runs_steps for s in steps})
    if start_step is None or end_step is None:
        start_step, end_step = 0, (all_steps[-1] if all_steps else 0)
    bounds = {s for steps in runs_steps if steps for s in (min(steps), max(steps)) if start_step <= s <= end_step}
    lo = bisect.bisect_left(all_steps, start_step)
    hi = bisect.bisect_right(all_steps, end_step)
    if hi - lo <= max_results:
        sampled = set(all_steps[lo:hi])
    else:
        interval = (hi - lo) / max_results
        sampled = {all_steps[lo + int(i * interval)] for i in range(max_results) if lo + int(i * interval) < hi}
        sampled.add(all_steps[hi - 1])
    return sorted(sampled | bounds)
