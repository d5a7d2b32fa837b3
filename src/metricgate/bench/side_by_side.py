"""Medians over rounds and ratios to a baseline, for measurements taken side by side (pure code).

benchmarks/bench_auth.py measures the same figures (one workload at one concurrency) against
several variants of one server (auth off, auth on as an admin or a user, Basic or Bearer), in
alternating order over a few rounds. Each figure's median per variant is compared with the
baseline variant's median of the same figure.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from metricgate.bench.report import (
    IngestResult,
    fmt_errors,
    fmt_int,
    fmt_ms,
    fmt_ratio,
    format_table,
)
from metricgate.bench.stats import ratio


@dataclass(frozen=True)
class Measured:
    """One run of one figure against one variant in one round."""

    variant: str
    round: int
    result: IngestResult
    # CPU seconds the measured server's processes used during the whole measurement (setup, sends,
    # read-back), when the harness could read it: unlike throughput, it hardly moves when other
    # work shares the machine, so it shows what auth costs per point even on a noisy host.
    server_cpu_s: float | None = None

    @property
    def cpu_us_per_point(self) -> float | None:
        points = self.result.points_accepted
        if self.server_cpu_s is None or not points:
            return None
        return self.server_cpu_s * 1e6 / points

    @property
    def figure(self) -> str:
        return f"{self.result.workload} c={self.result.concurrency}"


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class Row:
    figure: str
    variant: str
    rounds: int
    accepted_pts_s: float | None
    visible_pts_s: float | None
    p50_ms: float | None
    p99_ms: float | None
    errors: dict[str, int]
    incomplete: int  # rounds whose read-back did not find every accepted point
    cpu_us_per_pt: float | None = None  # the server's CPU time per accepted point (median)
    accepted_ratio: float | None = None  # to the baseline's median of the same figure
    visible_ratio: float | None = None
    p50_ratio: float | None = None
    p99_ratio: float | None = None
    cpu_ratio: float | None = None  # above 1: the variant costs the server more per point

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


def summarize(measured: Sequence[Measured], variants: Sequence[str], baseline: str) -> list[Row]:
    """One row per figure and variant (figures in first-measured order, variants as given)."""
    figures = list(dict.fromkeys(m.figure for m in measured))
    rows: list[Row] = []
    for figure in figures:
        by_variant: dict[str, Row] = {}
        for variant in variants:
            mine = [m for m in measured if m.figure == figure and m.variant == variant]
            runs = [m.result for m in mine]
            if not runs:
                continue
            errors: dict[str, int] = {}
            for r in runs:
                for status, count in r.errors.items():
                    errors[status] = errors.get(status, 0) + count
            by_variant[variant] = Row(
                figure=figure,
                variant=variant,
                rounds=len(runs),
                accepted_pts_s=_median([r.accepted_pts_s for r in runs]),
                visible_pts_s=_median([r.visible_pts_s for r in runs]),
                p50_ms=_median([r.p50_ms for r in runs]),
                p99_ms=_median([r.p99_ms for r in runs]),
                errors=errors,
                incomplete=sum(1 for r in runs if r.visible_checked and not r.visible_complete),
                cpu_us_per_pt=_median([m.cpu_us_per_point for m in mine]),
            )
        base = by_variant.get(baseline)
        for row in by_variant.values():
            if base is not None:
                row.accepted_ratio = ratio(row.accepted_pts_s, base.accepted_pts_s)
                row.visible_ratio = ratio(row.visible_pts_s, base.visible_pts_s)
                row.p50_ratio = ratio(row.p50_ms, base.p50_ms)
                row.p99_ratio = ratio(row.p99_ms, base.p99_ms)
                row.cpu_ratio = ratio(row.cpu_us_per_pt, base.cpu_us_per_pt)
            rows.append(row)
    return rows


def worst_ratio(rows: Sequence[Row], baseline: str, field: str = "accepted_ratio") -> float | None:
    """The lowest throughput ratio of any non-baseline row (None when there is none)."""
    values = [getattr(r, field) for r in rows if r.variant != baseline]
    present = [v for v in values if v is not None]
    return min(present) if present else None


HEADERS = (
    "figure",
    "variant",
    "rounds",
    "accepted pts/s",
    "x base",
    "visible pts/s",
    "x base",
    "p50 ms",
    "x base",
    "p99 ms",
    "x base",
    "CPU us/pt",
    "x base",
    "errors",
    "incomplete",
)


def side_by_side_table(rows: Sequence[Row]) -> str:
    return format_table(
        HEADERS,
        [
            [
                r.figure,
                r.variant,
                str(r.rounds),
                fmt_int(r.accepted_pts_s),
                fmt_ratio(r.accepted_ratio),
                fmt_int(r.visible_pts_s),
                fmt_ratio(r.visible_ratio),
                fmt_ms(r.p50_ms),
                fmt_ratio(r.p50_ratio),
                fmt_ms(r.p99_ms),
                fmt_ratio(r.p99_ratio),
                "-" if r.cpu_us_per_pt is None else f"{r.cpu_us_per_pt:.1f}",
                fmt_ratio(r.cpu_ratio),
                fmt_errors(r.errors),
                str(r.incomplete),
            ]
            for r in rows
        ],
        right=[False, False] + [True] * (len(HEADERS) - 2),
    )
