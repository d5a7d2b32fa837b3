"""Artifact storage: the ``ArtifactStore`` protocol and the factory that picks a backend by URI."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

from metricgate.config import ENV_PREFIX, ArtifactSettings, ConfigError
from metricgate.stores.artifacts.base import ArtifactStore
from metricgate.stores.artifacts.local import LocalArtifactStore

__all__ = ["ArtifactStore", "LocalArtifactStore", "open_artifact_store"]

_SETTING = f"{ENV_PREFIX}ARTIFACTS_URI"
DEFAULT_LOCAL_DIR = "mlartifacts"


def _local_root(uri: str) -> Path:
    """``file:///abs/path`` (or ``file://localhost/abs/path``) -> the absolute path."""
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise ConfigError(
            f"{_SETTING} must name a local path (file:///abs/path), got host {parsed.netloc!r}"
        )
    path = unquote(parsed.path)
    if not path.startswith("/"):
        raise ConfigError(f"{_SETTING} must be an absolute path such as file:///var/lib/metricgate")
    return Path(path)


async def open_artifact_store(settings: ArtifactSettings) -> ArtifactStore:
    """Open the store named by ``settings.uri`` (file:// or s3://); ``ConfigError`` otherwise."""
    if not settings.uri:
        # ArtifactSettings() leaves it empty; like `mlflow server`, that means ./mlartifacts.
        return await LocalArtifactStore.open(Path.cwd() / DEFAULT_LOCAL_DIR)
    scheme = urlparse(settings.uri).scheme
    if scheme == "file":
        return await LocalArtifactStore.open(_local_root(settings.uri))
    if scheme == "s3":
        return await _open_s3(settings)
    raise ConfigError(f"{_SETTING} must be a file:// or s3:// URI, got {settings.uri!r}")


async def _open_s3(settings: ArtifactSettings) -> ArtifactStore:
    from metricgate.domain.errors import MetricgateError
    from metricgate.stores.artifacts.s3 import S3ArtifactStore

    if not urlparse(settings.uri).netloc:
        raise ConfigError(
            f"{_SETTING} must name a bucket: s3://bucket[/prefix], got {settings.uri!r}"
        )
    try:
        return await S3ArtifactStore.open(
            settings.uri, endpoint_url=settings.s3_endpoint_url or None
        )
    except MetricgateError as exc:
        # Unreachable endpoint, missing bucket, refused credentials: a start-up configuration error.
        where = settings.s3_endpoint_url or "AWS"
        raise ConfigError(
            f"{_SETTING}={settings.uri}: the bucket is not usable at {where}: {exc.message}"
        ) from exc
