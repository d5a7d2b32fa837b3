"""Pure: turn decoded stream entries (or one request's metrics) into the rows one flush writes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import itemgetter

from metricgate.entities import Metric
from metricgate.ingest.wire import PointBatch

# (run_id, key, step, timestamp_ms, value, model_id, dataset_name, dataset_digest)
PointRow = tuple[str, str, int, int, float, str | None, str | None, str | None]


@dataclass
class FlushBatch:
    points: list[PointRow] = field(default_factory=list)
    # One row per (run, key): the point that wins MLflow's latest rule within this batch.
    latest: list[PointRow] = field(default_factory=list)
    # Points logged with a model id, which also belong to that logged model.
    model_points: list[PointRow] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.points)


def rank(row: PointRow) -> tuple[int, int, bool, float]:
    """MLflow's latest order (step, then timestamp, then value), with NaN above every number as
    PostgreSQL orders it; Python alone cannot compare NaN."""
    value = row[4]
    is_nan = math.isnan(value)
    return (row[2], row[3], is_nan, 0.0 if is_nan else value)


def index_order(row: PointRow) -> tuple[str, str, int, int, bool, float]:
    """The unique index's order; concurrent writers that insert in one global order queue
    behind each other instead of deadlocking."""
    return (row[0], row[1], *rank(row))


def rows_from_entries(batches: Iterable[PointBatch]) -> list[PointRow]:
    rows: list[PointRow] = []
    for b in batches:
        if b.extras is None:
            rows.extend(
                (b.run_id, k, s, t, v, None, None, None)
                for k, v, t, s in zip(b.keys, b.values, b.timestamps_ms, b.steps)
            )
        else:
            rows.extend(
                (b.run_id, k, s, t, v, e[0], e[1], e[2])
                for k, v, t, s, e in zip(b.keys, b.values, b.timestamps_ms, b.steps, b.extras)
            )
    return rows


def rows_from_metrics(run_id: str, metrics: Sequence[Metric]) -> list[PointRow]:
    return [
        (run_id, m.key, m.step, m.timestamp_ms, m.value, m.model_id, m.dataset_name, m.dataset_digest)
        for m in metrics
    ]


_FAST_ORDER = itemgetter(0, 1, 2, 3)


def build_batch(rows: list[PointRow]) -> FlushBatch:
    # Sorting on (run, key, step, timestamp) runs in C; only rows equal on all four (rare: the
    # value decides, NaN highest) need the Python key, so that case re-sorts with it.
    rows.sort(key=_FAST_ORDER)
    latest: dict[tuple[str, str], PointRow] = {}
    ties = False
    for row in rows:  # ascending within (run, key): the last one wins, ties by rank
        group = (row[0], row[1])
        current = latest.get(group)
        if current is not None and current[2] == row[2] and current[3] == row[3]:
            ties = True
            if rank(current) > rank(row):
                continue
        latest[group] = row
    if ties:
        rows.sort(key=index_order)
    return FlushBatch(
        points=rows,
        latest=list(latest.values()),
        model_points=[r for r in rows if r[5]],
    )
