"""Settings from ``METRICGATE_*`` environment variables; the only place the environment is read.

Each setting is declared once, as a dataclass field made by ``setting()``: its variable, default,
bounds and the sentence README's configuration table shows. The reader (``Settings.from_env``),
the range checks and that table (``python -m metricgate.config``, kept equal to README.md by a
test) are all derived from the declarations; only rules that tie two settings together are
written out, in ``Settings.validate``. The few variables of other programs that metricgate follows
(``MLFLOW_TRACKING_URI``, ``XDG_CACHE_HOME``, ``PROMETHEUS_MULTIPROC_DIR``) have their readers at
the end of this module.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metricgate.domain.auth.client_address import parse_networks
from metricgate.domain.auth.rules import MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH, check_username
from metricgate.domain.errors import InvalidParameter

ENV_PREFIX = "METRICGATE_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def mask_url(url: str | None) -> str | None:
    """Hide the password of a URL so settings can be logged."""
    if not url:
        return url
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


@dataclass(frozen=True)
class Declared:
    """What a settings field is, beyond its Python default."""

    env: str  # the variable's name without ENV_PREFIX
    help: str  # README's "Meaning" column (Markdown)
    shown: str | None = None  # README's "Default" column when the default alone would mislead
    minimum: float | None = None  # inclusive
    above: float | None = None  # exclusive lower bound ("must be positive": above=0)
    maximum: float | None = None  # inclusive
    choices: tuple[str, ...] = ()
    normalize: Callable[[str], str] | None = None  # applied to a text value before checks
    env_default: Callable[[], Any] | None = None  # a default that depends on the process (cwd)


def setting(default: Any, env: str, help: str, **declared: Any) -> Any:
    """A settings field read from ``METRICGATE_<env>``."""
    return field(default=default, metadata={"setting": Declared(env, help, **declared)})


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class HttpSettings:
    host: str = setting("127.0.0.1", "HOST", "Listen address.")
    port: int = setting(5000, "PORT", "Listen port (1–65535).", minimum=1, maximum=65535)  # noqa: RUF001  # README prints the en dash
    # MLflow's log-batch limit is 1 MB of JSON; artifacts have their own streaming path.
    max_body_bytes: int = setting(
        4 * 1024 * 1024,
        "MAX_BODY_BYTES",
        "Largest accepted request body.",
        shown="`4194304` (4 MiB)",
        above=0,
    )
    shutdown_timeout_s: float = setting(
        30.0, "SHUTDOWN_TIMEOUT_S",
        "On SIGTERM/SIGINT, how long in-flight requests may take to finish before they are cancelled.",
        minimum=0,
    )  # fmt: skip
    access_log: bool = setting(
        False, "ACCESS_LOG", "Log every request (`true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`)."
    )


@dataclass(frozen=True)
class PostgresSettings:
    url: str = setting(
        "postgresql://postgres@127.0.0.1:5432/metricgate", "DATABASE_URL",
        "PostgreSQL for metadata and metrics (`postgresql://` or `postgres://`). Its password is masked in logs.",
    )  # fmt: skip
    pool_min_size: int = setting(2, "DB_POOL_MIN", "Smallest connection pool size.", minimum=0)
    pool_max_size: int = setting(16, "DB_POOL_MAX", "Largest connection pool size.", minimum=1)
    # A request waits at most this long for a connection before answering 503.
    acquire_timeout_s: float = setting(
        10.0, "DB_ACQUIRE_TIMEOUT_S",
        "How long a request waits for a pooled connection before the server answers 503.", above=0,
    )  # fmt: skip
    command_timeout_s: float = setting(
        60.0, "DB_COMMAND_TIMEOUT_S", "Timeout for a single SQL command.", above=0
    )
    # Reads whose cost the client's input decides (searches, metric history, GraphQL) run on a
    # pool of their own, so a burst of expensive searches waits for a read connection instead of
    # taking the ones the flusher and the write path need; PostgreSQL cancels any such statement
    # that runs longer than the timeout (answered 400, not "database unavailable").
    read_pool_max_size: int = setting(
        8, "DB_READ_POOL_MAX",
        "Connections of the separate pool for reads whose cost the client decides (searches, metric "
        "history, GraphQL), opened as reads come. Expensive reads queue there (503 + `Retry-After` after "
        "`DB_ACQUIRE_TIMEOUT_S`) and never take the connections of the write path and the flusher.",
        minimum=1,
    )  # fmt: skip
    read_statement_timeout_s: float = setting(
        30.0, "DB_READ_STATEMENT_TIMEOUT_S",
        "PostgreSQL cancels a search or history statement that runs longer; the client gets 400 "
        "`INVALID_PARAMETER_VALUE` naming the limit (not a 5xx, which the mlflow client would retry). "
        "A read whose client disconnects is cancelled at once.",
        above=0,
    )  # fmt: skip
    migrate_on_start: bool = setting(
        False, "MIGRATE_ON_START",
        "Apply pending migrations when `serve` starts (flag `--migrate`). Otherwise `serve` refuses to "
        "start on an outdated schema; run `metricgate migrate`.",
    )  # fmt: skip

    def __repr__(self) -> str:
        return (
            f"PostgresSettings(url={mask_url(self.url)!r}, pool={self.pool_min_size}..{self.pool_max_size}, "
            f"read_pool={self.read_pool_max_size})"
        )


@dataclass(frozen=True)
class RedisSettings:
    url: str = setting(
        "redis://127.0.0.1:6379/0", "REDIS_URL",
        "Redis holding the ingest streams (the write-ahead buffer of metric points).",
    )  # fmt: skip
    # Connections per process; requests beyond wait (bounded) for a free one instead of failing.
    max_connections: int = setting(
        64, "REDIS_MAX_CONNECTIONS", "Redis connections per process; requests beyond wait for a free one.",
        minimum=1,
    )  # fmt: skip
    connection_wait_s: float = setting(
        5.0, "REDIS_CONNECTION_WAIT_S", "How long a request waits for a Redis connection before answering 503.",
        above=0,
    )  # fmt: skip

    def __repr__(self) -> str:
        return f"RedisSettings(url={mask_url(self.url)!r})"


@dataclass(frozen=True)
class IngestSettings:
    """The metric write path: Redis streams in front of PostgreSQL (see docs/design-ingest.md)."""

    mode: str = setting(
        "stream", "INGEST_MODE",
        "`stream`: metric writes are acknowledged once in Redis and flushed to PostgreSQL in batches. "
        "`direct`: written to PostgreSQL inside the request (no Redis needed, slower).",
        choices=("stream", "direct"),
    )  # fmt: skip
    shards: int = setting(
        4, "INGEST_SHARDS",
        "Streams the metric entries are spread over (by run, so a run's entries stay in one stream).",
        minimum=1, maximum=1024,
    )  # fmt: skip
    # Backpressure: past this many un-flushed stream entries (requests), writes get 503.
    max_backlog_entries: int = setting(
        100_000, "INGEST_MAX_BACKLOG",
        "Un-flushed stream entries (one per request) beyond which metric writes get 503 + `Retry-After`.",
        minimum=1,
    )  # fmt: skip
    max_inflight_requests: int = setting(
        1024, "INGEST_MAX_INFLIGHT",
        "Metric writes in progress per server process beyond which new ones get 503.", minimum=1,
    )  # fmt: skip
    read_wait_s: float = setting(
        5.0, "READ_WAIT_S",
        "How long a read waits for the run's acknowledged points to be flushed before answering 503.",
        minimum=0,
    )  # fmt: skip
    embedded_flusher: bool = setting(
        True,
        "EMBEDDED_FLUSHER",
        "Run a flusher inside each `serve` process (`--no-flusher` to turn off).",
    )


@dataclass(frozen=True)
class FlushSettings:
    batch_points: int = setting(
        50_000, "FLUSH_BATCH_POINTS", "Points per flush batch at most.", minimum=1
    )
    max_delay_ms: int = setting(
        100,
        "FLUSH_MAX_DELAY_MS",
        "How long a flusher gathers entries before writing a batch.",
        minimum=0,
    )
    claim_idle_s: float = setting(
        30.0, "FLUSH_CLAIM_IDLE_S",
        "Entries pending this long on another flusher are reclaimed (a dead flusher's batch).", above=0,
    )  # fmt: skip
    trim_interval_s: float = setting(
        0.5,
        "FLUSH_TRIM_INTERVAL_S",
        "How often flushed entries are trimmed from the streams.",
        above=0,
    )
    drain_timeout_s: float = setting(
        20.0, "FLUSH_DRAIN_TIMEOUT_S",
        "On shutdown, how long the background workers (flushers, webhook dispatcher, upload sweeper, "
        "janitor) together may take to finish what they hold, a flusher's batch in hand first; then they "
        "are cancelled, and unfinished work stays pending and is retried "
        "([`docs/design-shutdown.md`](docs/design-shutdown.md)).",
        minimum=0,
    )  # fmt: skip
    abandoned_after_s: float = setting(
        0.0, "ABANDONED_AFTER_S",
        "Tag `RUNNING` runs with no metric write for this long `metricgate.abandoned=true`.",
        shown="`0` (off)", minimum=0,
    )  # fmt: skip
    abandoned_fail: bool = setting(
        False, "ABANDONED_FAIL", "Also set abandoned runs to `FAILED` (end time = last activity)."
    )


@dataclass(frozen=True)
class ArtifactSettings:
    # Like `mlflow server`, the default is ./mlartifacts under the directory the server starts in.
    uri: str = setting(
        "", "ARTIFACTS_URI",
        "Artifact root: `file:///absolute/path` or `s3://bucket[/prefix]` (the bucket must exist; it is "
        "checked at start-up). `scripts/up.sh` sets it to `file://<state dir>/artifacts`.",
        shown="`file://<current dir>/mlartifacts`",
        env_default=lambda: (Path.cwd() / "mlartifacts").as_uri(),
    )  # fmt: skip
    # Not a setting: what MLflow's clients are told experiments' artifacts live under.
    default_artifact_root: str = "mlflow-artifacts:"
    # Credentials and region are never settings: they come from the standard AWS_* variables,
    # profiles or roles.
    s3_endpoint_url: str = setting(
        "", "S3_ENDPOINT_URL",
        "Endpoint of an S3-compatible server for an `s3://` root, e.g. `http://127.0.0.1:8333` (SeaweedFS, "
        "MinIO). Buckets are then addressed by path. Each part of a multipart/resumable upload to S3 is "
        "spooled to a temp file in `$TMPDIR` while its checksum is verified, so `TMPDIR` needs room for the "
        "parts in flight (not RAM-backed for large parts).",
        shown="unset (AWS)",
    )  # fmt: skip
    # Stock MLflow's MLFLOW_ALLOWED_HOST_ADDRESSED_ARTIFACT_SCHEMES: a model version whose source
    # names another host (https://, ftp://, ...) would make the registry hand out that host.
    allowed_host_source_schemes: tuple[str, ...] = setting(
        (), "ALLOWED_HOST_SOURCE_SCHEMES",
        "Comma-separated schemes (`https`, `ftp`, ...) a model-version source may use although it names a "
        "host; refused otherwise, as stock MLflow does (`docs/design-registry.md`).",
        shown="empty (none)",
    )  # fmt: skip


@dataclass(frozen=True)
class UploadSettings:
    """metricgate's resumable upload API and artifact references (see docs/design-artifacts.md)."""

    # S3 refuses parts under 5 MiB (except the last); the same floor keeps both stores alike.
    min_part_bytes: int = setting(
        5 * 1024 * 1024, "UPLOAD_MIN_PART_BYTES",
        "Smallest part of the resumable upload API (S3's minimum; only a file's last part may be smaller). "
        "On an `s3://` root, values below 5 MiB are raised to 5 MiB, and the maximum is capped at 5 GiB.",
        shown="`5242880` (5 MiB)", above=0,
    )  # fmt: skip
    max_part_bytes: int = setting(
        512 * 1024 * 1024, "UPLOAD_MAX_PART_BYTES", "Largest part of the resumable upload API.",
        shown="`536870912` (512 MiB)", above=0,
    )  # fmt: skip
    max_files: int = setting(
        10_000, "UPLOAD_MAX_FILES", "Files one upload session (a directory) may hold.", minimum=1
    )
    ttl_s: float = setting(
        24 * 3600.0, "UPLOAD_TTL_S",
        "An open upload session expires after this long without a received part; its staged data is then "
        "removed. Also the age after which staged data no session owns is removed.",
        above=0,
    )  # fmt: skip
    sweep_interval_s: float = setting(
        60.0, "UPLOAD_SWEEP_INTERVAL_S",
        "How often each `serve` process runs the upload sweeper (expiry, orphaned staging, interrupted commits).",
        above=0,
    )  # fmt: skip
    commit_lease_s: float = setting(
        30.0, "UPLOAD_COMMIT_LEASE_S",
        "A commit whose gateway has not checked in for this long is finished by another gateway's sweeper.",
        above=0,
    )  # fmt: skip
    # Empty: only the artifact root itself (a reference must never read arbitrary files of the
    # gateway host).
    reference_uri_prefixes: tuple[str, ...] = setting(
        (), "UPLOAD_REFERENCE_URI_PREFIXES",
        "Comma-separated `s3://bucket/prefix` or `file:///dir` prefixes that artifact references may point into.",
        shown="empty (the artifact root only)",
    )  # fmt: skip


