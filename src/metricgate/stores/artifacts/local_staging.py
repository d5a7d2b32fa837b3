"""Staged (multipart) uploads for the local store, under ``<root>/.metricgate-staging/uploads/``.

Layout of one upload (its staging id is the directory name, 32 hex digits)::

    uploads/<id>/upload.json          {"path": ..., "started_at": ...}
    uploads/<id>/part-00007.json      {"file": "part-00007-<uuid>.data", "size", "etag", "sha256"}
    uploads/<id>/part-00007-<uuid>.data

A part's data file gets a fresh name on every upload and its JSON record is switched to it by
one atomic rename, so a re-uploaded part replaces the old one without a window in which the
record describes bytes it does not match, and a crash leaves the old part or the new one.
Nothing here is under the listed tree: ``list`` hides the staging directory and every path
is refused if it names it. Commit concatenates the parts into a temp file (``copy_file_range``,
so the kernel moves the bytes) and reuses the root's fsync + rename commit (local_root.py).
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.uploads.rules import check_part_number, checksum_mismatch, normalize_sha256
from metricgate.stores.artifacts.base import StagedPart
from metricgate.stores.artifacts.files import Descriptor, StagedFile, fsync_dir, stream_fd
from metricgate.stores.artifacts.local_root import LocalRoot
from metricgate.stores.artifacts.parts import spool_hashed

UPLOADS_DIR = "uploads"
_META = "upload.json"
_STAGING_ID = re.compile(r"^[0-9a-f]{32}$")
_PART_RECORD = re.compile(r"^part-(\d{5})\.json$")
_COPY_CHUNK_BYTES = 64 * 1024 * 1024


def _write_json_durable(directory: str, name: str, payload: dict[str, Any]) -> None:
    """Write ``name`` in ``directory`` by temp file + fsync + rename (+ dir fsync)."""
    tmp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        json.dump(payload, out)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, os.path.join(directory, name))
    fsync_dir(directory)


def _read_json(path: str) -> dict[str, Any] | None:
    try:
        with open(path, encoding="utf-8") as src:
            data = json.load(src)
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _copy_into(dst_fd: int, src_path: str, size: int) -> None:
    with open(src_path, "rb") as src:
        src_fd = src.fileno()
        copied = 0
        while copied < size:
            try:
                n = os.copy_file_range(src_fd, dst_fd, min(_COPY_CHUNK_BYTES, size - copied))
            except OSError:
                n = os.sendfile(dst_fd, src_fd, None, min(_COPY_CHUNK_BYTES, size - copied))
            if n == 0:
                raise OSError(
                    f"staged part {src_path} is shorter than recorded ({copied} of {size} bytes)"
                )
            copied += n


class LocalStagedUploads:
    """The ``stage_*`` and external-object half of ``LocalArtifactStore``; it delegates here."""

    def __init__(self, root: LocalRoot, read_chunk_bytes: int) -> None:
        self._root = root
        self._read_chunk = read_chunk_bytes
        self._uploads = os.path.join(root.staging, UPLOADS_DIR)

    # ------------------------------------------------------------------ helpers

    def _dir(self, staging_id: str) -> str:
        if not isinstance(staging_id, str) or not _STAGING_ID.match(staging_id):
            raise InvalidParameter(f"Invalid staging id {str(staging_id)[:80]!r}")
        return os.path.join(self._uploads, staging_id)

    def _open_upload(self, rel: str, staging_id: str) -> str:
        directory = self._dir(staging_id)
        meta = _read_json(os.path.join(directory, _META))
        if meta is None or meta.get("path") != rel:
            raise NotFound(f"No staged upload {staging_id!r} for artifact '{rel}'")
        return directory

    # ------------------------------------------------------------------ begin / parts

    async def begin(self, path: str) -> str:
        rel = self._root.relative(path)
        await asyncio.to_thread(self._root.check_writable, rel)
        staging_id = uuid.uuid4().hex
        await asyncio.to_thread(self._begin_sync, rel, staging_id)
        return staging_id

    def _begin_sync(self, rel: str, staging_id: str) -> None:
        os.makedirs(self._uploads, exist_ok=True)
        directory = os.path.join(self._uploads, staging_id)
        os.mkdir(directory)
        _write_json_durable(directory, _META, {"path": rel, "started_at": time.time()})

    async def part(
        self,
        path: str,
        staging_id: str,
        part_number: int,
        chunks: AsyncIterable[bytes],
        expected_sha256: str | None = None,
    ) -> StagedPart:
        rel = self._root.relative(path)
        check_part_number(part_number)
        expected = normalize_sha256(expected_sha256)
        directory = await asyncio.to_thread(self._open_upload, rel, staging_id)
        data_name = f"part-{part_number:05d}-{uuid.uuid4().hex}.data"
        data_path = os.path.join(directory, data_name)
        fd = Descriptor(
            await asyncio.to_thread(os.open, data_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        )
        try:
            digest = await spool_hashed(chunks, fd)
            await asyncio.to_thread(fd.call, os.fsync)
            fd.release()
            sha256 = digest.sha256.hexdigest()
            if expected is not None and sha256 != expected:
                raise checksum_mismatch(f"part {part_number} of '{rel}'", expected, sha256)
            staged = StagedPart(part_number, digest.size, digest.md5.hexdigest(), sha256)
            await asyncio.to_thread(self._record_part, directory, data_name, staged)
            return staged
        except BaseException:
            # Synchronous, like LocalArtifactStore.put's discard: this also runs on cancellation.
            fd.release()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(data_path)
            raise

    @staticmethod
    def _record_part(directory: str, data_name: str, part: StagedPart) -> None:
        record_name = f"part-{part.part_number:05d}.json"
        previous = _read_json(os.path.join(directory, record_name))
        record = {"file": data_name, "size": part.size, "etag": part.etag, "sha256": part.sha256}
        _write_json_durable(directory, record_name, record)
        if previous and isinstance(previous.get("file"), str) and previous["file"] != data_name:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(directory, os.path.basename(previous["file"])))

    async def parts(self, path: str, staging_id: str) -> list[StagedPart]:
        rel = self._root.relative(path)
        return await asyncio.to_thread(self._parts_sync, rel, staging_id)

    def _parts_sync(self, rel: str, staging_id: str) -> list[StagedPart]:
        directory = self._open_upload(rel, staging_id)
        return [part for part, _ in self._stored_parts(directory).values()]

    @staticmethod
    def _stored_parts(directory: str) -> dict[int, tuple[StagedPart, str]]:
        """part number -> (part, data file path) for every part whose data file is intact."""
        found: dict[int, tuple[StagedPart, str]] = {}
        with os.scandir(directory) as entries:
            for entry in entries:
                match = _PART_RECORD.match(entry.name)
                record = _read_json(entry.path) if match else None
                if match is None or record is None:
                    continue
                data_path = os.path.join(directory, os.path.basename(str(record.get("file", ""))))
                try:
                    if os.stat(data_path).st_size != record["size"]:
                        continue
                except (FileNotFoundError, KeyError):
                    continue
                number = int(match.group(1))
                part = StagedPart(
                    number, int(record["size"]), str(record["etag"]), str(record["sha256"])
                )
                found[number] = (part, data_path)
        return dict(sorted(found.items()))

    # ------------------------------------------------------------------ commit / abort

    async def commit(self, path: str, staging_id: str, parts: list[StagedPart]) -> int:
        rel = self._root.relative(path)
        sources = await asyncio.to_thread(self._check_commit, rel, staging_id, parts)
        staged = await asyncio.to_thread(self._root.create_staged)
        try:
            size = await asyncio.to_thread(self._concatenate, staged, sources)
            await asyncio.to_thread(self._root.commit, staged, rel)
        except BaseException:
            staged.discard()
            raise
        await asyncio.to_thread(shutil.rmtree, self._dir(staging_id), True)
        return size

    def _check_commit(
        self, rel: str, staging_id: str, parts: list[StagedPart]
    ) -> list[tuple[str, int]]:
        directory = self._open_upload(rel, staging_id)
        if not parts:
            raise InvalidParameter(f"Cannot complete the upload of '{rel}': no parts were given")
        stored = self._stored_parts(directory)
        sources: list[tuple[str, int]] = []
        previous = 0
        for part in parts:
            if part.part_number <= previous:
                raise InvalidParameter(
                    f"Parts of '{rel}' must be listed in ascending part-number order"
                )
            previous = part.part_number
            have = stored.get(part.part_number)
            if have is None:
                raise InvalidParameter(f"Part {part.part_number} of '{rel}' was never uploaded")
            if not _same_part(part, have[0]):
                raise InvalidParameter(
                    f"Part {part.part_number} of '{rel}' does not match the stored part"
                )
            sources.append((have[1], have[0].size))
        return sources

    @staticmethod
    def _concatenate(staged: StagedFile, sources: list[tuple[str, int]]) -> int:
        total = 0
        for data_path, size in sources:
            staged.fd.call(_copy_into, data_path, size)
            total += size
        return total

    async def abort(self, path: str, staging_id: str) -> None:
        rel = self._root.relative(path, allow_root=True)
        await asyncio.to_thread(self._abort_sync, rel, staging_id)

    def _abort_sync(self, rel: str, staging_id: str) -> None:
        directory = self._dir(staging_id)
        meta = _read_json(os.path.join(directory, _META))
        # An upload without its record (a crash inside begin) belongs to no path: anyone may drop it.
        if meta is not None and meta.get("path") != rel:
            raise NotFound(f"No staged upload {staging_id!r} for artifact '{rel}'")
        shutil.rmtree(directory, ignore_errors=True)

    async def list(self) -> builtins.list[tuple[str, str, float]]:
        return await asyncio.to_thread(self._list_sync)

    def _list_sync(self) -> builtins.list[tuple[str, str, float]]:
        found: list[tuple[str, str, float]] = []
        try:
            entries = list(os.scandir(self._uploads))
        except FileNotFoundError:
            return []
        for entry in entries:
            if not _STAGING_ID.match(entry.name) or not entry.is_dir(follow_symlinks=False):
                continue
            meta = _read_json(os.path.join(entry.path, _META))
            if meta is None:
                with contextlib.suppress(FileNotFoundError):
                    found.append(("", entry.name, entry.stat(follow_symlinks=False).st_mtime))
                continue
            found.append(
                (str(meta.get("path", "")), entry.name, float(meta.get("started_at", 0.0)))
            )
        return sorted(found, key=lambda item: item[2])

    # ------------------------------------------------------------------ external objects

    @staticmethod
    def external_path(uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
            raise InvalidParameter(
                f"Invalid reference URI {uri[:200]!r}: this store reaches file:///abs/path URIs only"
            )
        path = unquote(parsed.path)
        if not path.startswith("/") or "\x00" in path:
            raise InvalidParameter(
                f"Invalid reference URI {uri[:200]!r}: an absolute path is required"
            )
        return path

    async def head_external(self, uri: str) -> tuple[int, str | None]:
        path = self.external_path(uri)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"No such object: {uri[:200]!r}") from None
        if not Path(path).is_file():
            raise NotFound(f"No such object: {uri[:200]!r} is not a regular file")
        # No content hash for free on a filesystem: mtime + size changes whenever the file does.
        return st.st_size, f"{st.st_mtime_ns:x}-{st.st_size:x}"

    async def read_external(
        self, uri: str, start: int, end: int | None
    ) -> AsyncGenerator[bytes, None]:
        path = self.external_path(uri)
        try:
            fd = await asyncio.to_thread(os.open, path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"No such object: {uri[:200]!r}") from None
        async for chunk in stream_fd(fd, start, end, self._read_chunk):
            yield chunk


def _same_part(given: StagedPart, stored: StagedPart) -> bool:
    if given.size != stored.size or given.etag.strip('"') != stored.etag:
        return False
    return not given.sha256 or given.sha256 == stored.sha256
