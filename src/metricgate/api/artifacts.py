"""The proxied artifact API (``/api/2.0/mlflow-artifacts``) and the UI's run-artifact listing.

Handlers only parse HTTP and shape responses; every byte goes through the ``ArtifactStore``
(``request.app[SERVICE].artifacts``), which owns path validation and confinement.
"""

from __future__ import annotations

import contextlib
import logging
import mimetypes
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

from aiohttp import web

from metricgate.api.audit import deletion_audit
from metricgate.api.codec import Fields, empty_response, json_response
from metricgate.api.keys import SERVICE
from metricgate.api.middleware import error_response
from metricgate.api.routing import Route
from metricgate.api.services import AppServices
from metricgate.domain.artifacts.paths import (
    artifact_basename,
    join_artifact_path,
    normalize_artifact_path,
    proxied_store_path,
)
from metricgate.domain.auth.access import On, Target, Where
from metricgate.domain.auth.permissions import Permission
from metricgate.domain.errors import BadRequest, MetricgateError
from metricgate.domain.tracking.entities import ArtifactEntry
from metricgate.stores.artifacts.base import ArtifactStore

log = logging.getLogger(__name__)

UPLOAD_CHUNK_BYTES = 1024 * 1024
_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _store(request: web.Request) -> ArtifactStore:
    return request.app[SERVICE].artifacts


def _path_param(request: web.Request) -> str:
    # aiohttp has already percent-decoded the match; the store validates what is left.
    return request.match_info.get("path", "")


# ---------------------------------------------------------------- upload


async def counted_body(request: web.Request) -> AsyncIterator[bytes]:
    """The request body in chunks; raises before the end if it is shorter than announced.

    Raising inside the iterator (rather than after ``put``) keeps a truncated upload from ever
    being committed: the store discards its staging file.
    """
    received = 0
    async for chunk in request.content.iter_chunked(UPLOAD_CHUNK_BYTES):
        received += len(chunk)
        yield chunk
    expected = request.content_length
    if expected is not None and received != expected:
        raise BadRequest(f"Request body ended after {received} of {expected} bytes")


async def upload_artifact(request: web.Request) -> web.Response:
    await _store(request).put(_path_param(request), counted_body(request))
    return empty_response()


# ---------------------------------------------------------------- download