@dataclass(frozen=True)
class WebhookSettings:
    """Registry webhook delivery (see docs/design-webhooks.md)."""

    enabled: bool = setting(
        True, "WEBHOOK_ENABLED",
        "Run a registry-webhook dispatcher in each `serve` process (any number may run on one database; "
        "see `docs/design-webhooks.md`).",
    )  # fmt: skip
    max_attempts: int = setting(
        8, "WEBHOOK_MAX_ATTEMPTS",
        "Attempts per delivery before it is marked `failed` (network errors, timeouts, 5xx, 408, 425 and "
        "429 are retried; other statuses fail at once).",
        minimum=1,
    )  # fmt: skip
    timeout_s: float = setting(
        10.0, "WEBHOOK_TIMEOUT_S",
        "Whole-request timeout of one delivery attempt. A delivery whose gateway died mid-attempt is sent "
        "again after twice this plus 5 s.",
        above=0,
    )  # fmt: skip
    concurrency: int = setting(
        16, "WEBHOOK_CONCURRENCY", "Deliveries in flight per `serve` process.", minimum=1
    )
    per_webhook_concurrency: int = setting(
        4, "WEBHOOK_PER_WEBHOOK_CONCURRENCY",
        "Deliveries in flight per webhook per process, so one slow receiver cannot take every slot.",
        minimum=1,
    )  # fmt: skip
    backoff_base_s: float = setting(
        1.0, "WEBHOOK_BACKOFF_BASE_S",
        "Retry delay after attempt n: `base × 2^(n-1)`, capped, half of it random (jitter); a "  # noqa: RUF001  # README prints the times sign
        "`Retry-After` on 429/503 is honoured up to the cap.",
        above=0,
    )  # fmt: skip
    backoff_max_s: float = setting(
        300.0, "WEBHOOK_BACKOFF_MAX_S", "Cap of the retry delay.", above=0
    )
    poll_interval_s: float = setting(
        1.0, "WEBHOOK_POLL_INTERVAL_S",
        "How often an idle dispatcher looks for due deliveries (the latency of a new delivery).", above=0,
    )  # fmt: skip
    retention_days: float = setting(
        30.0, "WEBHOOK_RETENTION_DAYS",
        "Delivered and failed deliveries, with their attempt log, are deleted this long after they "
        "completed (hourly); `0` keeps them.",
        minimum=0,
    )  # fmt: skip


