"""metricgate's resumable upload API and artifact references, under ``/api/2.0/metricgate``.

Handlers parse HTTP and shape JSON; the rules live in ``metricgate.uploads``. The routes and
their shapes are described for clients in ``openapi.py`` (served at ``/openapi.json``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from metricgate.api.audit import deletion_audit
from metricgate.api.codec import Fields, empty_response, json_response, read_fields, read_json
from metricgate.api.keys import SERVICE
from metricgate.api.openapi import OPENAPI
from metricgate.api.routing import Route
from metricgate.domain.auth.access import Authenticated, On, Target, Where
from metricgate.domain.auth.permissions import Permission
from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.uploads import rules as checks
from metricgate.domain.uploads.entities import (
    ArtifactReference,
    ReceivedPart,
    UploadFile,
    UploadSession,
)
from metricgate.stores.artifacts.base import StagedPart
from metricgate.uploads.references import ReferenceManager
from metricgate.uploads.sessions import UploadManager

PREFIX = "/api/2.0/metricgate"
BODY_CHUNK_BYTES = 1024 * 1024
_SESSION_ID = re.compile(r"^[0-9a-f]{32}$")
_ACTOR_HEADER = "X-Metricgate-Actor"


def _uploads(request: web.Request) -> UploadManager:
    manager = request.app[SERVICE].uploads
    if manager is None:
        raise NotFound("The upload API is not enabled on this server")
    return manager


def _references(request: web.Request) -> ReferenceManager:
    manager = request.app[SERVICE].references
    if manager is None:
        raise NotFound("Artifact references are not enabled on this server")
    return manager


def _session_id(request: web.Request) -> str:
    value = request.match_info["upload_id"]
    if not _SESSION_ID.match(value):
        raise NotFound(f"Upload session '{value[:64]}' does not exist")
    return value


def _int_segment(request: web.Request, name: str) -> int:
    value = request.match_info[name]
    # ASCII digits only: str.isdigit() is also true of '²' or '٣', which int() refuses or reads.
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise InvalidParameter(f"Invalid {name} {value[:32]!r}: expected a non-negative integer")
    return int(value)


# ---------------------------------------------------------------- encoding


def _encode_part(part: ReceivedPart | StagedPart) -> dict[str, Any]:
    return {
        "part_number": part.part_number,
        "size": part.size,
        "sha256": part.sha256,
        "etag": part.etag,
    }


def _encode_file(file: UploadFile) -> dict[str, Any]:
    return {
        "index": file.index,
        "path": file.rel_path,
        "size": file.size,
        "sha256": file.sha256,
        "part_count": file.part_count,
        "committed": file.committed,
        "parts": [_encode_part(p) for p in file.parts],
        "missing_parts": file.missing_parts(),
    }


def encode_session(session: UploadSession) -> dict[str, Any]:
    out: dict[str, Any] = {
        "upload_id": session.session_id,
        "run_id": session.run_id,
        "path": session.rel_path,
        "directory": session.is_directory,
        "state": session.state,
        "part_size": session.part_size,
        "total_size": session.total_size,
        "expires_at": session.expires_at_ms,
        "created_at": session.created_at_ms,
        "updated_at": session.updated_at_ms,
        "files": [_encode_file(f) for f in session.files],
    }
    if session.actor:
        out["actor"] = session.actor
    if session.failure:
        out["failure"] = session.failure
    return out


def encode_reference(ref: ArtifactReference) -> dict[str, Any]:
    return {
        "run_id": ref.run_id,
        "path": ref.rel_path,
        "uri": ref.uri,
        "size": ref.size,
        "sha256": ref.sha256,
        "etag": ref.etag,
        "registered_at": ref.registered_at_ms,
    }


# ---------------------------------------------------------------- sessions


async def create_upload(request: web.Request) -> web.Response:
    fields = await read_json(request)
    actor = request.headers.get(_ACTOR_HEADER) or fields.str("actor") or request.remote
    session = await _uploads(request).create(
        run_id=fields.run_id(),
        path=fields.str("path"),
        directory=bool(fields.bool("directory", default=False)),
        part_size=fields.raw.get("part_size"),
        files=fields.raw.get("files"),
        actor=actor[:200] if actor else None,
    )
    return json_response(encode_session(session))


async def get_upload(request: web.Request) -> web.Response:
    return json_response(encode_session(await _uploads(request).get(_session_id(request))))


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(BODY_CHUNK_BYTES):
        yield chunk


async def upload_part(request: web.Request) -> web.Response:
    sha256 = request.headers.get("X-Checksum-SHA256") or request.headers.get(
        "x-amz-checksum-sha256"
    )
    part = await _uploads(request).put_part(
        _session_id(request),
        _int_segment(request, "file_index"),
        _int_segment(request, "part_number"),
        _body(request),
        request.content_length,
        checks.sha256_hex(sha256, "X-Checksum-SHA256 header"),
        checks.md5_hex(request.headers.get("Content-MD5")),
    )
    response = json_response(_encode_part(part))
    response.headers["ETag"] = f'"{part.etag}"'
    return response


async def complete_upload(request: web.Request) -> web.Response:
    return json_response(encode_session(await _uploads(request).complete(_session_id(request))))


async def abort_upload(request: web.Request) -> web.Response:
    return json_response(encode_session(await _uploads(request).abort(_session_id(request))))


# ---------------------------------------------------------------- references


async def create_reference(request: web.Request) -> web.Response:
    fields = await read_json(request)
    ref = await _references(request).register(
        run_id=fields.run_id(),
        path=fields.str("path", required=True),
        uri=fields.raw.get("uri"),
        size=fields.raw.get("size"),
        sha256=fields.raw.get("sha256"),
        etag=fields.raw.get("etag"),
    )
    return json_response({"reference": encode_reference(ref)})


async def list_references(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    refs = await _references(request).list(fields.run_id())
    return json_response({"references": [encode_reference(r) for r in refs]})


async def delete_reference(request: web.Request) -> web.Response:
    """``run_id`` and ``path`` in the query string or in a JSON body."""
    fields = await read_json(request) if request.body_exists else Fields(request.query, query=True)
    await _references(request).delete(
        fields.run_id(), fields.str("path", required=True), audit=deletion_audit(request)
    )
    return empty_response()


async def openapi_document(request: web.Request) -> web.Response:
    return json_response(OPENAPI)


_UPLOAD = "/uploads/{upload_id}"


def _on_run(level: Permission) -> On:
    return On(Target.RUN_ID, "run_id", level, fallback="run_uuid")


def _on_session(level: Permission) -> On:
    """``level`` on the run of the upload session the path names."""
    return On(Target.UPLOAD_ID, "upload_id", level, where=Where.PATH)


# Writing a run's artifacts, by session or by reference, needs EDIT on the run (as stock's
# artifact upload); reading a session or the references, READ.
_SESSION_EDIT = _on_session(Permission.EDIT)
ROUTES: list[Route] = [
    Route("POST", "/uploads", create_upload, _on_run(Permission.EDIT)),
    Route("GET", _UPLOAD, get_upload, _on_session(Permission.READ)),
    Route("PUT", _UPLOAD + "/files/{file_index}/parts/{part_number}", upload_part, _SESSION_EDIT),
    Route("POST", _UPLOAD + "/complete", complete_upload, _SESSION_EDIT),
    Route("DELETE", _UPLOAD, abort_upload, _SESSION_EDIT),
    Route("POST", "/artifact-references", create_reference, _on_run(Permission.EDIT)),
    Route("GET", "/artifact-references", list_references, _on_run(Permission.READ)),
    Route("DELETE", "/artifact-references", delete_reference, _on_run(Permission.EDIT)),
    Route("GET", "/openapi.json", openapi_document, Authenticated()),
]
