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

    def __repr__(self) -> str:
        return f"PostgresSettings(url={mask_url(self.url)!r}, pool={self.pool_min_size}..{self.pool_max_size})"


@dataclass(frozen=True)
class RedisSettings:
    url: str = "redis://127.0.0.1:6379/0"

    def __repr__(self) -> str:
        return f"RedisSettings(url={mask_url(self.url)!r})"


@dataclass(frozen=True)
class ArtifactSettings:
    # file:///abs/path now; s3://bucket/prefix in a later issue. Like `mlflow server`, the
    # default is ./mlartifacts under the directory the server starts in.
    uri: str = ""
    default_artifact_root: str = "mlflow-artifacts:"


@dataclass(frozen=True)
class Settings:
    http: HttpSettings = field(default_factory=HttpSettings)
    postgres: PostgresSettings = field(default_factory=PostgresSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    artifacts: ArtifactSettings = field(default_factory=ArtifactSettings)
    log_level: str = "INFO"

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
        )
        redis = RedisSettings(url=reader.str("REDIS_URL", RedisSettings.url))
        artifacts = ArtifactSettings(
            uri=reader.str("ARTIFACTS_URI", (Path.cwd() / "mlartifacts").as_uri())
        )
        settings = cls(
            http=http,
            postgres=postgres,
            redis=redis,
            artifacts=artifacts,
            log_level=reader.str("LOG_LEVEL", "INFO").upper(),
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
        # s3:// arrives with the large-artifact work; refuse it here rather than at first upload.
        if not self.artifacts.uri.startswith("file://"):
            raise ConfigError(f"{ENV_PREFIX}ARTIFACTS_URI must be a file:///absolute/path URI")
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