@dataclass(frozen=True)
class AuthSettings:
    """Access control (docs/design-auth.md B1). The admin password is a secret: repr masks it."""

    mode: str = setting(
        "off", "AUTH",
        "`on`: every endpoint but the public paths and static UI files needs a user's password or API "
        "token ([`docs/design-auth.md`](docs/design-auth.md)). `off`: anyone who reaches the server may do anything.",
        choices=("off", "on"), normalize=str.lower,
    )  # fmt: skip
    admin_username: str = setting(
        "admin", "AUTH_ADMIN_USERNAME",
        "With auth on, `serve` creates this admin at start when the database has no admin.",
    )  # fmt: skip
    admin_password: str = setting(
        "", "AUTH_ADMIN_PASSWORD",
        "The first admin's password (at least 12 characters), used only when no admin exists; with auth "
        "on, no admin and no password, `serve` refuses to start. Never logged.",
        shown="unset",
    )  # fmt: skip
    # MLflow's default_permission: what a user holds on a resource nobody granted them anything on.
    default_permission: str = setting(
        "READ", "AUTH_DEFAULT_PERMISSION",
        "What a user holds where no grant applies: `READ` (as stock MLflow), `USE`, `EDIT`, `MANAGE`, or "
        "`NO_PERMISSIONS` (deny unless granted).",
        choices=("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS"), normalize=str.upper,
    )  # fmt: skip
    cache_entries: int = setting(
        10_000, "AUTH_CACHE_ENTRIES",
        "Verified passwords and tokens each process remembers (keyed by a per-process keyed hash, never the "
        "secret), so a request skips the password hash; a change of password, grant or token reaches "
        "the other processes within milliseconds (a notice on Redis pub/sub) and within about a "
        "second if that is lost. `0` verifies every request.",
        minimum=0,
    )  # fmt: skip
    public_paths: tuple[str, ...] = setting(
        ("/health", "/ready", "/metrics"), "AUTH_PUBLIC_PATHS",
        "Comma-separated paths that answer without authentication when auth is on.",
        shown="`/health,/ready,/metrics`",
    )  # fmt: skip
    # Failed logins (design B7): counted in Redis, shared by every process; in each process's
    # memory while Redis is away. Checked before the password hash, so guessing costs no KDF.
    login_limit_per_address: int = setting(
        30, "AUTH_LOGIN_LIMIT_PER_ADDRESS",
        "Failed logins one client address may make within `AUTH_LOGIN_ADDRESS_WINDOW_S`; the next "
        "attempts answer 429 `REQUEST_LIMIT_EXCEEDED` with `Retry-After` until the window ends. `0`: no limit.",
        minimum=0,
    )  # fmt: skip
    login_address_window_s: int = setting(
        60, "AUTH_LOGIN_ADDRESS_WINDOW_S",
        "Length of the per-address window, from its first failure.", minimum=1,
    )  # fmt: skip
    login_limit_per_user: int = setting(
        10, "AUTH_LOGIN_LIMIT_PER_USER",
        "Failed logins one username may suffer within `AUTH_LOGIN_USER_WINDOW_S`, from any address "
        "(unknown names count too, so a refusal tells nothing); a successful login clears the count. "
        "`0`: no limit.",
        minimum=0,
    )  # fmt: skip
    login_user_window_s: int = setting(
        900, "AUTH_LOGIN_USER_WINDOW_S",
        "Length of the per-user window, from its first failure.", minimum=1,
    )  # fmt: skip
    # argon2id's cost (docs/design-auth.md B3). The defaults are argon2-cffi's, RFC 9106's
    # second recommendation; a stored hash made with other values is re-made at its next login.
    password_time_cost: int = setting(
        3, "AUTH_PASSWORD_TIME_COST",
        "argon2id passes over memory for each password hash and check (RFC 9106 recommends `3` with 64 MiB). "
        "Hashes made with other costs are re-hashed at their user's next login.",
        minimum=1,
    )  # fmt: skip
    password_memory_kib: int = setting(
        65536, "AUTH_PASSWORD_MEMORY_KIB",
        "argon2id memory per hash and check, in KiB (`65536`: 64 MiB); at least 8 x `AUTH_PASSWORD_PARALLELISM`.",
        minimum=8,
    )  # fmt: skip
    password_parallelism: int = setting(
        4, "AUTH_PASSWORD_PARALLELISM", "argon2id lanes per hash.", minimum=1, maximum=255,
    )  # fmt: skip
    trusted_proxies: tuple[str, ...] = setting(
        (), "TRUSTED_PROXIES",
        "Comma-separated networks (`10.0.0.0/8`, `192.168.1.7`) of the reverse proxies in front of the "
        "server: for a request from one of them the client address (login limits, audit log) is the "
        "nearest `X-Forwarded-For` entry that is not one of them. Unset: always the peer address.",
        shown="unset",
    )  # fmt: skip

    @property
    def enabled(self) -> bool:
        return self.mode == "on"

    def __repr__(self) -> str:
        password = "***" if self.admin_password else ""
        return (
            f"AuthSettings(mode={self.mode!r}, admin_username={self.admin_username!r}, "
            f"admin_password={password!r}, default_permission={self.default_permission!r}, "
            f"cache_entries={self.cache_entries}, public_paths={self.public_paths!r}, "
            f"login_limits=({self.login_limit_per_address}/{self.login_address_window_s}s per address, "
            f"{self.login_limit_per_user}/{self.login_user_window_s}s per user), "
            f"trusted_proxies={self.trusted_proxies!r}, password_cost=(t={self.password_time_cost}, "
            f"m={self.password_memory_kib} KiB, p={self.password_parallelism}))"
        )

    def validate(self) -> None:
        """The rules the declarations cannot say; never quotes the password."""
        name = ENV_PREFIX + "AUTH_ADMIN_PASSWORD"
        if self.enabled and self.admin_password:
            if len(self.admin_password) < MIN_PASSWORD_LENGTH:
                raise ConfigError(f"{name} must be at least {MIN_PASSWORD_LENGTH} characters long")
            if len(self.admin_password) > MAX_PASSWORD_LENGTH:
                raise ConfigError(f"{name} must be at most {MAX_PASSWORD_LENGTH} characters long")
        try:
            check_username(self.admin_username)
        except InvalidParameter as exc:
            raise ConfigError(f"{ENV_PREFIX}AUTH_ADMIN_USERNAME: {exc}") from None
        for path in self.public_paths:
            if not path.startswith("/"):
                raise ConfigError(
                    f"{ENV_PREFIX}AUTH_PUBLIC_PATHS must list paths starting with '/', got {path!r}"
                )
        if self.password_memory_kib < 8 * self.password_parallelism:
            raise ConfigError(
                f"{ENV_PREFIX}AUTH_PASSWORD_MEMORY_KIB must be at least 8 x "
                f"{ENV_PREFIX}AUTH_PASSWORD_PARALLELISM ({8 * self.password_parallelism})"
            )
        try:
            parse_networks(self.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"{ENV_PREFIX}TRUSTED_PROXIES: {exc}") from None