class _RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range ``[start, end)`` a Range header asks for; None means the whole file.

    Units other than bytes and multi-range requests are ignored (RFC 9110 lets a server send
    the full body instead); a malformed or unsatisfiable byte range raises.
    """
    if header is None:
        return None
    header = header.strip()
    if not header.lower().startswith("bytes="):
        return None
    if "," in header:
        return None
    match = _SINGLE_RANGE.match(header.replace(" ", "").lower())
    if match is None or match.group(1) == match.group(2) == "":
        raise _RangeNotSatisfiable
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last N bytes
        length = int(last)
        if length == 0 or size == 0:
            raise _RangeNotSatisfiable
        return max(0, size - length), size
    start = int(first)
    end = size if last == "" else min(int(last) + 1, size)
    if start >= size or (last != "" and int(last) < start):
        raise _RangeNotSatisfiable
    return start, end


def _content_disposition(name: str) -> str:
    # Attachment, never inline: artifacts are user content served from our origin (XSS).
    ascii_name = (
        name.encode("ascii", "ignore").decode("ascii").replace('"', "").replace("\\", "")
        or "download"
    )
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def _download_headers(path: str, content_type: str | None = None) -> dict[str, str]:
    name = artifact_basename(path)
    content_type = content_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
    return {
        "Content-Type": content_type,
        "Content-Disposition": _content_disposition(name),
        "X-Content-Type-Options": "nosniff",
        "Accept-Ranges": "bytes",
    }


def _requested_range(request: web.Request, size: int) -> tuple[int, int] | None:
    # With If-Range the client only wants the range if its copy is current; we expose no
    # validators to compare against, so the safe answer is the whole file.
    if "If-Range" in request.headers:
        return None
    return parse_range(request.headers.get("Range"), size)


async def download_artifact(request: web.Request) -> web.StreamResponse:
    return await send_artifact(request, _path_param(request))


async def send_artifact(
    request: web.Request, path: str, content_type: str | None = None
) -> web.StreamResponse:
    """Stream the committed artifact at store path ``path`` (Range-capable, as an attachment).

    Shared by the proxied download and the web UI's downloads (api/ui_artifacts.py), which
    pass MLflow's own content type; ``None`` guesses it from the extension.
    """
    store = _store(request)
    size = await store.size(path)  # NotFound (404 JSON) for a missing path or a directory
    try:
        byte_range = _requested_range(request, size)
    except _RangeNotSatisfiable:
        return error_response(
            "INVALID_PARAMETER_VALUE",
            f"Range {request.headers.get('Range')!r} cannot be satisfied for a {size}-byte artifact",
            416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    start, end = byte_range if byte_range is not None else (0, size)
    # aclosing: the store's reader holds an open file until it is closed or exhausted.
    async with contextlib.aclosing(store.read(path, start, end)) as chunks:
        # Pull the first chunk before sending headers so a file deleted in between still gets
        # a clean JSON 404 instead of a truncated 200.
        first = await anext(chunks, None)
        response = web.StreamResponse(
            status=206 if byte_range is not None else 200,
            headers=_download_headers(path, content_type),
        )
        response.content_length = end - start
        if byte_range is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        await response.prepare(request)
        await _send_body(request, response, first, chunks, end - start)
    return response


async def _send_body(
    request: web.Request,
    response: web.StreamResponse,
    first: bytes | None,
    chunks: AsyncIterator[bytes],
    expected: int,
) -> None:
    sent = 0
    try:
        if first is not None:
            await response.write(first)
            sent += len(first)
        async for chunk in chunks:
            await response.write(chunk)
            sent += len(chunk)
    except (OSError, MetricgateError) as exc:
        # A client that hung up (ConnectionResetError), or the store failing mid-stream (an S3
        # read): the status line is gone, so breaking the connection is the only signal left.
        log.info("download of %s stopped after %d bytes: %s", request.path, sent, exc)
        _abort(request)
        return
    if sent != expected:
        # Headers are gone already; the only honest signal left is a broken connection, which
        # the client reports instead of keeping a short file.
        log.warning(
            "download of %s sent %d of %d bytes (file changed?)", request.path, sent, expected
        )
        _abort(request)
        return
    await response.write_eof()


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


# ---------------------------------------------------------------- listing


def file_info(path: str, entry: ArtifactEntry) -> dict[str, Any]:
    """A FileInfo as mlflow's server writes it.

    ``FileInfo.to_proto`` sets ``file_size`` only when it is truthy, so directories *and empty
    files* come without it; the client reads a missing size as None.
    """
    out: dict[str, Any] = {"path": path, "is_dir": entry.is_dir}
    if not entry.is_dir and entry.file_size:
        out["file_size"] = entry.file_size
    return out


async def list_artifacts(request: web.Request) -> web.Response:
    """``GET artifacts?path=dir``: entries named by basename; ``{}`` for a file, empty or missing dir."""
    fields = Fields(request.query, query=True)
    entries = await _store(request).list(fields.str("path") or "")
    if not entries:
        # proto3 JSON omits an empty repeated field, so mlflow's server answers a bare {}.
        return empty_response()
    return json_response({"files": [file_info(e.path, e) for e in entries]})


async def delete_artifact(request: web.Request) -> web.Response:
    """With auth on, audited as an intent written before the bytes go (design-auth B7): the
    files live in S3 or on disk, outside any transaction the entry could share, and an entry
    before the delete means no crash can leave a delete without one. A delete that then fails
    adds an ``artifact.delete_failed`` entry; only a crash in between leaves an intent alone."""
    path = normalize_artifact_path(_path_param(request))
    who = deletion_audit(request)
    if who is None:
        await _store(request).delete(path)
        return empty_response()
    auth = request.app[SERVICE].auth
    assert auth is not None  # deletion_audit answers only with auth on
    details = _artifact_details(path)
    await auth.append_audit(
        who.actor_id, who.actor, who.method, who.client_addr, "artifact.deleted", "artifact",
        path, {**details, "intent": True}, who.request_id,
    )  # fmt: skip
    try:
        await _store(request).delete(path)
    except Exception as exc:
        with contextlib.suppress(Exception):  # the delete's own error is the one to answer
            await auth.append_audit(
                who.actor_id, who.actor, who.method, who.client_addr, "artifact.delete_failed",
                "artifact", path, {**details, "error": type(exc).__name__}, who.request_id,
            )  # fmt: skip
        raise
    return empty_response()


def _artifact_details(path: str) -> dict[str, Any]:
    """The path's experiment and run where it names them (``<experiment_id>/<run_id>/
    artifacts/...``), so the entry can be found by either."""
    parts = path.split("/")
    details: dict[str, Any] = {"path": path}
    if parts[0].isascii() and parts[0].isdigit():
        details["experiment_id"] = parts[0]
        if len(parts) > 2 and parts[2] == "artifacts":
            details["run_id"] = parts[1]
    return details


# ---------------------------------------------------------------- multipart download
# Multipart *upload* (mpu/*) lives in api/multipart.py.


def public_base(request: web.Request, marker: str) -> str:
    """``scheme://host/<route prefix>`` of this request, the part of its path before ``marker``.

    URLs handed to the client for plain ``requests`` calls (part uploads, ranged downloads) use
    the origin and prefix (/api/... or /ajax-api/...) the client reached us by; a
    TLS-terminating proxy says what that was in X-Forwarded-Proto / X-Forwarded-Host.
    """
    scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{scheme}://{host}{quote(request.path[: request.path.rindex(marker)])}"


async def presigned_download(request: web.Request) -> web.Response:
    """``GET presigned/<path>``: where to fetch the file in parallel Range requests.

    Stock MLflow presigns an S3 URL; ours is this gateway's own download URL (Range-capable on
    every store), so the client's multipart download (MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD)
    works on disk too and store credentials never leave the server.
    """
    path = normalize_artifact_path(_path_param(request))
    size = await _store(request).size(path)  # NotFound (404) for a missing path or a directory
    url = f"{public_base(request, '/presigned/')}/artifacts/{quote(path)}"
    return json_response({"url": url, "headers": {}, "file_size": size})


# ---------------------------------------------------------------- UI: runs' artifact listing


async def list_run_artifacts(request: web.Request) -> web.Response:
    """``GET /api/2.0/mlflow/artifacts/list?run_id=&path=``: what the web UI's file tree calls."""
    return json_response(
        await run_artifact_listing(request.app[SERVICE], Fields(request.query, query=True))
    )


