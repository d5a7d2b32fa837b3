"""Artifact references: an object that already lives in storage becomes a run artifact without
being copied. It is checked (HEAD: it exists, the size matches) when registered, and listings
and downloads resolve through it (``visible_store``)."""

from __future__ import annotations

from urllib.parse import unquote, urlparse

from metricgate.config import UploadSettings
from metricgate.domain.artifacts.paths import (
    join_artifact_path,
    normalize_artifact_path,
    proxied_store_path,
)
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.uploads import rules as checks
from metricgate.domain.uploads.entities import ArtifactReference
from metricgate.domain.uploads.rules import strip_etag
from metricgate.stores.artifacts.base import ExternalSource
from metricgate.stores.base import AuditContext, ReferenceStore, RunLookup

_SCHEMES = ("s3", "file")


def _under(uri: str, prefix: str) -> bool:
    # On a segment boundary: a prefix s3://b/ckpt must not admit s3://b/ckpt-other/x.
    base = prefix.rstrip("/")
    return uri == base or uri.startswith(base + "/")


def check_reference_uri(uri: object, allowed_prefixes: tuple[str, ...]) -> str:
    """The URI if it is an s3:// or file:// URI inside one of ``allowed_prefixes``."""
    if not isinstance(uri, str) or not uri:
        raise InvalidParameter("'uri' must be an s3:// or file:// URI")
    parsed = urlparse(uri)
    if parsed.scheme not in _SCHEMES or parsed.query or parsed.fragment or parsed.params:
        raise InvalidParameter(
            f"Invalid reference URI {uri[:200]!r}: expected s3://bucket/key or file:///path"
        )
    if parsed.scheme == "s3" and not parsed.netloc:
        raise InvalidParameter(f"Invalid reference URI {uri[:200]!r}: it names no bucket")
    # The same traversal rules as artifact paths: a URI that climbs ('..', encoded or not)
    # could escape the allowed prefix in the store even though the text starts with it.
    normalize_artifact_path(unquote(parsed.path).lstrip("/"))
    if not any(_under(uri, prefix) for prefix in allowed_prefixes):
        raise InvalidParameter(
            f"Reference URI {uri[:200]!r} is outside the locations this server may read "
            "(METRICGATE_UPLOAD_REFERENCE_URI_PREFIXES)"
        )
    return uri


class ReferenceManager:
    def __init__(
        self,
        store: ExternalSource,
        references: ReferenceStore,
        runs: RunLookup,
        settings: UploadSettings,
        artifact_root_uri: str,
    ) -> None:
        self._store = store
        self._references = references
        self._runs = runs
        self._allowed = settings.reference_uri_prefixes or (artifact_root_uri,)

    async def register(
        self, run_id: str, path: str | None, uri: object, size: object, sha256: object, etag: object
    ) -> ArtifactReference:
        rel = normalize_artifact_path(path or "")
        checked_uri = check_reference_uri(uri, self._allowed)
        expected_size = checks.check_file_size(size, f"reference '{rel}'")
        digest = checks.sha256_hex(sha256, "sha256")
        if etag is not None and not isinstance(etag, str):
            raise InvalidParameter("'etag' must be a string")
        run = await self._runs.get(run_id)
        await self._runs.require_active(run_id)
        run_root = proxied_store_path(run.info.artifact_uri)
        if run_root is None:
            raise InvalidParameter(
                f"Run '{run_id}' keeps its artifacts at {run.info.artifact_uri!r}, not here"
            )
        actual_size, actual_etag = await self._store.head_external(checked_uri)
        if actual_size != expected_size:
            raise InvalidParameter(
                f"Referenced object {checked_uri!r} has {actual_size} bytes, but size {expected_size} was given"
            )
        wanted_etag = strip_etag(etag) if isinstance(etag, str) and etag else None
        if wanted_etag and actual_etag and wanted_etag != actual_etag.strip('"'):
            raise InvalidParameter(
                f"Referenced object {checked_uri!r} has ETag {actual_etag}, not {wanted_etag}"
            )
        ref = ArtifactReference(
            run_id=run_id,
            rel_path=rel,
            dest_path=join_artifact_path(run_root, rel),
            uri=checked_uri,
            size=actual_size,
            sha256=digest,
            etag=actual_etag or wanted_etag,
        )
        return await self._references.put(ref)

    async def list(self, run_id: str) -> list[ArtifactReference]:
        await self._runs.require_exists(run_id)
        return await self._references.list_for_run(run_id)

    async def delete(
        self, run_id: str, path: str | None, *, audit: AuditContext | None = None
    ) -> None:
        await self._references.delete(run_id, normalize_artifact_path(path or ""), audit=audit)