@dataclass(frozen=True)
class Settings:
    http: HttpSettings = field(default_factory=HttpSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    flush: FlushSettings = field(default_factory=FlushSettings)
    artifacts: ArtifactSettings = field(default_factory=ArtifactSettings)
    uploads: UploadSettings = field(default_factory=UploadSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    log_level: str = setting(
        "INFO", "LOG_LEVEL", "`DEBUG`, `INFO`, `WARNING` or `ERROR`.",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"), normalize=str.upper,
    )  # fmt: skip
    log_format: str = setting(
        "text", "LOG_FORMAT",
        "`json` writes one JSON object per log line (`ts`, `level`, `logger`, `msg`, `exc`, and "
        "`request_id` for a line written while a request runs: the id its answer's `X-Request-Id` "
        "names).",
        choices=("text", "json"), normalize=str.lower,
    )  # fmt: skip

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment; ``overrides`` (CLI flags) win when not None."""
        env = os.environ if environ is None else environ
        sections = {name: _read_section(section, env) for name, section in _SECTIONS.items()}
        own = {f.name: _read(f, env) for f in _setting_fields(cls)}
        return cls(**sections, **own).with_overrides(**overrides)

    def with_overrides(self, **overrides: Any) -> Settings:
        """Apply CLI overrides such as ``host=``, ``port=``, ``database_url=``; None means unset."""
        mapping = {
            "host": ("http", "host"),
            "port": ("http", "port"),
            "database_url": ("postgres", "url"),
            "migrate_on_start": ("postgres", "migrate_on_start"),
            "redis_url": ("redis", "url"),
            "artifacts_uri": ("artifacts", "uri"),
            "ingest_mode": ("ingest", "mode"),
            "embedded_flusher": ("ingest", "embedded_flusher"),
        }
        result = self
        for name, value in overrides.items():
            if value is None:
                continue
            if name == "log_level":
                result = dataclasses.replace(result, log_level=str(value).upper())
                continue
            section, attr = mapping[name]
            sub = dataclasses.replace(getattr(result, section), **{attr: value})
            result = dataclasses.replace(result, **{section: sub})
        result.validate()
        return result

    def validate(self) -> None:
        """Every declared bound, then the rules that tie settings together or look inside values."""
        for owner, f, declared in declarations(self):
            _check(declared, getattr(owner, f.name))
        if not self.postgres.url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{ENV_PREFIX}DATABASE_URL must be a postgresql:// URL")
        # Refuse other schemes here rather than at the first upload.
        if not self.artifacts.uri.startswith(("file://", "s3://")):
            raise ConfigError(
                f"{ENV_PREFIX}ARTIFACTS_URI must be a file:///absolute/path or s3://bucket/prefix URI"
            )
        if self.artifacts.s3_endpoint_url and not self.artifacts.s3_endpoint_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(f"{ENV_PREFIX}S3_ENDPOINT_URL must be an http:// or https:// URL")
        if self.uploads.min_part_bytes > self.uploads.max_part_bytes:
            raise ConfigError(f"{ENV_PREFIX}UPLOAD_MIN_PART_BYTES must be <= UPLOAD_MAX_PART_BYTES")
        if self.webhooks.backoff_base_s > self.webhooks.backoff_max_s:
            raise ConfigError(
                f"{ENV_PREFIX}WEBHOOK_BACKOFF_BASE_S must be <= WEBHOOK_BACKOFF_MAX_S"
            )
        self.auth.validate()


# ------------------------------------------------------------------ derived from the declarations


def _setting_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if "setting" in f.metadata]


# The sections of Settings, in the order README's table lists them.
_SECTIONS: dict[str, type] = {
    "http": HttpSettings,
    "postgres": PostgresSettings,
    "redis": RedisSettings,
    "ingest": IngestSettings,
    "flush": FlushSettings,
    "artifacts": ArtifactSettings,
    "uploads": UploadSettings,
    "webhooks": WebhookSettings,
    "auth": AuthSettings,
}


def declarations(
    settings: Settings | None = None,
) -> Iterator[tuple[Any, dataclasses.Field[Any], Declared]]:
    """Every declared setting in README order: (the object holding it, its field, its declaration)."""
    settings = settings or Settings()
    for name in _SECTIONS:
        section = getattr(settings, name)
        for f in _setting_fields(type(section)):
            yield section, f, f.metadata["setting"]
    for f in _setting_fields(Settings):
        yield settings, f, f.metadata["setting"]


def _read_section(cls: type, env: Mapping[str, str]) -> Any:
    return cls(**{f.name: _read(f, env) for f in _setting_fields(cls)})


def _read(f: dataclasses.Field[Any], env: Mapping[str, str]) -> Any:
    declared: Declared = f.metadata["setting"]
    raw = env.get(ENV_PREFIX + declared.env)
    if raw in (None, ""):  # an empty value counts as unset
        return declared.env_default() if declared.env_default else f.default
    assert raw is not None
    name = ENV_PREFIX + declared.env
    kind: type[Any] = type(f.default)
    if kind is bool:
        lowered = raw.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    if kind is int:
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if kind is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if kind is tuple:
        return _csv(raw)
    return declared.normalize(raw) if declared.normalize else raw


def _check(declared: Declared, value: Any) -> None:
    name = ENV_PREFIX + declared.env
    if declared.choices and value not in declared.choices:
        raise ConfigError(
            f"{name} must be one of {', '.join(repr(c) for c in declared.choices)}, got {value!r}"
        )
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low = declared.minimum
    if declared.maximum is not None and low is not None and not low <= value <= declared.maximum:
        raise ConfigError(f"{name} must be between {low:g} and {declared.maximum:g}, got {value:g}")
    if low is not None and value < low:
        raise ConfigError(f"{name} must be >= {low:g}, got {value:g}")
    if declared.above is not None and value <= declared.above:
        raise ConfigError(f"{name} must be > {declared.above:g}" + (" (positive)" if declared.above == 0 else "")
                          + f", got {value:g}")  # fmt: skip


def _shown_default(f: dataclasses.Field[Any], declared: Declared) -> str:
    if declared.shown is not None:
        return declared.shown
    value = f.default
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    return f"`{value}`"


def markdown_rows() -> list[str]:
    """README's configuration table rows of the METRICGATE_* variables, from the declarations."""
    return [
        f"| `{ENV_PREFIX}{declared.env}` | {_shown_default(f, declared)} | {declared.help} |"
        for _, f, declared in declarations()
    ]


# ------------------------------------------------------------------ other programs' variables
# Conventions metricgate follows, not METRICGATE_* settings (no README row). Their readers live
# here too, so this stays the one module that touches the environment (tests/unit/test_env_reads.py).

PROMETHEUS_MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"


def mlflow_tracking_uri(environ: Mapping[str, str] | None = None) -> str | None:
    """``$MLFLOW_TRACKING_URI``, the mlflow client's server address; None when unset or empty."""
    env = os.environ if environ is None else environ
    return env.get("MLFLOW_TRACKING_URI") or None


def mlflow_tracking_credentials(
    environ: Mapping[str, str] | None = None,
) -> tuple[str | None, str | None, str | None]:
    """The mlflow client's credentials: ``$MLFLOW_TRACKING_USERNAME``, ``$MLFLOW_TRACKING_PASSWORD``
    (HTTP Basic) and ``$MLFLOW_TRACKING_TOKEN`` (Bearer); each None when unset or empty."""
    env = os.environ if environ is None else environ
    names = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
    username, password, token = (env.get(name) or None for name in names)
    return username, password, token


def cache_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_CACHE_HOME``, else ``~/.cache`` (the XDG base directory convention)."""
    env = os.environ if environ is None else environ
    return Path(env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"))


def prometheus_multiproc_dir() -> str | None:
    """``$PROMETHEUS_MULTIPROC_DIR``: set, prometheus-client runs in multiprocess mode."""
    return os.environ.get(PROMETHEUS_MULTIPROC_DIR) or None


def export_prometheus_multiproc_dir(path: str | None) -> None:
    """Set ``$PROMETHEUS_MULTIPROC_DIR`` for the processes started after this (None removes it).

    A write, not a read: prometheus-client reads the variable itself when a worker first imports
    it, so the only way to hand a spawned worker the directory is its inherited environment.
    """
    if path is None:
        os.environ.pop(PROMETHEUS_MULTIPROC_DIR, None)
    else:
        os.environ[PROMETHEUS_MULTIPROC_DIR] = path


if __name__ == "__main__":  # python -m metricgate.config: the rows for README.md
    sys.stdout.write("\n".join(markdown_rows()) + "\n")
