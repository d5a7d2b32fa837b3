"""What the layers above ask of the PostgreSQL stores: one narrow Protocol per seam.

Each Protocol lists only the methods its callers use, so a feature depends on what a store does,
not on which store it is; service.py is the one place that picks the ``Pg*`` class behind each.
The artifact stores' Protocols live in stores/artifacts/base.py.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from metricgate.domain.tracking.entities import (
    DatasetInput,
    ModelOutput,
    Param,
    Run,
    RunInfo,
    Tag,
)
from metricgate.domain.uploads.entities import (
    ArtifactReference,
    NewFile,
    PartTarget,
    ReceivedPart,
    UploadSession,
)
from metricgate.stores.postgres.runs import RunRows

# ---------------------------------------------------------------------- runs


class RunLookup(Protocol):
    """A run's existence and state, for features that attach things to a run (uploads)."""

    async def get(self, run_id: str) -> Run: ...

    async def require_exists(self, run_id: str) -> None: ...

    async def require_active(self, run_id: str) -> None: ...


class IdleRuns(Protocol):
    """Running runs gone quiet, for the abandoned-run janitor."""

    async def running_idle_since(self, cutoff_ms: int, limit: int = ...) -> dict[str, int]: ...

    async def mark_abandoned(
        self, run_id: str, tag_key: str, last_activity_ms: int, *, fail: bool
    ) -> None: ...


class RunStore(RunLookup, Protocol):
    """Runs with their params, tags, inputs and outputs, as the tracking API reads and writes them."""

    async def create(
        self,
        experiment_id: int,
        user_id: str,
        start_time: int | None,
        run_name: str | None,
        tags: Sequence[Tag],
    ) -> Run: ...

    async def get_rows(self, run_id: str) -> RunRows: ...

    async def artifact_uri(self, run_id: str) -> str: ...

    def forget_active_runs(self) -> None: ...

    async def update(
        self, run_id: str, status: str | None, end_time: int | None, run_name: str | None
    ) -> RunInfo: ...

    async def delete(self, run_id: str) -> None: ...

    async def restore(self, run_id: str) -> None: ...

    async def set_tag(self, run_id: str, tag: Tag) -> None: ...

    async def delete_tag(self, run_id: str, key: str) -> None: ...

    async def log_params_and_tags(
        self, run_id: str, params: Sequence[Param], tags: Sequence[Tag]
    ) -> None: ...

    async def append_model_history(self, run_id: str, model_json: str) -> None: ...

    async def log_inputs(
        self, run_id: str, datasets: Sequence[DatasetInput], model_ids: Sequence[str]
    ) -> None: ...

    async def log_outputs(self, run_id: str, outputs: Sequence[ModelOutput]) -> None: ...

    async def search_rows(
        self,
        experiment_ids: list[int],
        filter_string: str | None,
        view_type: str,
        max_results: int,
        order_by: list[str],
        page_token: str | None,
    ) -> tuple[RunRows, str | None]: ...


# ---------------------------------------------------------------------- uploads


class UploadCommits(Protocol):
    """What rolls a session's commit forward (uploads/commit.py)."""

    async def get(self, session_id: str) -> UploadSession: ...

    async def heartbeat(self, session_id: str) -> None: ...

    async def mark_file_committed(self, session_id: str, file_index: int) -> None: ...

    async def finish(self, session_id: str, state: str, failure: str | None = ...) -> None: ...


class HiddenUploads(Protocol):
    """Destinations a commit in progress hides from readers (uploads/visible_store.py)."""

    async def hidden_destinations(self, path: str) -> list[str]: ...


class UploadStore(UploadCommits, HiddenUploads, Protocol):
    """Upload sessions, their files and parts: the client-facing steps and the sweeper's."""

    async def create(
        self,
        *,
        session_id: str,
        run_id: str,
        rel_path: str,
        dest_path: str,
        is_directory: bool,
        part_size: int,
        ttl_s: float,
        actor: str | None,
        files: Sequence[NewFile],
    ) -> UploadSession: ...

    async def part_target(self, session_id: str, file_index: int) -> PartTarget: ...

    async def record_part(
        self, session_id: str, file_index: int, part: ReceivedPart, ttl_s: float
    ) -> bool: ...

    async def begin_commit(
        self, session_id: str, check: Callable[[UploadSession, bool], None]
    ) -> tuple[UploadSession, bool]: ...

    async def abort(self, session_id: str) -> tuple[UploadSession, bool]: ...

    async def expire_due(self, limit: int = ...) -> list[UploadSession]: ...

    async def claim_stale_commits(self, lease_s: float, limit: int = ...) -> list[str]: ...

    async def live_staging_ids(self) -> set[str]: ...


class ReferenceStore(Protocol):
    """Artifact references: existing objects registered as run artifacts without a copy."""

    async def put(self, ref: ArtifactReference) -> ArtifactReference: ...

    async def list_for_run(self, run_id: str) -> list[ArtifactReference]: ...

    async def delete(self, run_id: str, rel_path: str) -> None: ...

    async def at(self, path: str) -> ArtifactReference | None: ...

    async def at_or_under(self, path: str) -> list[ArtifactReference]: ...

    async def delete_at_or_under(self, path: str) -> None: ...
