"""The comparison's summary: each contender side by side with ratios (pure code)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from metricgate.bench.copy_baseline import CopyResult, best_rate
from metricgate.bench.report import IngestResult, fmt_int, fmt_ms, fmt_ratio, format_table
from metricgate.bench.stats import ratio

OURS = "metricgate"  # and its variants: every label starting with it (e.g. metricgate-split)
OTHERS = ("mlflow", "fasttrackml")


def _find(
    results: Sequence[IngestResult], label: str, workload: str, concurrency: int
) -> IngestResult | None:
    for r in results:
        if r.label == label and r.workload == workload and r.concurrency == concurrency:
            return r
    return None


def _visible(r: IngestResult | None) -> float | None:
    return r.visible_pts_s if r is not None and r.visible_complete else None


def _accepted(r: IngestResult | None) -> float | None:
    return r.accepted_pts_s if r is not None else None


def _p99(r: IngestResult | None) -> float | None:
    return r.p99_ms if r is not None else None


def summary_rows(
    results: Sequence[IngestResult], copies: Sequence[CopyResult], labels: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per (workload, concurrency, figure) with each contender's value and the ratios
    metricgate/other (for p99: other/metricgate, so above 1 means metricgate is better too)."""
    seen: list[tuple[str, int, int]] = []
    for r in results:
        key = (r.workload, r.concurrency, r.metrics_per_request)
        if key not in seen:
            seen.append(key)
    copy_mlflow = {
        batch: best_rate(list(copies), "mlflow", False, batch)
        for batch in {c.batch_rows for c in copies}
    }
    copy_mg = {
        batch: best_rate(list(copies), "metricgate", False, batch)
        for batch in {c.batch_rows for c in copies}
    }
    rows: list[dict[str, Any]] = []
    for workload, concurrency, per_request in seen:
        by_label = {label: _find(results, label, workload, concurrency) for label in labels}
        capped = sorted(label for label, r in by_label.items() if r is not None and r.capped)
        for figure, get in (
            ("accepted pts/s", _accepted),
            ("visible pts/s", _visible),
            ("p99 ms", _p99),
        ):
            values = {label: get(r) for label, r in by_label.items()}
            row: dict[str, Any] = {
                "workload": workload,
                "concurrency": concurrency,
                "figure": figure,
                "values": values,
                "capped": capped,
                "ratios": {},
            }
            for mine in (label for label in labels if label.startswith(OURS)):
                ours = values.get(mine)
                for other in OTHERS:
                    if other in values:
                        if figure == "p99 ms":
                            row["ratios"][f"{mine}/{other}"] = ratio(values[other], ours)
                        else:
                            row["ratios"][f"{mine}/{other}"] = ratio(ours, values[other])
                if figure != "p99 ms" and copies:
                    row["ratios"][f"{mine}/copy-mlflow"] = ratio(ours, copy_mlflow.get(per_request))
                    row["ratios"][f"{mine}/copy-metricgate"] = ratio(ours, copy_mg.get(per_request))
            rows.append(row)
    return rows


def summary_table(rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> str:
    ratio_names: list[str] = []
    for row in rows:
        for name in row["ratios"]:
            if name not in ratio_names:
                ratio_names.append(name)
    headers = ["workload", "conc", "figure", *labels, *ratio_names]
    table_rows = []
    for row in rows:
        fmt = fmt_ms if row["figure"] == "p99 ms" else fmt_int
        cells = [row["workload"], str(row["concurrency"]), row["figure"]]
        for label in labels:
            value = fmt(row["values"].get(label))
            if label in row["capped"] and row["figure"] != "p99 ms":
                value += "*"
            cells.append(value)
        cells += [fmt_ratio(row["ratios"].get(name)) for name in ratio_names]
        table_rows.append(cells)
    right = [False, True, False] + [True] * (len(headers) - 3)
    text = format_table(headers, table_rows, right=right)
    notes = [
        "p99 ratios are other/metricgate (above 1 = metricgate faster); pts/s ratios metricgate/other.",
        "visible pts/s: points / (send start .. every point read back through the REST API), read-back included.",
    ]
    if any(row["capped"] for row in rows):
        notes.append("* sending hit the time cap: the rate covers only what was sent before it.")
    if any("copy-mlflow" in n for n in ratio_names):
        notes.append(
            "copy-*: best raw COPY rows/s (1 or 2 connections, one commit per batch of one request's rows)."
        )
    return text + "".join(f"\n  {n}" for n in notes)
