"""MLflow's proxied multipart upload (``mpu/create|complete|abort``), on any artifact store.

Stock MLflow hands the client presigned S3 URLs for the parts. We hand out URLs that point back
at this gateway (``PUT mpu/part/<path>?upload_id=&part_number=``), which streams each part into
the store's staging area (``stage_part``), so the protocol works on the local store too and no
store credentials ever leave the server. The client sends those PUTs with plain ``requests.put``:
no MLflow auth and no retries, so the upload id (an S3 UploadId or 128 random bits) is what
authorises a part. ``mpu/complete`` is the store's atomic ``stage_commit``: until then nothing is
listed or downloadable.
"""

from __future__ import annotations

import asyncio
import re
from urllib.parse import quote

from aiohttp import web

from metricgate.api.artifacts import counted_body, on_artifact_path, public_base
from metricgate.api.codec import Fields, empty_response, json_response, read_json
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.domain.artifacts.paths import join_artifact_path, normalize_artifact_path
from metricgate.domain.auth.permissions import Permission
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.lru import Lru
from metricgate.domain.uploads.rules import check_part_number, strip_etag
from metricgate.stores.artifacts.base import MAX_PART_NUMBER, ArtifactStore, StagedPart

_CREATE = "/mpu/create/"


def _store(request: web.Request) -> ArtifactStore:
    return request.app[SERVICE].artifacts


def _destination(request: web.Request, fields: Fields) -> str:
    """``<dest-dir>/<basename of the client's local path>``, as stock MLflow names the artifact."""
    directory = normalize_artifact_path(request.match_info.get("path", ""), allow_root=True)
    local_path = fields.req_str("path")
    # The client sends its own local path; it may be a Windows one.
    name = re.split(r"[\\/]", local_path)[-1]
    if not name:
        raise InvalidParameter(f"Invalid path {local_path[:200]!r}: it names no file")
    return normalize_artifact_path(join_artifact_path(directory, name))


def _part_url(request: web.Request, destination: str, upload_id: str, part_number: int) -> str:
    return (
        f"{public_base(request, _CREATE)}/mpu/part/{quote(destination)}"
        f"?upload_id={quote(upload_id, safe='')}&part_number={part_number}"
    )


async def create_multipart_upload(request: web.Request) -> web.Response:
    fields = await read_json(request)
    destination = _destination(request, fields)
    num_parts = fields.int("num_parts", default=1)
    assert num_parts is not None
    if not 1 <= num_parts <= MAX_PART_NUMBER:
        raise InvalidParameter(
            f"Invalid num_parts {num_parts}: must be between 1 and {MAX_PART_NUMBER}"
        )
    upload_id = await _store(request).stage_begin(destination)
    credentials = [
        {"url": _part_url(request, destination, upload_id, n), "part_number": n, "headers": {}}
        for n in range(1, num_parts + 1)
    ]
    return json_response({"upload_id": upload_id, "credentials": credentials})


def _required_int(fields: Fields, name: str) -> int:
    value = fields.int(name, required=True)
    assert value is not None  # required=True raises when it is absent
    return value


async def upload_part(request: web.Request) -> web.Response:
    """``PUT mpu/part/<path>?upload_id=&part_number=``: the body streams into the staging area."""
    fields = Fields(request.query, query=True)
    upload_id = fields.req_str("upload_id")
    part_number = check_part_number(_required_int(fields, "part_number"))
    path = request.match_info.get("path", "")
    staged = await _store(request).stage_part(path, upload_id, part_number, counted_body(request))
    response = empty_response()
    # The client copies this header into mpu/complete, as it would S3's.
    response.headers["ETag"] = f'"{staged.etag}"'
    return response


def _requested_parts(fields: Fields) -> list[tuple[int, str]]:
    requested: list[tuple[int, str]] = []
    for item in fields.list("parts"):
        if not isinstance(item, dict):
            raise InvalidParameter("Invalid parts: expected a list of {part_number, etag} objects")
        part = Fields(item)
        number = check_part_number(_required_int(part, "part_number"))
        requested.append((number, strip_etag(part.str("etag", default=""))))
    if not requested:
        raise InvalidParameter("Missing value for required parameter 'parts'.")
    return requested


class _Completions:
    """Serialises completions of one upload and answers a repeated one from memory.

    The client retries a POST that timed out (120 s by default) or got a 5xx; a commit of a
    large file on disk (a copy) can outlast that. The retry then waits for the first attempt
    and gets its answer, instead of racing it or finding the upload gone (404).
    """

    def __init__(self, remember: int = 1024) -> None:
        self._locks: dict[str, asyncio.Lock] = {}
        self._done: Lru[str, tuple[str, tuple[tuple[int, str], ...]]] = Lru(remember)

    def lock(self, upload_id: str) -> asyncio.Lock:
        return self._locks.setdefault(upload_id, asyncio.Lock())

    def already(self, upload_id: str, request: tuple[str, tuple[tuple[int, str], ...]]) -> bool:
        return self._done.peek(upload_id) == request

    def finished(
        self, upload_id: str, request: tuple[str, tuple[tuple[int, str], ...]] | None
    ) -> None:
        if request is not None:
            self._done.put(upload_id, request)
        # Waiters hold the lock object itself; later arrivals find the answer in _done first.
        self._locks.pop(upload_id, None)


_COMPLETIONS = _Completions()


async def complete_multipart_upload(request: web.Request) -> web.Response:
    fields = await read_json(request)
    destination = _destination(request, fields)
    upload_id = fields.req_str("upload_id")
    requested = _requested_parts(fields)
    key = (destination, tuple(requested))
    async with _COMPLETIONS.lock(upload_id):
        if _COMPLETIONS.already(upload_id, key):
            return empty_response()
        done = None
        try:
            await _complete(request, destination, upload_id, requested)
            done = key
        finally:
            _COMPLETIONS.finished(upload_id, done)
    return empty_response()


async def _complete(
    request: web.Request, destination: str, upload_id: str, requested: list[tuple[int, str]]
) -> None:
    store = _store(request)
    stored = {part.part_number: part for part in await store.stage_parts(destination, upload_id)}
    parts: list[StagedPart] = []
    for number, etag in requested:
        have = stored.get(number)
        if have is None:
            raise InvalidParameter(f"Part {number} of '{destination}' was never uploaded")
        # The client's ETag, the stored size: stage_commit refuses a part that does not match.
        parts.append(StagedPart(number, have.size, etag, have.sha256))
    await store.stage_commit(destination, upload_id, parts)


async def abort_multipart_upload(request: web.Request) -> web.Response:
    fields = await read_json(request)
    await _store(request).stage_abort(_destination(request, fields), fields.req_str("upload_id"))
    return empty_response()


_PATH = "{path:.*}"
# Stock's artifact proxy asks EDIT of every mpu/* call (POST and PUT alike).
_EDIT = on_artifact_path(Permission.EDIT)

ROUTES: list[Route] = [
    Route("POST", f"/mpu/create/{_PATH}", create_multipart_upload, _EDIT),
    Route("POST", f"/mpu/complete/{_PATH}", complete_multipart_upload, _EDIT),
    Route("POST", f"/mpu/abort/{_PATH}", abort_multipart_upload, _EDIT),
    Route("PUT", f"/mpu/part/{_PATH}", upload_part, _EDIT),
]
