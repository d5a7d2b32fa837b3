"""Benchmark results: the human table and the one-line JSON (pure code)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class IngestResult:
    """One workload at one concurrency against one server."""

    workload: str
    url: str
    runs: int
    steps: int
    keys: int
    steps_per_request: int
    metrics_per_request: int
    concurrency: int
    effective_concurrency: int  # min(runs, concurrency): one request in flight per run
    requests_planned: int
    points_planned: int
    requests_sent: int = 0
    requests_ok: int = 0
    points_accepted: int = 0  # points in requests answered 200
    setup_s: float = 0.0
    send_s: float | None = None  # first request sent .. last response received
    accepted_pts_s: float | None = None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    errors: dict[str, int] = field(
        default_factory=dict
    )  # status ("503", "conn", "timeout") -> count
    error_samples: dict[str, str] = field(
        default_factory=dict
    )  # status -> first answer body/exception
    client_cpu_pct: float | None = (
        None  # the load generator's own CPU during sending (100 = one core)
    )
    capped: bool = False  # sending stopped at the time cap before every request was sent
    cap_s: float | None = None
    visible_checked: bool = False
    visible_complete: bool = False  # every accepted point was read back through get-history
    visible_s: float | None = None  # send start .. every accepted point confirmed readable
    visible_pts_s: float | None = None  # points_accepted / visible_s
    verify_s: float | None = None  # send end .. visible: mostly the read-back of every point itself
    # send start .. one key of every run complete: a cheap lower bound on visible_s (not exact)
    first_key_visible_s: float | None = None
    missing_points: int = 0  # accepted points not readable when the visibility check gave up
    extra_points: int = 0  # points readable beyond those acknowledged (failed requests that wrote)
    visible_reads: int = 0  # read requests the read-back made
    visible_via: str = ""  # history (one run and key per read) or bulk (get-history-bulk-interval)
    visible_read_errors: dict[str, int] = field(
        default_factory=dict
    )  # failed reads by status (re-polled)
    wall_s: float = 0.0
    label: str = ""  # contender name in a comparison
    notes: list[str] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["error_count"] = self.error_count
        return {k: _round(v) for k, v in data.items()}


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    return value


def fmt_int(value: float | None) -> str:
    return "-" if value is None else f"{round(value):,}"


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 1000 else f"{value:,.0f}"


def fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def fmt_errors(errors: Mapping[str, int]) -> str:
    """``{"503": 4, "conn": 1}`` -> ``"503:4 conn:1"``; numeric statuses first; ``"0"`` for none."""
    if not errors or not any(errors.values()):
        return "0"

    def order(item: tuple[str, int]) -> tuple[int, str]:
        return (0, item[0].zfill(3)) if item[0].isascii() and item[0].isdigit() else (1, item[0])

    return " ".join(f"{k}:{v}" for k, v in sorted(errors.items(), key=order) if v)


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: Sequence[bool] | None = None
) -> str:
    """A plain-text table: columns padded to their widest cell; numbers right-aligned by default
    (every column but the first unless ``right`` says otherwise)."""
    rows = [list(map(str, row)) for row in rows]
    for row in rows:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}: {row}")
    if right is None:
        right = [i > 0 for i in range(len(headers))]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


INGEST_HEADERS = (
    "workload",
    "conc",
    "requests",
    "points",
    "accepted pts/s",
    "p50 ms",
    "p95 ms",
    "p99 ms",
    "errors",
    "visible pts/s",
    "wall s",
)


def ingest_row(result: IngestResult) -> list[str]:
    workload = result.workload + (f" [{result.label}]" if result.label else "")
    conc = str(result.concurrency)
    if result.effective_concurrency < result.concurrency:
        conc += f" (eff {result.effective_concurrency})"
    requests = fmt_int(result.requests_sent)
    points = fmt_int(result.points_accepted)
    if result.capped:
        requests += f"/{fmt_int(result.requests_planned)}"
        points += f"/{fmt_int(result.points_planned)}"
    if not result.visible_checked:
        visible = "not checked"
    elif result.visible_complete:
        visible = fmt_int(result.visible_pts_s)
    else:
        visible = f"INCOMPLETE ({fmt_int(result.missing_points)} missing)"
    accepted = fmt_int(result.accepted_pts_s) + (" CAPPED" if result.capped else "")
    return [
        workload,
        conc,
        requests,
        points,
        accepted,
        fmt_ms(result.p50_ms),
        fmt_ms(result.p95_ms),
        fmt_ms(result.p99_ms),
        fmt_errors(result.errors),
        visible,
        fmt_s(result.wall_s),
    ]


def ingest_table(results: Sequence[IngestResult]) -> str:
    table = format_table(INGEST_HEADERS, [ingest_row(r) for r in results])
    notes = []
    if any(r.capped for r in results):
        notes.append(
            "CAPPED: sending stopped at the time cap; requests/points read sent/planned, and the rates "
            "cover only what was sent."
        )
    if any(r.effective_concurrency < r.concurrency for r in results):
        notes.append(
            "eff: one request in flight per run, so at most <runs> requests are in flight."
        )
    vias = sorted({r.visible_via for r in results if r.visible_via})
    if vias:
        how = {
            "bulk": "get-history-bulk-interval (one key of up to 100 runs per read)",
            "history": "get-history (one run and key per read)",
        }
        notes.append(
            "visible: read back through " + " and ".join(how.get(v, v) for v in vias) + "."
        )
    if any(r.extra_points for r in results):
        notes.append("Some failed requests were written anyway (extra_points in the JSON).")
    return table + "".join(f"\n  {n}" for n in notes)


def json_line(kind: str, results: Sequence[IngestResult], **extra: Any) -> str:
    """One line of JSON: ``{"bench": kind, "results": [...], ...extra}``."""
    payload: dict[str, Any] = {"bench": kind, **extra, "results": [r.to_json() for r in results]}
    return json.dumps(payload, separators=(",", ":"), sort_keys=False)
