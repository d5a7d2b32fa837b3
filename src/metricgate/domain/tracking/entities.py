"""Domain records shared by the API and the stores: frozen, slotted, no I/O."""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# One point of a metric history as the history store returns it, positionally:
# (key, value, timestamp_ms, step, model_id, dataset_name, dataset_digest). A tuple (or a database
# record, which indexes the same way) instead of a ``Metric``: a history page is hundreds of points
# and building an object per point was the largest cost of a get-history request.
MetricPoint = Sequence[Any]

# A point's (model_id, dataset_name, dataset_digest) when it has none of them.
NO_EXTRAS: tuple[None, None, None] = (None, None, None)


def value_rank(value: float) -> tuple[bool, float]:
    """A metric value's place in PostgreSQL's float8 order, which the stored data follows: NaN
    equals NaN and sorts above every number, +Infinity included. Python alone cannot compare NaN."""
    is_nan = value != value
    return (is_nan, 0.0 if is_nan else value)


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """The points of one (run, key) in history order (step, timestamp, value), column by column:
    bulk reads hand tens of thousands of points to the encoder with no object per point."""

    run_id: str
    key: str
    steps: list[int]
    timestamps_ms: list[int]
    values: list[float]
    # Per point (model_id, dataset_name, dataset_digest), or None when no point has any.
    extras: list[tuple[str | None, str | None, str | None]] | None = None

    def __len__(self) -> int:
        return len(self.steps)

    def slice(self, start: int, stop: int) -> MetricSeries:
        return MetricSeries(
            self.run_id,
            self.key,
            self.steps[start:stop],
            self.timestamps_ms[start:stop],
            self.values[start:stop],
            None if self.extras is None else self.extras[start:stop],
        )


@dataclass(frozen=True, slots=True)
class MetricColumns:
    """Plain metric points (no model or dataset) of one request, column by column: the shape
    log-batch decodes into on its hot path and the stream entry is encoded from."""

    keys: list[str]
    values: array[float]  # 'd'
    timestamps_ms: array[int]  # 'q'
    steps: array[int]  # 'q'

    def __len__(self) -> int:
        return len(self.keys)

    def metrics(self) -> list[Metric]:
        return [
            Metric(k, v, t, s)
            for k, v, t, s in zip(
                self.keys, self.values, self.timestamps_ms, self.steps, strict=True
            )
        ]


@dataclass(frozen=True, slots=True)
class Tag:
    key: str
    value: str


@dataclass(frozen=True, slots=True)
class Param:
    key: str
    value: str


# Not frozen: a frozen dataclass assigns every field through object.__setattr__, and the ingest
# hot path builds one Metric per logged point. Treat instances as immutable all the same.
@dataclass(slots=True)
class Metric:
    key: str
    value: float
    timestamp_ms: int
    step: int = 0
    model_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None
    run_id: str | None = None  # set on history/bulk reads, where the run is not implied


@dataclass(frozen=True, slots=True)
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    creation_time: int
    last_update_time: int
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    experiment_id: str
    run_name: str
    user_id: str
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    lifecycle_stage: str


@dataclass(frozen=True, slots=True)
class Dataset:
    name: str
    digest: str
    source_type: str
    source: str
    schema: str | None = None
    profile: str | None = None


@dataclass(frozen=True, slots=True)
class DatasetInput:
    dataset: Dataset
    tags: tuple[Tag, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelOutput:
    model_id: str
    step: int


@dataclass(frozen=True, slots=True)
class Run:
    info: RunInfo
    metrics: tuple[Metric, ...] = ()
    params: tuple[Param, ...] = ()
    tags: tuple[Tag, ...] = ()
    dataset_inputs: tuple[DatasetInput, ...] = ()
    model_inputs: tuple[str, ...] = ()
    model_outputs: tuple[ModelOutput, ...] = ()


@dataclass(frozen=True, slots=True)
class LoggedModel:
    model_id: str
    experiment_id: str
    name: str
    artifact_uri: str
    creation_timestamp_ms: int
    last_updated_timestamp_ms: int
    status: str
    model_type: str | None
    source_run_id: str | None
    status_message: str | None
    tags: tuple[Tag, ...] = ()
    params: tuple[Param, ...] = ()
    metrics: tuple[Metric, ...] = ()


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a search: items plus the opaque token of the next page (None on the last)."""

    items: list[Any] = field(default_factory=list)
    next_page_token: str | None = None


@dataclass(frozen=True, slots=True)
class ArtifactEntry:
    """One entry of an artifact listing, relative to the listed directory."""

    path: str
    is_dir: bool
    file_size: int | None = None
