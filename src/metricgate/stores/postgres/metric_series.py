"""Pure: metric histories as series, from stored chunks or point rows; MLflow's downsampling.

What the history reads of stores/postgres/metrics.py compute in Python (no SQL here): merging a
run's chunks into one ordered series with identical points once, turning SQL point rows into
series, and choosing the points a downsampled plot shows (MLflow 3.17.2's sampling: by rank,
per run, in SQL there; here from the chunks' point counts).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from metricgate.domain.tracking.entities import NO_EXTRAS, MetricSeries, value_rank


class Row(Protocol):
    """A row read by position: an asyncpg Record as the reads fetch it, or a tuple."""

    def __getitem__(self, index: int, /) -> Any: ...


def merge_chunks(run_id: str, key: str, chunks: Sequence[Row]) -> MetricSeries:
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
            for s, t, v in zip(c[1], c[2], c[3], strict=True)
        ),
        key=_plain_first,
    )
    kept = [
        p for i, p in enumerate(points) if i == 0 or _POINT_ORDER(points[i - 1]) != _POINT_ORDER(p)
    ]
    return MetricSeries(
        run_id,
        key,
        [p[0] for p in kept],
        [p[1] for p in kept],
        [p[3] for p in kept],
        None if plain else [p[4] for p in kept],
    )


def _first_step(chunk: Row) -> int:
    first: int = chunk[1][0]
    return first


_POINT_ORDER = operator.itemgetter(0, 1, 2)


def _plain_first(point: tuple[Any, ...]) -> tuple[Any, ...]:
    """History order, and of identical points the plain one first: the copy logged without a
    model or dataset (metrics.py _PLAIN_FIRST says why)."""
    return (point[0], point[1], point[2], point[4] != NO_EXTRAS, tuple(e or "" for e in point[4]))


def series_of_points(key: str, rows: Sequence[Row]) -> list[MetricSeries]:
    """The two-query path's rows (run_id, step, timestamp_ms, value, extras...; runs in the
    order asked, points in order) as one series per run."""
    out: list[MetricSeries] = []
    for run_id, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        points = list(group)
        extras = [(p[4], p[5], p[6]) for p in points]
        out.append(
            MetricSeries(
                run_id,
                key,
                [p[1] for p in points],
                [p[2] for p in points],
                [p[3] for p in points],
                extras if any(e != NO_EXTRAS for e in extras) else None,
            )
        )
    return out


def sample_ranks(total: int, max_results: int) -> list[int]:
    """The 0-based ranks, out of ``total`` points in history order, that MLflow 3.17.2's SQL store
    keeps for a plot (``SqlAlchemyStore._sample_rows_with_window_functions``): the first point of
    each of ``NTILE(max_results)`` buckets, and the last point, which takes the place of the last
    bucket's first when that would exceed ``max_results``. So exactly ``min(total,
    max_results)`` points, the first and the last among them (only the last for 1).

    NTILE puts ``total // n`` points in each bucket and one more in each of the first
    ``total % n``, so bucket b starts at ``b * q + min(b, r)``."""
    if total <= 0:
        return []
    n = max(1, max_results)
    if total <= n:
        return list(range(total))
    q, r = divmod(total, n)
    ranks = [b * q + min(b, r) for b in range(n)]
    ranks[-1] = total - 1
    return ranks


def sample_series(
    series: MetricSeries, max_results: int, start_step: int | None, end_step: int | None
) -> MetricSeries:
    """MLflow's plot sample of one merged series: its points within [start_step, end_step]
    (every point when no range is given), then ``sample_ranks`` of those."""
    lo, hi = 0, len(series)
    if start_step is not None and end_step is not None:
        lo = bisect.bisect_left(series.steps, start_step)
        hi = bisect.bisect_right(series.steps, end_step)
    ranks = sample_ranks(hi - lo, max_results)
    if lo == 0 and len(ranks) == len(series):
        return series
    idx = [lo + k for k in ranks]
    return MetricSeries(
        series.run_id,
        series.key,
        [series.steps[i] for i in idx],
        [series.timestamps_ms[i] for i in idx],
        [series.values[i] for i in idx],
        None if series.extras is None else [series.extras[i] for i in idx],
    )


@dataclass(frozen=True, slots=True)
class ChunkSpan:
    """A stored chunk as the sampling plan sees it (no arrays): its step range and, of its
    points, how many lie in the requested step range and the 1-based array position of the
    first of them."""

    first_step: int
    last_step: int
    ascending: bool  # steps strictly ascend inside the chunk (NULL, unknown, reads as False)
    count: int
    position: int


def ranks_are_positions(spans: Sequence[ChunkSpan]) -> bool:
    """Whether a point's rank in the run's history follows from the chunks' counts alone: every
    chunk's steps strictly ascend and, in first-step order, each chunk ends before the next
    begins. Then no two stored points are identical (nothing to fold), the history is the
    chunks' points concatenated, and a chunk's in-range points are consecutive in its arrays."""
    return all(s.ascending for s in spans) and all(
        a.last_step < b.first_step for a, b in itertools.pairwise(spans)
    )


def rank_positions(spans: Sequence[ChunkSpan], ranks: Sequence[int]) -> list[tuple[int, list[int]]]:
    """Where each of ``ranks`` (ascending) lies when ``ranks_are_positions(spans)``: (index of
    the chunk in ``spans``, the ranks' 1-based array positions in it), in history order."""
    out: list[tuple[int, list[int]]] = []
    chunk, before = 0, 0  # points of the chunks ahead of `chunk`
    for rank in ranks:
        while rank >= before + spans[chunk].count:
            before += spans[chunk].count
            chunk += 1
        if not out or out[-1][0] != chunk:
            out.append((chunk, []))
        out[-1][1].append(spans[chunk].position + rank - before)
    return out
