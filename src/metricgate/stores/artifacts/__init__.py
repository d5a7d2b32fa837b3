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
        raise ConfigError(f"{_SETTING} must name a local path (file:///abs/path), got host {parsed.netloc!r}")
    path = unquote(parsed.path)
    if not path.startswith("/"):
        raise ConfigError(f"{_SETTING} must be an absolute path such as file:///var/lib/metricgate")
    return Path(path)


async def open_artifact_store(settings: ArtifactSettings) -> ArtifactStore:
    """Open the store named by ``settings.uri``; ``ConfigError`` for schemes not served yet."""
    if not settings.uri:
        # ArtifactSettings() leaves it empty; like `mlflow server`, that means ./mlartifacts.
        return await LocalArtifactStore.open(Path.cwd() / DEFAULT_LOCAL_DIR)
    scheme = urlparse(settings.uri).scheme
    if scheme == "file":
        return await LocalArtifactStore.open(_local_root(settings.uri))
    if scheme == "s3":
        raise ConfigError(
            f"{_SETTING}: s3:// artifact storage is not implemented yet (it comes in a later release); "
            "use file:///abs/path for now"
        )
    raise ConfigError(f"{_SETTING} must be a file:// URI, got {settings.uri!r}")