async def run_artifact_listing(service: AppServices, fields: Fields) -> dict[str, Any]:
    """A run's artifacts/list answer (REST and GraphQL share it)."""
    relative = normalize_artifact_path(fields.str("path") or "", allow_root=True)
    root_uri = await service.runs.artifact_uri(fields.run_id())  # NotFound -> 404 like mlflow
    files: list[dict[str, Any]] = []
    base = proxied_store_path(root_uri)
    if base is not None:
        entries = await service.artifacts.list(join_artifact_path(base, relative))
        # Paths here are relative to the run's root, unlike the proxied listing's basenames.
        files = [file_info(join_artifact_path(relative, e.path), e) for e in entries]
    return {"root_uri": root_uri, "files": files}


_PATH = "{path:.*}"


def on_artifact_path(level: Permission) -> On:
    """``level`` on the experiment the path ``<experiment_id>/<run_id>/artifacts/...`` names, as
    stock's artifact proxy: READ to list and download, EDIT to upload, MANAGE to delete."""
    return On(Target.ARTIFACT_PATH, "path", level, where=Where.PATH)


ROUTES: list[Route] = [
    Route(
        "GET",
        "/artifacts",
        list_artifacts,
        On(Target.ARTIFACT_PATH, "path", Permission.READ, where=Where.QUERY),
    ),
    Route("GET", f"/artifacts/{_PATH}", download_artifact, on_artifact_path(Permission.READ)),
    Route("PUT", f"/artifacts/{_PATH}", upload_artifact, on_artifact_path(Permission.EDIT)),
    Route("DELETE", f"/artifacts/{_PATH}", delete_artifact, on_artifact_path(Permission.MANAGE)),
    Route("GET", f"/presigned/{_PATH}", presigned_download, on_artifact_path(Permission.READ)),
]

TRACKING_ROUTES: list[Route] = [
    Route(
        "GET",
        "/artifacts/list",
        list_run_artifacts,
        On(Target.RUN_ID, "run_id", Permission.READ, where=Where.QUERY, fallback="run_uuid"),
    ),
]
