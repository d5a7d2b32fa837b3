"""Workload shapes and request planning for the ingest benchmark (pure code, no I/O).

A workload is R runs x S steps x K metric keys. Each ``runs/log-batch`` request carries B
consecutive steps of one run, all K keys for each of those steps (B x K metrics). A run's
requests are sent strictly in step order, one in flight at a time, like a training process
that logs as it goes; C is the number of requests in flight overall. With R < C only R requests
can be in flight, so the effective concurrency is min(R, C).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# MLflow's log-batch limits (mlflow/utils/validation.py): at most 1000 metrics, 1,000,000 bytes.
MAX_METRICS_PER_REQUEST = 1000
# A fixed base for the points' timestamps (ms) so that two runs of the benchmark send the same
# bodies; step s of every run is logged at BASE_TIMESTAMP_MS + s.
BASE_TIMESTAMP_MS = 1_700_000_000_000
DEFAULT_SEED = 20240501


class WorkloadError(ValueError):
    """An impossible workload (non-positive sizes, too many metrics per request)."""


@dataclass(frozen=True)
class Workload:
    name: str
    runs: int  # R
    steps: int  # S, per run
    keys: int  # K, metric keys per step
    steps_per_request: int  # B
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        for field in ("runs", "steps", "keys", "steps_per_request"):
            if getattr(self, field) < 1:
                raise WorkloadError(f"{field} must be at least 1, got {getattr(self, field)}")
        if self.metrics_per_request > MAX_METRICS_PER_REQUEST:
            raise WorkloadError(
                f"{self.steps_per_request} steps x {self.keys} keys = {self.metrics_per_request} metrics per "
                f"request; MLflow's log-batch allows at most {MAX_METRICS_PER_REQUEST}"
            )

    @property
    def metrics_per_request(self) -> int:
        """Metrics in a full request (the last request of a run may carry fewer steps)."""
        return min(self.steps_per_request, self.steps) * self.keys

    @property
    def requests_per_run(self) -> int:
        return -(-self.steps // self.steps_per_request)

    @property
    def total_requests(self) -> int:
        return self.runs * self.requests_per_run

    @property
    def points_per_run(self) -> int:
        return self.steps * self.keys

    @property
    def total_points(self) -> int:
        return self.runs * self.points_per_run

    def key_names(self) -> list[str]:
        width = max(3, len(str(self.keys - 1)))
        return [f"metric_{k:0{width}d}" for k in range(self.keys)]

    def request_steps(self, index: int) -> range:
        """The steps carried by a run's ``index``-th request (0-based)."""
        if not 0 <= index < self.requests_per_run:
            raise IndexError(index)
        start = index * self.steps_per_request
        return range(start, min(start + self.steps_per_request, self.steps))

    def scaled(self, **changes: Any) -> Workload:
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        return (
            f"{self.runs} runs x {self.steps} steps x {self.keys} keys, "
            f"{self.steps_per_request} step(s)/request = {self.metrics_per_request} metrics/request"
        )


# The workloads: (a) many runs, small requests; (b) fewer runs, big batches.
PRESETS: dict[str, Workload] = {
    "a": Workload("a", runs=200, steps=100, keys=10, steps_per_request=1),
    "b": Workload("b", runs=50, steps=200, keys=100, steps_per_request=10),
}
# The concurrencies each preset is measured at by default.
PRESET_CONCURRENCY: dict[str, tuple[int, ...]] = {"a": (64, 256), "b": (50,)}
# --quick: the same shapes, scaled down for a smoke run of a few seconds.
QUICK: dict[str, Workload] = {
    "a": Workload("a-quick", runs=20, steps=10, keys=10, steps_per_request=1),
    "b": Workload("b-quick", runs=5, steps=20, keys=100, steps_per_request=10),
}
QUICK_CONCURRENCY: dict[str, tuple[int, ...]] = {"a": (8, 32), "b": (5,)}


def metric_value(seed: int, run: int, key: int, step: int) -> float:
    """A deterministic value in [0, 1) for one point: the same inputs give the same value on every
    machine, and neighbouring points differ (so MLflow's dedup never folds two of them)."""
    x = (
        seed * 0x9E3779B1 + run * 0x85EBCA77 + key * 0xC2B2AE3D + step * 0x27D4EB2F
    ) & 0xFFFFFFFFFFFF
    x ^= x >> 23
    x = (x * 0x2127599BF4325C37) & 0xFFFFFFFFFFFF
    x ^= x >> 29
    return x / float(1 << 48)


def batch_metrics(
    workload: Workload, run: int, request_index: int, key_names: list[str]
) -> list[dict[str, object]]:
    """The ``metrics`` list of one log-batch request: for each step, every key."""
    seed = workload.seed
    out: list[dict[str, object]] = []
    for step in workload.request_steps(request_index):
        ts = BASE_TIMESTAMP_MS + step
        for k, name in enumerate(key_names):
            out.append(
                {
                    "key": name,
                    "value": metric_value(seed, run, k, step),
                    "timestamp": ts,
                    "step": step,
                }
            )
    return out


def iter_copy_rows(
    workload: Workload, run_ids: list[str]
) -> Iterator[tuple[str, str, int, int, float]]:
    """(run_id, key, step, timestamp_ms, value) for every point, request by request in send order
    (round-robin over runs), as the raw COPY baseline loads them."""
    names = workload.key_names()
    seed = workload.seed
    for request_index in range(workload.requests_per_run):
        for run, run_id in enumerate(run_ids):
            for step in workload.request_steps(request_index):
                ts = BASE_TIMESTAMP_MS + step
                for k, name in enumerate(names):
                    yield run_id, name, step, ts, metric_value(seed, run, k, step)


def parse_concurrency(values: list[str] | None) -> tuple[int, ...]:
    """``["64,256", "8"]`` -> ``(64, 256, 8)``; each value must be at least 1."""
    out: list[int] = []
    for value in values or ():
        for part in value.split(","):
            part = part.strip()
            if not part:
                continue
            try:
                number = int(part)
            except ValueError:
                raise WorkloadError(f"concurrency must be an integer, got {part!r}") from None
            if number < 1:
                raise WorkloadError(f"concurrency must be at least 1, got {number}")
            out.append(number)
    return tuple(out)
