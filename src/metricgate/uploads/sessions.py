"""Resumable upload sessions: create, receive parts (any order, in parallel), complete, abort.

PostgreSQL is the record of what the server has (sessions survive gateway restarts); the
artifact store holds the bytes in its staging area until the commit (``commit.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Any

from metricgate.config import UploadSettings
from metricgate.domain.artifacts.paths import (
    join_artifact_path,
    normalize_artifact_path,
    proxied_store_path,
)
from metricgate.domain.errors import InvalidParameter, MetricgateError, NotFound
from metricgate.domain.uploads import rules as checks
from metricgate.domain.uploads.entities import (
    ABORTED,
    COMMITTED,
    COMMITTING,
    EXPIRED,
    OPEN,
    NewFile,
    ReceivedPart,
    UploadSession,
)
from metricgate.stores.artifacts.base import ArtifactStore, StagedPart
from metricgate.stores.base import RunLookup, UploadStore
from metricgate.uploads.commit import SessionCommitter

log = logging.getLogger(__name__)

# At completion, how many missing parts a message names before "and N more".
_MISSING_SHOWN = 20


@dataclass(frozen=True)
class FileSpec:
    rel_path: str
    size: int
    sha256: str | None


def _expired(session_id: str) -> NotFound:
    return NotFound(f"Upload session '{session_id}' has expired")


def _not_open(session_id: str, state: str) -> MetricgateError:
    if state == EXPIRED:
        return _expired(session_id)
    return InvalidParameter(f"Upload session '{session_id}' is {state}; it takes no more parts")


def parse_files(raw: Any, is_directory: bool, settings: UploadSettings) -> list[FileSpec]:
    if not isinstance(raw, list) or not raw:
        raise InvalidParameter("'files' must be a non-empty list of {path, size, sha256}")
    if len(raw) > settings.max_files:
        raise InvalidParameter(
            f"An upload session takes at most {settings.max_files} files, got {len(raw)}"
        )
    if not is_directory and len(raw) != 1:
        raise InvalidParameter(
            "A file upload takes exactly one entry in 'files'; set 'directory': true for several"
        )
    specs: list[FileSpec] = []
    seen: set[str] = set()
    for item in raw:
        if not isinstance(item, dict):
            raise InvalidParameter("Each entry of 'files' must be an object {path, size, sha256}")
        rel = normalize_artifact_path(item.get("path") or "", allow_root=not is_directory)
        if rel in seen:
            raise InvalidParameter(f"File '{rel}' appears twice in 'files'")
        seen.add(rel)
        size = checks.check_file_size(item.get("size"), f"file '{rel}'")
        specs.append(
            FileSpec(rel, size, checks.sha256_hex(item.get("sha256"), f"sha256 of file '{rel}'"))
        )
    _refuse_file_under_file(specs)
    return specs


def _refuse_file_under_file(specs: list[FileSpec]) -> None:
    names = {s.rel_path for s in specs}
    for spec in specs:
        parent = spec.rel_path
        while "/" in parent:
            parent = parent.rsplit("/", 1)[0]
            if parent in names:
                raise InvalidParameter(
                    f"'{parent}' cannot be both a file and the directory of '{spec.rel_path}'"
                )


class UploadManager:
    def __init__(
        self,
        store: ArtifactStore,
        uploads: UploadStore,
        runs: RunLookup,
        settings: UploadSettings,
    ) -> None:
        self._store = store
        self._uploads = uploads
        self._runs = runs
        self._settings = settings
        self._limits = store.part_limits
        self._part_sizes = checks.part_size_bounds(
            settings.min_part_bytes, settings.max_part_bytes, self._limits
        )
        self.committer = SessionCommitter(store, uploads, settings.commit_lease_s)

    async def create(
        self,
        run_id: str,
        path: str | None,
        directory: bool,
        part_size: Any,
        files: Any,
        actor: str | None,
    ) -> UploadSession:
        part_size = checks.check_part_size(part_size, self._part_sizes)
        specs = parse_files(files, directory, self._settings)
        counts = [
            checks.part_count(
                s.size, part_size, f"file '{s.rel_path or path}'", self._limits.max_parts
            )
            for s in specs
        ]
        run = await self._runs.get(run_id)
        await self._runs.require_active(run_id)
        run_root = proxied_store_path(run.info.artifact_uri)
        if run_root is None:
            raise InvalidParameter(
                f"Run '{run_id}' keeps its artifacts at {run.info.artifact_uri!r}, which this server does not serve"
            )
        rel, dest = checks.destination(run_root, path, allow_root=directory)
        new_files = await self._stage_begin(specs, counts, dest)
        try:
            return await self._uploads.create(
                session_id=uuid.uuid4().hex, run_id=run_id, rel_path=rel, dest_path=dest,
                is_directory=directory, part_size=part_size, ttl_s=self._settings.ttl_s,
                actor=actor, files=new_files,
            )  # fmt: skip
        except BaseException:
            await self._abort_staged(new_files)
            raise

    async def _stage_begin(
        self, specs: list[FileSpec], counts: list[int], dest: str
    ) -> list[NewFile]:
        new_files: list[NewFile] = []
        try:
            for spec, count in zip(specs, counts, strict=True):
                file_dest = join_artifact_path(dest, spec.rel_path)
                staging_id = await self._store.stage_begin(file_dest)
                new_files.append(
                    NewFile(spec.rel_path, file_dest, spec.size, spec.sha256, staging_id, count)
                )
        except BaseException:
            await self._abort_staged(new_files)
            raise
        return new_files

    async def _abort_staged(self, files: list[NewFile]) -> None:
        for f in files:
            with contextlib.suppress(MetricgateError, OSError):
                await self._store.stage_abort(f.dest_path, f.staging_id)

    async def get(self, session_id: str) -> UploadSession:
        return await self._uploads.get(session_id)

    async def put_part(
        self,
        session_id: str,
        file_index: int,
        part_number: int,
        body: AsyncIterable[bytes],
        content_length: int | None,
        sha256: str | None,
        md5: str | None,
    ) -> StagedPart:
        target = await self._uploads.part_target(session_id, file_index)
        if target.state != OPEN:
            raise _not_open(session_id, target.state)
        if target.expired:
            raise _expired(session_id)
        file = target.file
        if not 1 <= part_number <= file.part_count:
            raise InvalidParameter(
                f"Part number {part_number} is out of range: file {file_index} has parts 1..{file.part_count}"
            )
        expected = file.expected_part_size(part_number, target.part_size)
        if content_length is not None and content_length != expected:
            raise InvalidParameter(_size_message(part_number, expected, content_length))
        checked = _checked_body(body, part_number, expected, md5)
        staged = await self._store.stage_part(
            file.dest_path, file.staging_id, part_number, checked, sha256
        )
        if staged.size != expected:  # the checked body makes this unreachable; never record it
            raise InvalidParameter(_size_message(part_number, expected, staged.size))
        part = ReceivedPart(part_number, staged.size, staged.sha256, staged.etag)
        if not await self._uploads.record_part(session_id, file_index, part, self._settings.ttl_s):
            current = await self._uploads.get(session_id)
            raise _not_open(session_id, current.state)
        return staged

    async def complete(self, session_id: str) -> UploadSession:
        session, started = await self._uploads.begin_commit(session_id, _check_complete)
        if started:
            return await self.committer.commit(session)
        # Already committed (a retried request), or another request is committing it right now
        # (the client polls GET; if that committer dies, a sweeper rolls the commit forward).
        return session

    async def abort(self, session_id: str) -> UploadSession:
        session, aborted = await self._uploads.abort(session_id)
        if not aborted and session.state in (COMMITTING, COMMITTED):
            raise InvalidParameter(
                f"Upload session '{session_id}' is {session.state}; it can no longer be aborted"
            )
        for file in session.files:
            with contextlib.suppress(MetricgateError, OSError):
                await self._store.stage_abort(file.dest_path, file.staging_id)
        return session


def _size_message(part_number: int, expected: int, got: int) -> str:
    which = "too large" if got > expected else "too small"
    return f"Part {part_number} is {which}: it must be exactly {expected} bytes, got {got}"


async def _checked_body(
    body: AsyncIterable[bytes], part_number: int, expected: int, md5: str | None
) -> AsyncIterator[bytes]:
    """Pass the body through, raising *inside* the stream on a size or MD5 mismatch so that the
    store discards the part instead of keeping it."""
    received = 0
    digest = hashlib.md5() if md5 is not None else None
    async for chunk in body:
        received += len(chunk)
        if received > expected:
            raise InvalidParameter(_size_message(part_number, expected, received))
        if digest is not None:
            await asyncio.to_thread(digest.update, chunk)
        yield chunk
    if received != expected:
        raise InvalidParameter(_size_message(part_number, expected, received))
    if digest is not None and digest.hexdigest() != md5:
        raise InvalidParameter(
            f"Checksum mismatch for part {part_number}: Content-MD5 does not match the data"
        )


def _check_complete(session: UploadSession, expired: bool) -> None:
    """Refuse completion unless every part of every file is there with the right sizes."""
    if session.state in (COMMITTED, COMMITTING):
        return
    if session.state == ABORTED:
        raise InvalidParameter(f"Upload session '{session.session_id}' was aborted" + (
            f": {session.failure}" if session.failure else ""))  # fmt: skip
    if session.state == EXPIRED or expired:
        raise _expired(session.session_id)
    missing: list[str] = []
    for file in session.files:
        gaps = file.missing_parts()
        missing += [f"file {file.index} part {n}" for n in gaps]
        received = sum(p.size for p in file.parts)
        if not gaps and received != file.size:
            raise InvalidParameter(
                f"File {file.index} received {received} bytes, expected {file.size}"
            )
    if missing:
        shown = ", ".join(missing[:_MISSING_SHOWN])
        more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
        raise InvalidParameter(
            f"Upload session '{session.session_id}' is missing parts: {shown}{more}"
        )
