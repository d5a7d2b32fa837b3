"""Artifacts on the local filesystem, under one root directory.

Writes are atomic: bytes go to a temp file in a hidden staging directory under the root,
which is fsynced and then ``os.replace``d into place, so readers see the old file or the new
one, never a torn one, and a crash leaves at most a stale staging file (swept on open).
All file I/O runs in worker threads so that a multi-GB artifact never stalls the event loop,
and data moves in bounded chunks so memory does not grow with file size.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
import shutil
import stat
import time
from collections.abc import AsyncGenerator, AsyncIterable
from pathlib import Path

from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.tracking.entities import ArtifactEntry
from metricgate.domain.uploads.entities import LOCAL_PART_LIMITS, PartLimits
from metricgate.stores.artifacts.base import StagedPart
from metricgate.stores.artifacts.files import StagedFile, stream_fd, write_all
from metricgate.stores.artifacts.local_root import STAGING_DIR, LocalRoot
from metricgate.stores.artifacts.local_staging import UPLOADS_DIR, LocalStagedUploads
from metricgate.stores.artifacts.parts import spool

__all__ = ["DEFAULT_STALE_AFTER_S", "READ_CHUNK_BYTES", "STAGING_DIR", "LocalArtifactStore"]

log = logging.getLogger(__name__)

READ_CHUNK_BYTES = 1024 * 1024
# A staging file is only stale when nothing has written to it for this long; an upload in
# progress in another process sharing the root keeps touching its file.
DEFAULT_STALE_AFTER_S = 3600.0


class LocalArtifactStore:
    """``ArtifactStore`` on a local directory; see the module docstring for the guarantees."""

    part_limits: PartLimits = LOCAL_PART_LIMITS

    def __init__(self, root: Path | str, *, read_chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        self._root = LocalRoot(root)
        self._read_chunk = read_chunk_bytes
        self._staged = LocalStagedUploads(self._root, read_chunk_bytes)

    @classmethod
    async def open(
        cls, root: Path | str, *, stale_after_s: float = DEFAULT_STALE_AFTER_S
    ) -> LocalArtifactStore:
        """Create the root if needed and drop staging files left by a crash."""
        store = cls(root)
        await asyncio.to_thread(os.makedirs, store._root.staging, exist_ok=True)
        removed = await store.sweep_staging(stale_after_s)
        if removed:
            log.info("removed %d stale staging file(s) under %s", removed, store._root.staging)
        return store

    @property
    def root(self) -> Path:
        return Path(self._root.path)

    # ------------------------------------------------------------------ writes

    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        rel = self._root.relative(path)
        # Fail before consuming the body when the destination can never be written.
        await asyncio.to_thread(self._root.check_writable, rel)
        staged = await asyncio.to_thread(self._root.create_staged)
        try:
            size = await self._fill(staged, chunks)
            await asyncio.to_thread(self._root.commit, staged, rel)
            return size
        except BaseException:
            # Synchronous and non-blocking on purpose: this also runs on cancellation (client
            # went away), where a second await could be cancelled too. A crash here at worst
            # leaves a staging file for sweep_staging.
            staged.discard()
            raise

    async def _fill(self, staged: StagedFile, chunks: AsyncIterable[bytes]) -> int:
        size = 0

        def write(batch: list[bytes]) -> None:
            nonlocal size
            staged.fd.call(write_all, batch)
            size += sum(map(len, batch))

        await spool(chunks, write)
        return size

    # ------------------------------------------------------------------ reads

    async def size(self, path: str) -> int:
        rel = self._root.relative(path)
        return await asyncio.to_thread(self._size_sync, rel)

    def _size_sync(self, rel: str) -> int:
        try:
            st = os.stat(self._root.real(rel))
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(rel) from None
        if not stat.S_ISREG(st.st_mode):
            raise self._not_found(rel)
        return st.st_size

    @staticmethod
    def _not_found(rel: str) -> NotFound:
        return NotFound(f"No such artifact: '{rel}'")

    def read(
        self, path: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        # Not an async generator itself, so that a bad path or range raises at the call.
        rel = self._root.relative(path)
        if start < 0 or (end is not None and end < start):
            raise InvalidParameter(f"Invalid byte range [{start}, {end}) for artifact {rel!r}")
        return self._read_range(rel, start, end)

    async def _read_range(
        self, rel: str, start: int, end: int | None
    ) -> AsyncGenerator[bytes, None]:
        raw_fd, _ = await asyncio.to_thread(self._open_for_read, rel)
        async for chunk in stream_fd(raw_fd, start, end, self._read_chunk):
            yield chunk

    def _open_for_read(self, rel: str) -> tuple[int, int]:
        try:
            fd = os.open(self._root.real(rel), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(rel) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise self._not_found(rel)
        return fd, st.st_size

    async def list(self, path: str) -> builtins.list[ArtifactEntry]:
        rel = self._root.relative(path, allow_root=True)
        return await asyncio.to_thread(self._list_sync, rel)

    def _list_sync(self, rel: str) -> builtins.list[ArtifactEntry]:
        real = self._root.real(rel)
        entries: list[ArtifactEntry] = []
        try:
            with os.scandir(real) as iterator:
                for dir_entry in iterator:
                    entry = self._entry(dir_entry)
                    if entry is not None:
                        entries.append(entry)
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(entries, key=lambda e: e.path)

    def _entry(self, dir_entry: os.DirEntry[str]) -> ArtifactEntry | None:
        if dir_entry.path == self._root.staging:
            return None
        try:
            if dir_entry.is_symlink() and not self._root.is_confined(
                os.path.realpath(dir_entry.path)
            ):
                return None  # never reveal what an escaping link points at
            if dir_entry.is_dir():
                return ArtifactEntry(dir_entry.name, True, None)
            if dir_entry.is_file():
                return ArtifactEntry(dir_entry.name, False, dir_entry.stat().st_size)
        except FileNotFoundError:
            pass  # deleted while we were listing
        return None  # sockets, FIFOs, dangling links: not artifacts

    # ------------------------------------------------------------------ deletes

    async def delete(self, path: str) -> None:
        rel = self._root.relative(path)
        await asyncio.to_thread(self._delete_sync, rel)

    def _delete_sync(self, rel: str) -> None:
        real_parent, name = self._root.real_parent(rel)
        target = os.path.join(real_parent, name)
        try:
            st = os.lstat(target)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            if stat.S_ISDIR(st.st_mode):
                # rmtree never follows links inside the tree, so it cannot delete outside the root.
                shutil.rmtree(target)
            else:
                os.unlink(target)  # a link is removed itself, never its target
        except FileNotFoundError:
            pass  # a concurrent delete got there first

    # ------------------------------------------------------------------ housekeeping

    async def sweep_staging(self, older_than_s: float) -> int:
        """Remove staging files untouched for ``older_than_s``; returns how many were removed."""
        return await asyncio.to_thread(self._sweep_sync, older_than_s)

    def _sweep_sync(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        removed = 0
        try:
            iterator = os.scandir(self._root.staging)
        except FileNotFoundError:
            return 0
        with iterator:
            for dir_entry in iterator:
                removed += self._sweep_entry(dir_entry, cutoff)
        return removed

    @staticmethod
    def _sweep_entry(dir_entry: os.DirEntry[str], cutoff: float) -> int:
        if dir_entry.name == UPLOADS_DIR:
            return 0  # staged uploads live for their session's TTL; the upload GC owns them
        try:
            if dir_entry.stat(follow_symlinks=False).st_mtime >= cutoff:
                return 0
            if dir_entry.is_dir(follow_symlinks=False):
                shutil.rmtree(dir_entry.path)
            else:
                os.unlink(dir_entry.path)
            return 1
        except FileNotFoundError:
            return 0

    # ------------------------------------------------------------------ staged uploads (local_staging.py)

    async def stage_begin(self, path: str) -> str:
        return await self._staged.begin(path)

    async def stage_part(
        self,
        path: str,
        staging_id: str,
        part_number: int,
        chunks: AsyncIterable[bytes],
        expected_sha256: str | None = None,
    ) -> StagedPart:
        return await self._staged.part(path, staging_id, part_number, chunks, expected_sha256)

    async def stage_parts(self, path: str, staging_id: str) -> builtins.list[StagedPart]:
        return await self._staged.parts(path, staging_id)

    async def stage_commit(
        self, path: str, staging_id: str, parts: builtins.list[StagedPart]
    ) -> int:
        return await self._staged.commit(path, staging_id, parts)

    async def stage_abort(self, path: str, staging_id: str) -> None:
        await self._staged.abort(path, staging_id)

    async def stage_list(self) -> builtins.list[tuple[str, str, float]]:
        return await self._staged.list()

    async def head_external(self, uri: str) -> tuple[int, str | None]:
        return await self._staged.head_external(uri)

    def read_external(
        self, uri: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        self._staged.external_path(uri)  # a bad URI raises at the call, like read()
        if start < 0 or (end is not None and end < start):
            raise InvalidParameter(f"Invalid byte range [{start}, {end}) for {uri[:200]!r}")
        return self._staged.read_external(uri, start, end)

    async def aclose(self) -> None:
        """Nothing to release: every operation opens and closes its own descriptors."""
