"""Settings from ``METRICGATE_*`` environment variables; the only place the environment is read."""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENV_PREFIX = "METRICGATE_"


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def mask_url(url: str | None) -> str | None:
    """Hide the password of a URL so settings can be logged."""
    if not url:
        return url
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


@dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 5000
    # MLflow's log-batch limit is 1 MB of JSON; artifacts have their own streaming path.
    max_body_bytes: int = 4 * 1024 * 1024
    shutdown_timeout_s: float = 30.0
    access_log: bool = False


@dataclass(frozen=True)
class PostgresSettings:
    url: str = "postgresql://postgres@127.0.0.1:5432/metricgate"
    pool_min_size: int = 2
    pool_max_size: int = 16
    # A request waits at most this long for a connection before answering 503.
    acquire_timeout_s: float = 10.0
    command_timeout_s: float = 60.0
    migrate_on_start: bool = False
    # Reads whose cost the client's input decides (searches, metric history, GraphQL) run on a
    # pool of their own, so a burst of expensive searches waits for a read connection instead of
    # taking the ones the flusher and the write path need; PostgreSQL cancels any such statement
    # that runs longer than the timeout (answered 400, not "database unavailable").
    read_pool_max_size: int = 8
    read_statement_timeout_s: float = 30.0

    def __repr__(self) -> str:
        return (
            f"PostgresSettings(url={mask_url(self.url)!r}, pool={self.pool_min_size}..{self.pool_max_size}, "
            f"read_pool={self.read_pool_max_size})"
        )


