"""What the layers above ask of the PostgreSQL stores: one narrow Protocol per seam.

Each Protocol lists only the methods its callers use, so a feature depends on what a store does,
not on which store it is; service.py is the one place that picks the ``Pg*`` class behind each.
The artifact stores' Protocols live in stores/artifacts/base.py.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import asyncpg
import orjson

from metricgate.domain.auth.entities import ApiToken, Assignment, Role, RolePermission, User
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.auth.visibility import UNRESTRICTED, Visibility
from metricgate.domain.metrics.chunks import FlushBatch
from metricgate.domain.registry.approvals import ApprovalPolicy, ApprovalRequest
from metricgate.domain.registry.approvals import Decision as ApprovalDecision
from metricgate.domain.registry.approvals import Kind as ApprovalKind
from metricgate.domain.registry.entities import Audit, ModelVersion, RegisteredModel, RegistryEvent
from metricgate.domain.tracking.entities import (
    DatasetInput,
    Experiment,
    LoggedModel,
    Metric,
    MetricSeries,
    ModelOutput,
    Page,
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
from metricgate.domain.webhooks.entities import ClaimedDelivery, Delivery, Webhook

# ---------------------------------------------------------------------- values that cross the seam


@dataclass(frozen=True, slots=True)
class RunRows:
    """Full runs as fetched by one ``_run_rows_sql`` statement, for readers that build MLflow's
    JSON straight from the rows (search and export would otherwise build ~20 entities per run;
    that was most of a 1,000-run page's time).

    ``ids`` lists the runs found, in the order asked for; ``info`` holds each one's kind-0 row.
    Each other field maps a run id to its rows of one kind, ordered as ``_ORDER_WITHIN_RUN`` in
    stores/postgres/runs.py says; a run without rows of a kind is absent from that map. Every row is laid out as the
    table above ``_run_rows_sql`` (same module) says: ``row[2]`` is t1 ... ``row[8]`` t7, ``row[9]`` n1 ...
    ``row[11]`` n3, ``row[12]`` f."""

    ids: list[str]
    info: dict[str, asyncpg.Record]
    params: dict[str, list[asyncpg.Record]]
    tags: dict[str, list[asyncpg.Record]]
    metrics: dict[str, list[asyncpg.Record]]
    dataset_inputs: dict[str, list[asyncpg.Record]]
    model_inputs: dict[str, list[asyncpg.Record]]
    model_outputs: dict[str, list[asyncpg.Record]]


def dataset_input_tags(raw: str | bytes | list[dict[str, str]] | None) -> list[dict[str, str]]:
    """A dataset input's stored tags (jsonb, as text): ``[{"key", "value"}, ...]``."""
    if raw is None:
        return []
    tags = orjson.loads(raw) if isinstance(raw, (str, bytes)) else raw
    return tags if isinstance(tags, list) else []


@dataclass(frozen=True)
class DatasetSummary:
    experiment_id: str
    name: str
    digest: str
    context: str | None


@dataclass(frozen=True)
class LiveCounts:
    abandoned_runs: int
    uploads_open: int
    uploads_committing: int
    deliveries_pending: int
    deliveries_failed: int


# ---------------------------------------------------------------------- the database


class DatabaseHealth(Protocol):
    """Whether PostgreSQL answers, for the readiness probe."""

    async def ping(self) -> bool: ...


# ---------------------------------------------------------------------- experiments


class ExperimentStore(Protocol):
    async def create(
        self,
        name: str,
        artifact_location: str | None,
        tags: Sequence[Tag],
        creator: int | None = None,
    ) -> str:
        """``creator``: the user id given MANAGE on the new experiment in the create's own
        transaction (design-auth B2); None with auth off or for an admin."""
        ...

    async def get(self, experiment_id: int) -> Experiment: ...

    async def get_by_name(self, name: str) -> Experiment: ...

    async def get_many(self, experiment_ids: Sequence[int]) -> list[Experiment]: ...

    async def search(
        self,
        view_type: str,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page: ...

    async def rename(self, experiment_id: int, new_name: str) -> None: ...

    async def delete(self, experiment_id: int, *, audit: AuditContext | None = ...) -> None:
        """The experiment and its runs; with ``audit``, its ``experiment.deleted`` entry in the
        same transaction."""
        ...

    async def restore(self, experiment_id: int) -> None: ...

    async def set_tag(self, experiment_id: int, tag: Tag) -> None: ...

    async def delete_tag(self, experiment_id: int, key: str) -> None: ...


class DatasetSummaries(Protocol):
    async def search(self, experiment_ids: Sequence[int]) -> list[DatasetSummary]: ...


# ---------------------------------------------------------------------- runs


class RunLookup(Protocol):
    """A run's existence and state, for features that attach things to a run (uploads)."""

    async def get(self, run_id: str) -> Run: ...

    async def experiment_of(self, run_id: str) -> str: ...

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

    async def delete(self, run_id: str, *, audit: AuditContext | None = ...) -> None:
        """With ``audit``, its ``run.deleted`` entry in the same transaction."""
        ...

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
        *,
        visibility: Visibility = UNRESTRICTED,
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


class UploadSweeps(Protocol):
    """Sessions past their time: expired, or a commit whose gateway stopped (uploads/sweeper.py)."""

    async def get(self, session_id: str) -> UploadSession: ...

    async def expire_due(self, limit: int = ...) -> list[UploadSession]: ...

    async def claim_stale_commits(self, lease_s: float, limit: int = ...) -> list[str]: ...

    async def live_staging_ids(self) -> set[str]: ...


class UploadStore(UploadCommits, UploadSweeps, HiddenUploads, Protocol):
    """Upload sessions, their files and parts: the client-facing steps and all of the above."""

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


class ReferenceStore(Protocol):
    """Artifact references: existing objects registered as run artifacts without a copy."""

    async def put(self, ref: ArtifactReference) -> ArtifactReference: ...

    async def list_for_run(self, run_id: str) -> list[ArtifactReference]: ...

    async def delete(self, run_id: str, rel_path: str, *, audit: AuditContext | None = ...) -> None:
        """With ``audit``, the ``artifact_reference.deleted`` entry in the delete's transaction."""
        ...

    async def at(self, path: str) -> ArtifactReference | None: ...

    async def at_or_under(self, path: str) -> list[ArtifactReference]: ...

    async def delete_at_or_under(self, path: str) -> None: ...


# ---------------------------------------------------------------------- metrics


class MetricBatchWriter(Protocol):
    """Where the flusher commits a batch read from the streams (ingest/flusher.py)."""

    async def write(self, batch: FlushBatch) -> None: ...


class MetricAppender(Protocol):
    """Where the direct sink writes each request's metrics (ingest/sink.py)."""

    async def append(self, run_id: str, metrics: Sequence[Metric]) -> None: ...


class MetricWriter(MetricBatchWriter, MetricAppender, Protocol):
    """Both ways into the metric tables."""


class MetricHistory(Protocol):
    async def history(
        self, run_id: str, key: str, max_results: int, page_token: str | None
    ) -> Page: ...

    async def bulk_interval(
        self,
        run_ids: Sequence[str],
        key: str,
        max_results: int,
        start_step: int | None,
        end_step: int | None,
    ) -> list[MetricSeries]: ...


# ---------------------------------------------------------------------- logged models


class LoggedModelStore(Protocol):
    async def create(
        self,
        experiment_id: int,
        name: str | None,
        model_type: str | None,
        source_run_id: str | None,
        params: Sequence[Param],
        tags: Sequence[Tag],
    ) -> LoggedModel: ...

    async def get(self, model_id: str, allow_deleted: bool = ...) -> LoggedModel: ...

    async def experiment_of(self, model_id: str) -> str:
        """The model's experiment id, deleted models included; NotFound if there is none."""
        ...

    async def finalize(self, model_id: str, status: str) -> LoggedModel: ...

    async def set_tags(self, model_id: str, tags: Sequence[Tag]) -> None: ...

    async def log_params(self, model_id: str, params: Sequence[Param]) -> None: ...

    async def delete_tag(self, model_id: str, key: str) -> None: ...

    async def delete(self, model_id: str, *, audit: AuditContext | None = ...) -> None:
        """With ``audit``, its ``logged_model.deleted`` entry in the same transaction."""
        ...

    async def search(
        self,
        experiment_ids: list[int],
        filter_string: str | None,
        order_by: list[dict[str, object]],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page: ...


# ---------------------------------------------------------------------- model registry


class RegistryStore(Protocol):
    """The registry's rows and audit history, written as one (registry/service.py)."""

    async def create_registered_model(
        self,
        audit: Audit,
        name: str,
        tags: Sequence[Tag],
        description: str | None,
        creator: int | None = None,
    ) -> RegisteredModel:
        """``creator``: the user id given MANAGE on the new model in the create's own
        transaction (design-auth B2); None with auth off or for an admin."""
        ...

    async def rename_registered_model(
        self, audit: Audit, name: str, new_name: str
    ) -> RegisteredModel: ...

    async def update_registered_model(
        self, audit: Audit, name: str, description: str | None
    ) -> RegisteredModel: ...

    async def delete_registered_model(
        self, audit: Audit, name: str, *, audit_log: AuditContext | None = ...
    ) -> None:
        """With ``audit_log`` (access control on: who, from where), the ``model.deleted``
        entry of the audit log in the delete's transaction, beside its registry event."""
        ...

    async def set_registered_model_tag(self, audit: Audit, name: str, tag: Tag) -> None: ...

    async def delete_registered_model_tag(self, audit: Audit, name: str, tag_key: str) -> None: ...

    async def get_registered_model(self, name: str) -> RegisteredModel: ...

    async def search_registered_models(
        self,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page: ...

    async def create_model_version(
        self,
        audit: Audit,
        name: str,
        source: str,
        run_id: str | None,
        tags: Sequence[Tag],
        run_link: str | None,
        description: str | None,
        model_id: str | None,
    ) -> ModelVersion: ...

    async def update_model_version(
        self, audit: Audit, name: str, version: int, description: str | None
    ) -> ModelVersion: ...

    async def transition_stage(
        self, audit: Audit, name: str, version: int, stage: str, archive_existing: bool
    ) -> ModelVersion: ...

    async def delete_model_version(
        self, audit: Audit, name: str, version: int, *, audit_log: AuditContext | None = ...
    ) -> None:
        """With ``audit_log``, the ``version.deleted`` audit entry in the delete's transaction."""
        ...

    async def set_model_version_tag(
        self, audit: Audit, name: str, version: int, tag: Tag
    ) -> None: ...

    async def delete_model_version_tag(
        self, audit: Audit, name: str, version: int, key: str
    ) -> None: ...

    async def set_alias(self, audit: Audit, name: str, alias: str, version: int) -> None: ...

    async def delete_alias(self, audit: Audit, name: str, alias: str) -> None: ...

    async def owner_artifact_location(self, field: str, ident: str) -> str | None: ...

    async def get_model_version(self, name: str, version: int) -> ModelVersion: ...

    async def get_version_by_alias(self, name: str, alias: str) -> ModelVersion: ...

    async def get_latest_versions(self, name: str, stages: Sequence[str]) -> list[ModelVersion]: ...

    async def search_model_versions(
        self,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> Page: ...

    async def history(
        self, name: str, version: int | None, max_results: int, page_token: str | None
    ) -> tuple[list[RegistryEvent], str | None]: ...


class ApprovalStore(Protocol):
    """Registry approval policies, requests and votes (docs/design-auth.md B6). The gated
    changes lock the model row and look the policy up in the change's own transaction; a vote
    that reaches the quorum applies the change in its own. Unknown ids raise NotFound, a closed
    request Conflict, a vote the caller may not cast ApprovalForbidden."""

    async def create_policy(
        self,
        model_pattern: str,
        kind: ApprovalKind,
        target: str,
        approvals: int,
        approver_permission: Permission,
        created_by: str,
        *,
        audit: Audit | None = ...,
    ) -> ApprovalPolicy: ...

    async def list_policies(self) -> builtins.list[ApprovalPolicy]: ...

    async def delete_policy(
        self, policy_id: int, deleted_by: str, *, audit: Audit | None = ...
    ) -> ApprovalPolicy: ...

    async def transition_or_request(
        self, audit: Audit, name: str, version: int, stage: str, archive_existing: bool
    ) -> ModelVersion | ApprovalRequest: ...

    async def set_alias_or_request(
        self, audit: Audit, name: str, alias: str, version: int
    ) -> ApprovalRequest | None: ...

    async def get_request(self, request_id: int) -> ApprovalRequest: ...

    async def list_requests(
        self,
        state: str | None,
        model_name: str | None,
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility = UNRESTRICTED,
    ) -> tuple[builtins.list[ApprovalRequest], str | None]:
        """Newest first; only requests on models ``visibility`` shows, filtered in the SQL so
        every page is full."""
        ...

    async def vote(
        self, request_id: int, audit: Audit, decision: ApprovalDecision, level: Permission
    ) -> ApprovalRequest: ...

    async def cancel(self, request_id: int, audit: Audit, is_admin: bool) -> ApprovalRequest: ...


# ---------------------------------------------------------------------- webhooks


class WebhookStore(Protocol):
    """Webhooks and their delivery log, as the operators' API manages them (api/webhooks.py)."""

    async def create(
        self,
        url: str,
        events: Sequence[str],
        model_name: str | None,
        description: str | None,
        active: bool,
    ) -> tuple[Webhook, str]: ...

    async def list(self, model_name: str | None = ..., limit: int = ...) -> list[Webhook]: ...

    async def get(self, webhook_id: str) -> Webhook: ...

    async def update(self, webhook_id: str, changes: dict[str, Any]) -> Webhook: ...

    async def delete(self, webhook_id: str, *, audit: AuditContext | None = ...) -> None:
        """With ``audit``, the ``webhook.deleted`` audit entry in the delete's transaction."""
        ...

    async def rotate_secret(self, webhook_id: str) -> tuple[Webhook, str]: ...

    async def enqueue_ping(self, webhook_id: str) -> str: ...

    async def list_deliveries(
        self, webhook_id: str, limit: int, state: str | None = ...
    ) -> builtins.list[Delivery]: ...  # ``list`` here is the method above


class DeliveryStore(Protocol):
    """The delivery outbox, as the dispatcher drains it (webhooks/dispatcher.py)."""

    async def claim(
        self, limit: int, skip_webhook_ids: list[str], lease_s: float
    ) -> list[ClaimedDelivery]: ...

    async def record_attempt(
        self,
        delivery_id: str,
        attempt: int,
        outcome: str,
        http_status: int | None,
        error: str | None,
        duration_ms: int,
        retry_delay_s: float = ...,
    ) -> bool: ...

    async def purge_completed(self, older_than_s: float, batch: int = ...) -> int: ...


# ---------------------------------------------------------------------- operators' live view


class LiveCountSource(Protocol):
    """The PostgreSQL side of the live view (ingest/live_status.py)."""

    async def counts(self) -> LiveCounts: ...


# ---------------------------------------------------------------------- access control


class UserCredentials(NamedTuple):
    """What a password check needs; ``password_hash`` is None for a user who has none yet."""

    user: User
    password_hash: str | None
    cred_version: int


class TokenCredentials(NamedTuple):
    """A live (not revoked, not expired) token and its owner."""

    user: User
    token: ApiToken
    cred_version: int


class AuthEpochs(NamedTuple):
    """``auth_state``'s two counters: a move of ``credentials`` makes every cached credential
    (and grant list) stale, a move of ``grants`` only the cached grant lists."""

    credentials: int
    grants: int


@dataclass(frozen=True, slots=True)
class PermissionRow:
    """One grant a user holds through one of its roles (MLflow's users/permissions/list row)."""

    role_id: int
    role_name: str
    workspace: str
    resource_type: ResourceType
    resource_pattern: str
    permission: Permission


@dataclass(frozen=True, slots=True)
class GrantHolder:
    """One grant matching a resource (its own pattern or ``*``), the role holding it and the
    users holding that role (a hidden per-user role: its owner; any other role: its assignees)."""

    grant_id: int
    role_id: int
    role_name: str
    resource_pattern: str
    permission: Permission
    usernames: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who makes a change: passed into an AuthStore write, which records its audit entry
    (docs/design-auth.md B7) in the change's own transaction, so a change and its entry commit
    together or not at all. ``method`` is "basic", "token" or "system"."""

    actor_id: int | None
    actor: str | None
    method: str | None
    client_addr: str | None
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at_ms: int
    actor_id: int | None
    actor: str | None
    auth_method: str | None  # "basic", "token" or "system"
    client_addr: str | None
    action: str
    target_type: str | None
    target_id: str | None
    details: dict[str, Any]
    request_id: str | None


@dataclass(frozen=True, slots=True)
class ImportedRole:
    """A named role read from another server's auth database (``users import-mlflow``)."""

    name: str
    description: str | None
    grants: tuple[Grant, ...]


@dataclass(frozen=True, slots=True)
class ImportedUser:
    """A user read from another server's auth database: the hash as that server made it (a
    werkzeug hash from MLflow), the grants of its per-user role, and the names of the
    ``ImportedRole``s assigned to it."""

    username: str
    password_hash: str | None
    is_admin: bool
    grants: tuple[Grant, ...]
    roles: tuple[str, ...]

    def __repr__(self) -> str:  # never print the hash
        return f"ImportedUser(username={self.username!r}, is_admin={self.is_admin})"


@dataclass(frozen=True, slots=True)
class AuthImport:
    users: tuple[ImportedUser, ...]
    roles: tuple[ImportedRole, ...]


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    """What ``AuthStore.import_users`` wrote, and what it left alone (``skip_existing``)."""

    users: tuple[str, ...]
    roles: tuple[str, ...]
    grants: int
    assignments: int
    skipped_users: tuple[str, ...]
    skipped_roles: tuple[str, ...]


class AuthStore(Protocol):
    """Users, roles, grants, API tokens and the audit log (docs/design-auth.md B2, B3, B7).

    Unknown users, roles, grants or tokens raise NotFound; duplicates raise AlreadyExists. A change
    to what a credential proves (password, admin flag, user delete, token revoke) bumps the
    user's ``cred_version`` and the credentials epoch; a change to grants, roles or assignments
    bumps the grants epoch (additions too: RoleAdmin and workspace checks do not re-read), each
    in the change's own transaction, so each process's caches learn they are stale. The one
    exception is ``grant_creator_manage``, written on every create: it bumps nothing; the
    authenticator drops that user's cached grants and tells the other processes, and re-reads
    them where a missing grant would deny wrongly (``Authenticator.user_grants_changed``,
    ``CallerAccess``).

    Every write that changes users, tokens, roles or grants takes ``audit``: given, the write
    appends its audit entry (action, target, details such as the level replaced) in its own
    transaction; None (tests) writes none."""

    # users
    async def create_user(
        self,
        username: str,
        password_hash: str,
        is_admin: bool,
        *,
        audit: AuditContext | None = ...,
        details: dict[str, Any] | None = ...,
    ) -> User:
        """With ``audit``, its ``user.created`` entry (``details`` added) commits with the user."""
        ...

    async def get_user(self, username: str) -> User: ...

    async def get_user_by_id(self, user_id: int) -> User: ...

    async def list_users(self) -> builtins.list[User]: ...

    async def roles_by_user(self) -> dict[int, builtins.list[Role]]:
        """Every user's roles, hidden per-user roles included (users/list answers them)."""
        ...

    async def user_credentials(self, username: str) -> UserCredentials | None: ...

    async def set_password(
        self, username: str, password_hash: str, *, audit: AuditContext | None = ...
    ) -> None: ...

    async def set_admin(
        self, username: str, is_admin: bool, *, audit: AuditContext | None = ...
    ) -> None: ...

    async def delete_user(self, username: str, *, audit: AuditContext | None = ...) -> None: ...

    async def rehash_password(self, user_id: int, old_hash: str, new_hash: str) -> bool:
        """Replace the user's hash by a new one of the same password, only if the stored hash is
        still ``old_hash`` (compare-and-set: a password changed meanwhile wins); True when it
        did. Moves no epoch and no ``cred_version``: what the credential proves is unchanged."""
        ...

    async def import_users(
        self,
        data: AuthImport,
        *,
        skip_existing: bool,
        audit: AuditContext,
        details: dict[str, Any] | None = ...,
    ) -> ImportOutcome:
        """Create the users, roles, grants and assignments of ``data`` in one transaction, with
        an audit entry per user and role and one ``users.imported`` summary (each carrying
        ``details``: where the import came from). A username or role name that exists raises
        AlreadyExists naming them all, and nothing is written, unless ``skip_existing``: then
        those users and roles are left untouched, and the grants and assignments that came with
        them are not imported."""
        ...

    async def any_admin(self) -> bool: ...

    async def create_admin_if_none(
        self,
        username: str,
        password_hash: str,
        *,
        audit: AuditContext | None = ...,
        details: dict[str, Any] | None = ...,
    ) -> bool:
        """Create ``username`` as an admin unless an admin exists; True when it created one.
        Serialised by an advisory lock so concurrent gateways create one. AlreadyExists when no
        admin exists but the name belongs to a non-admin. With ``audit``, the ``user.created``
        entry (``details`` added to it) commits with the user."""
        ...

    async def reset_admin(
        self,
        username: str,
        password_hash: str,
        *,
        audit: AuditContext | None = ...,
        details: dict[str, Any] | None = ...,
    ) -> User:
        """Set ``username``'s password and make them an admin, with its ``user.admin_reset``
        entry, in one transaction (``metricgate users create-admin --reset``)."""
        ...

    # tokens
    async def create_token(
        self,
        user_id: int,
        name: str,
        digest: bytes,
        hint: str,
        expires_at_ms: int | None,
        *,
        audit: AuditContext | None = ...,
    ) -> ApiToken:
        """AlreadyExists when the user has a live token of that name."""
        ...

    async def token_credentials(self, digest: bytes) -> TokenCredentials | None:
        """None for an unknown, revoked or expired token."""
        ...

    async def dead_token_reason(self, digest: bytes) -> str | None:
        """Why a token failed, for the audit log: "revoked", "expired", or None (unknown)."""
        ...

    async def list_tokens(self, user_id: int) -> builtins.list[ApiToken]: ...

    async def revoke_token(
        self, user_id: int | None, token_id: int, *, audit: AuditContext | None = ...
    ) -> ApiToken:
        """Revoke a live token; ``user_id`` None: whoever owns it (an admin's call)."""
        ...

    async def touch_token(self, token_id: int) -> None:
        """Record use; writes at most once a minute per token."""
        ...

    # grants on the hidden per-user role
    async def user_grants(self, user_id: int) -> builtins.list[Grant]:
        """All the user's grants from all its roles."""
        ...

    async def grant_user(
        self,
        username: str,
        resource_type: ResourceType,
        pattern: str,
        permission: Permission,
        *,
        replace: bool,
        audit: AuditContext | None = ...,
        if_no_model: Exception | None = ...,
    ) -> Permission | None:
        """Grant on the user's hidden role; the level replaced (None if new). An existing grant
        raises AlreadyExists unless ``replace`` (then it is updated in place: audited as
        ``grant.set``, else ``grant.created``). ``if_no_model``: raised instead when the grant
        is on a registered-model name that no model has, checked under the name's lock (a
        caller who is not an admin may not set grants on a name in advance)."""
        ...

    async def revoke_user(
        self,
        username: str,
        resource_type: ResourceType,
        pattern: str,
        *,
        audit: AuditContext | None = ...,
        if_no_model: Exception | None = ...,
    ) -> Permission:
        """Remove the grant from the user's hidden role; the level it had. ``if_no_model``:
        as for ``grant_user``."""
        ...

    async def user_permission_rows(self, username: str) -> builtins.list[PermissionRow]: ...

    async def grant_creator_manage(
        self, user_id: int, resource_type: ResourceType, pattern: str
    ) -> None:
        """The creator of an experiment or model gets MANAGE on it (upsert). Moves no epoch:
        MANAGE only adds access (see the class docstring)."""
        ...

    async def who_holds(
        self, resource_type: ResourceType, pattern: str
    ) -> builtins.list[GrantHolder]: ...

    # roles
    async def create_role(
        self,
        name: str,
        workspace: str,
        description: str | None,
        *,
        audit: AuditContext | None = ...,
    ) -> Role: ...

    async def get_role(self, role_id: int) -> Role: ...

    async def list_roles(self, workspace: str | None = ...) -> builtins.list[Role]: ...

    async def update_role(
        self,
        role_id: int,
        name: str | None,
        description: str | None,
        *,
        audit: AuditContext | None = ...,
    ) -> Role: ...

    async def delete_role(self, role_id: int, *, audit: AuditContext | None = ...) -> None: ...

    async def add_role_permission(
        self,
        role_id: int,
        resource_type: ResourceType,
        pattern: str,
        permission: Permission,
        *,
        audit: AuditContext | None = ...,
    ) -> RolePermission: ...

    async def set_role_permission(
        self,
        role_id: int,
        resource_type: ResourceType,
        pattern: str,
        permission: Permission,
        *,
        audit: AuditContext | None = ...,
    ) -> tuple[RolePermission, Permission | None]:
        """Add the grant, or update the role's grant on that resource in place; with the level
        replaced (None if new). Audited as ``grant.set``."""
        ...

    async def remove_role_permission(
        self, role_permission_id: int, *, audit: AuditContext | None = ...
    ) -> None: ...

    async def list_role_permissions(self, role_id: int) -> builtins.list[RolePermission]: ...

    async def update_role_permission(
        self, role_permission_id: int, permission: Permission, *, audit: AuditContext | None = ...
    ) -> RolePermission: ...

    async def assign_role(
        self, username: str, role_id: int, *, audit: AuditContext | None = ...
    ) -> Assignment: ...

    async def unassign_role(
        self, username: str, role_id: int, *, audit: AuditContext | None = ...
    ) -> None: ...

    async def list_user_roles(self, username: str) -> builtins.list[Role]: ...

    async def list_role_users(self, role_id: int) -> builtins.list[Assignment]: ...

    # invalidation
    async def auth_epochs(self) -> AuthEpochs:
        """Polled by every process once a second (docs/design-auth.md B3)."""
        ...

    async def user_cred_version(self, user_id: int) -> int: ...

    # audit
    async def append_audit(
        self,
        actor_id: int | None,
        actor: str | None,
        auth_method: str | None,
        client_addr: str | None,
        action: str,
        target_type: str | None,
        target_id: str | None,
        details: dict[str, Any],
        request_id: str | None = ...,
    ) -> int: ...

    async def list_audit(
        self,
        max_results: int,
        page_token: str | None,
        *,
        actor: str | None = ...,
        action: str | None = ...,
        since_ms: int | None = ...,
        until_ms: int | None = ...,
    ) -> tuple[builtins.list[AuditEntry], str | None]:
        """Newest first, keyset-paged by id; ``since_ms`` inclusive, ``until_ms`` exclusive."""
        ...