@dataclass(frozen=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:6379/0"
    # Connections per process; requests beyond wait (bounded) for a free one instead of failing.
    max_connections: int = 64
    connection_wait_s: float = 5.0

    def __repr__(self) -> str:
        return f"RedisSettings(url={mask_url(self.url)!r})"


@dataclass(frozen=True)
class IngestSettings:
    """The metric write path: Redis streams in front of PostgreSQL (see docs/design-ingest.md)."""

    # "stream": acknowledge after XADD, flushers copy into PostgreSQL. "direct": write through
    # to PostgreSQL in the request (no Redis needed; slower, for small setups and debugging).
    mode: str = "stream"
    shards: int = 4
    # Backpressure: past this many un-flushed stream entries (requests), writes get 503.
    max_backlog_entries: int = 100_000
    # Requests being handled at once on the ingest path of one gateway process; beyond, 503.
    max_inflight_requests: int = 1024
    # How long a read of a run waits for that run's acknowledged points to become visible.
    read_wait_s: float = 5.0
    embedded_flusher: bool = True


@dataclass(frozen=True)
class FlushSettings:
    batch_points: int = 50_000
    max_delay_ms: int = 100
    # Entries pending this long on another consumer are presumed orphaned and reclaimed.
    claim_idle_s: float = 30.0
    trim_interval_s: float = 0.5
    drain_timeout_s: float = 20.0
    # Runs RUNNING with no write for this long are tagged abandoned (0 disables the janitor).
    abandoned_after_s: float = 0.0
    # Also set abandoned runs to FAILED (with end_time = last write).
    abandoned_fail: bool = False


@dataclass(frozen=True)
class ArtifactSettings:
    # file:///abs/path or s3://bucket/prefix. Like `mlflow server`, the default is
    # ./mlartifacts under the directory the server starts in.
    uri: str = ""
    default_artifact_root: str = "mlflow-artifacts:"
    # Any S3-compatible server (SeaweedFS, MinIO, ...); empty means AWS. Credentials and region
    # are never settings: they come from the standard AWS_* variables / profiles / roles.
    s3_endpoint_url: str = ""


@dataclass(frozen=True)
class UploadSettings:
    """metricgate's resumable upload API and artifact references (see docs/design-artifacts.md)."""

    # S3 refuses parts under 5 MiB (except the last); the same floor keeps both stores alike.
    min_part_bytes: int = 5 * 1024 * 1024
    max_part_bytes: int = 512 * 1024 * 1024
    max_files: int = 10_000
    # An open session untouched for this long expires; every received part extends it.
    ttl_s: float = 24 * 3600.0
    sweep_interval_s: float = 60.0
    # A committing session whose committer has not checked in for this long is rolled forward
    # by any gateway's sweeper (the committer died).
    commit_lease_s: float = 30.0
    # URI prefixes artifact references may point into, comma-separated; empty: only the
    # artifact root itself (a reference must never read arbitrary files of the gateway host).
    reference_uri_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class WebhookSettings:
    """Registry webhook delivery (see docs/design-webhooks.md)."""

    # Run a delivery dispatcher inside each `serve` process (many may run at once).
    enabled: bool = True
    # Attempts per delivery before it is marked failed (dead).
    max_attempts: int = 8
    # Whole-request timeout of one delivery attempt.
    timeout_s: float = 10.0
    # Deliveries in flight per process, and per webhook within it (a slow receiver cannot take every slot).
    concurrency: int = 16
    per_webhook_concurrency: int = 4
    # Retry delay: backoff_base_s * 2^(attempt-1), capped at backoff_max_s, with jitter.
    backoff_base_s: float = 1.0
    backoff_max_s: float = 300.0
    # How often an idle dispatcher looks for due deliveries.
    poll_interval_s: float = 1.0
    # Delivered and failed deliveries (with their attempt log) are deleted after this long; 0 keeps them.
    retention_days: float = 30.0


@dataclass(frozen=True)
class Settings:
    http: HttpSettings = field(default_factory=HttpSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    artifacts: ArtifactSettings = field(default_factory=ArtifactSettings)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    flush: FlushSettings = field(default_factory=FlushSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    uploads: UploadSettings = field(default_factory=UploadSettings)
    log_level: str = "INFO"
    # "text" for people, "json" (one object per line) for log shippers.
    log_format: str = "text"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from the environment; ``overrides`` (CLI flags) win when not None."""
        env = os.environ if environ is None else environ
        reader = _EnvReader(env)
        http = HttpSettings(
            host=reader.str("HOST", HttpSettings.host),
            port=reader.int("PORT", HttpSettings.port),
            max_body_bytes=reader.int("MAX_BODY_BYTES", HttpSettings.max_body_bytes),
            shutdown_timeout_s=reader.float("SHUTDOWN_TIMEOUT_S", HttpSettings.shutdown_timeout_s),
            access_log=reader.bool("ACCESS_LOG", HttpSettings.access_log),
        )
        postgres = PostgresSettings(
            url=reader.str("DATABASE_URL", PostgresSettings.url),
            pool_min_size=reader.int("DB_POOL_MIN", PostgresSettings.pool_min_size),
            pool_max_size=reader.int("DB_POOL_MAX", PostgresSettings.pool_max_size),
            acquire_timeout_s=reader.float("DB_ACQUIRE_TIMEOUT_S", PostgresSettings.acquire_timeout_s),
            command_timeout_s=reader.float("DB_COMMAND_TIMEOUT_S", PostgresSettings.command_timeout_s),
            migrate_on_start=reader.bool("MIGRATE_ON_START", PostgresSettings.migrate_on_start),
            read_pool_max_size=reader.int("DB_READ_POOL_MAX", PostgresSettings.read_pool_max_size),
            read_statement_timeout_s=reader.float(
                "DB_READ_STATEMENT_TIMEOUT_S", PostgresSettings.read_statement_timeout_s
            ),
        )
        redis = RedisSettings(
            url=reader.str("REDIS_URL", RedisSettings.url),
            max_connections=reader.int("REDIS_MAX_CONNECTIONS", RedisSettings.max_connections),
            connection_wait_s=reader.float("REDIS_CONNECTION_WAIT_S", RedisSettings.connection_wait_s),
        )
        artifacts = ArtifactSettings(
            uri=reader.str("ARTIFACTS_URI", (Path.cwd() / "mlartifacts").as_uri()),
            s3_endpoint_url=reader.str("S3_ENDPOINT_URL", ""),
        )
        ingest = IngestSettings(
            mode=reader.str("INGEST_MODE", IngestSettings.mode),
            shards=reader.int("INGEST_SHARDS", IngestSettings.shards),
            max_backlog_entries=reader.int("INGEST_MAX_BACKLOG", IngestSettings.max_backlog_entries),
            max_inflight_requests=reader.int("INGEST_MAX_INFLIGHT", IngestSettings.max_inflight_requests),
            read_wait_s=reader.float("READ_WAIT_S", IngestSettings.read_wait_s),
            embedded_flusher=reader.bool("EMBEDDED_FLUSHER", IngestSettings.embedded_flusher),
        )
        flush = FlushSettings(
            batch_points=reader.int("FLUSH_BATCH_POINTS", FlushSettings.batch_points),
            max_delay_ms=reader.int("FLUSH_MAX_DELAY_MS", FlushSettings.max_delay_ms),
            claim_idle_s=reader.float("FLUSH_CLAIM_IDLE_S", FlushSettings.claim_idle_s),
            trim_interval_s=reader.float("FLUSH_TRIM_INTERVAL_S", FlushSettings.trim_interval_s),
            drain_timeout_s=reader.float("FLUSH_DRAIN_TIMEOUT_S", FlushSettings.drain_timeout_s),
            abandoned_after_s=reader.float("ABANDONED_AFTER_S", FlushSettings.abandoned_after_s),
            abandoned_fail=reader.bool("ABANDONED_FAIL", FlushSettings.abandoned_fail),
        )
        uploads = UploadSettings(
            min_part_bytes=reader.int("UPLOAD_MIN_PART_BYTES", UploadSettings.min_part_bytes),
            max_part_bytes=reader.int("UPLOAD_MAX_PART_BYTES", UploadSettings.max_part_bytes),
            max_files=reader.int("UPLOAD_MAX_FILES", UploadSettings.max_files),
            ttl_s=reader.float("UPLOAD_TTL_S", UploadSettings.ttl_s),
            sweep_interval_s=reader.float("UPLOAD_SWEEP_INTERVAL_S", UploadSettings.sweep_interval_s),
            commit_lease_s=reader.float("UPLOAD_COMMIT_LEASE_S", UploadSettings.commit_lease_s),
            reference_uri_prefixes=tuple(
                p.strip() for p in reader.str("UPLOAD_REFERENCE_URI_PREFIXES", "").split(",") if p.strip()
            ),
        )
        webhooks = WebhookSettings(
            enabled=reader.bool("WEBHOOK_ENABLED", WebhookSettings.enabled),
            max_attempts=reader.int("WEBHOOK_MAX_ATTEMPTS", WebhookSettings.max_attempts),
            timeout_s=reader.float("WEBHOOK_TIMEOUT_S", WebhookSettings.timeout_s),
            concurrency=reader.int("WEBHOOK_CONCURRENCY", WebhookSettings.concurrency),
            per_webhook_concurrency=reader.int(
                "WEBHOOK_PER_WEBHOOK_CONCURRENCY", WebhookSettings.per_webhook_concurrency
            ),
            backoff_base_s=reader.float("WEBHOOK_BACKOFF_BASE_S", WebhookSettings.backoff_base_s),
            backoff_max_s=reader.float("WEBHOOK_BACKOFF_MAX_S", WebhookSettings.backoff_max_s),
            poll_interval_s=reader.float("WEBHOOK_POLL_INTERVAL_S", WebhookSettings.poll_interval_s),
            retention_days=reader.float("WEBHOOK_RETENTION_DAYS", WebhookSettings.retention_days),
        )
        settings = cls(
            http=http,
            postgres=postgres,
            redis=redis,
            artifacts=artifacts,
            ingest=ingest,
            flush=flush,
            webhooks=webhooks,
            uploads=uploads,
            log_level=reader.str("LOG_LEVEL", "INFO").upper(),
            log_format=reader.str("LOG_FORMAT", "text").lower(),
        )
        return settings.with_overrides(**overrides)

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
        if not self.postgres.url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"{ENV_PREFIX}DATABASE_URL must be a postgresql:// URL")
        if self.postgres.read_pool_max_size < 1 or self.postgres.read_statement_timeout_s <= 0:
            raise ConfigError(f"{ENV_PREFIX}DB_READ_POOL_MAX and DB_READ_STATEMENT_TIMEOUT_S must be positive")
        # Refuse other schemes here rather than at the first upload.
        if not self.artifacts.uri.startswith(("file://", "s3://")):
            raise ConfigError(f"{ENV_PREFIX}ARTIFACTS_URI must be a file:///absolute/path or s3://bucket/prefix URI")
        if self.artifacts.s3_endpoint_url and not self.artifacts.s3_endpoint_url.startswith(("http://", "https://")):
            raise ConfigError(f"{ENV_PREFIX}S3_ENDPOINT_URL must be an http:// or https:// URL")
        if self.log_format not in ("text", "json"):
            raise ConfigError(f"{ENV_PREFIX}LOG_FORMAT must be 'text' or 'json'")
        if self.ingest.mode not in ("stream", "direct"):
            raise ConfigError(f"{ENV_PREFIX}INGEST_MODE must be 'stream' or 'direct'")
        if not 1 <= self.ingest.shards <= 1024:
            raise ConfigError(f"{ENV_PREFIX}INGEST_SHARDS must be between 1 and 1024")
        if self.ingest.max_backlog_entries < 1 or self.ingest.max_inflight_requests < 1:
            raise ConfigError(f"{ENV_PREFIX}INGEST_MAX_BACKLOG and INGEST_MAX_INFLIGHT must be positive")
        if self.flush.batch_points < 1 or self.flush.max_delay_ms < 0:
            raise ConfigError(f"{ENV_PREFIX}FLUSH_BATCH_POINTS must be positive, FLUSH_MAX_DELAY_MS >= 0")
        if not 0 < self.uploads.min_part_bytes <= self.uploads.max_part_bytes:
            raise ConfigError(f"{ENV_PREFIX}UPLOAD_MIN_PART_BYTES must be positive and <= UPLOAD_MAX_PART_BYTES")
        if self.uploads.ttl_s <= 0 or self.uploads.sweep_interval_s <= 0 or self.uploads.commit_lease_s <= 0:
            raise ConfigError(f"{ENV_PREFIX}UPLOAD_TTL_S, UPLOAD_SWEEP_INTERVAL_S and UPLOAD_COMMIT_LEASE_S must be positive")
        hooks = self.webhooks
        if hooks.max_attempts < 1 or hooks.concurrency < 1 or hooks.per_webhook_concurrency < 1:
            raise ConfigError(
                f"{ENV_PREFIX}WEBHOOK_MAX_ATTEMPTS, WEBHOOK_CONCURRENCY and WEBHOOK_PER_WEBHOOK_CONCURRENCY must be positive"
            )
        if hooks.retention_days < 0:
            raise ConfigError(f"{ENV_PREFIX}WEBHOOK_RETENTION_DAYS must be >= 0")
        if hooks.timeout_s <= 0 or hooks.poll_interval_s <= 0 or not 0 < hooks.backoff_base_s <= hooks.backoff_max_s:
            raise ConfigError(
                f"{ENV_PREFIX}WEBHOOK_TIMEOUT_S and WEBHOOK_POLL_INTERVAL_S must be positive, "
                "0 < WEBHOOK_BACKOFF_BASE_S <= WEBHOOK_BACKOFF_MAX_S"
            )
        if not 0 < self.http.port < 65536:
            raise ConfigError(f"{ENV_PREFIX}PORT must be between 1 and 65535")


class _EnvReader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(ENV_PREFIX + name)
        return value if value not in (None, "") else None

    def str(self, name: str, default: str) -> str:
        value = self._raw(name)
        return default if value is None else value

    def int(self, name: str, default: int) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name} must be an integer, got {value!r}") from None

    def float(self, name: str, default: float) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{name} must be a number, got {value!r}") from None

    def bool(self, name: str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{ENV_PREFIX}{name} must be true or false, got {value!r}")
