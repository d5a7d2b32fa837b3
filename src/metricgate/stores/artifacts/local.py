"""Artifacts on the local filesystem, under one root directory.

Writes are atomic: bytes go to a temp file in a hidden staging directory under the root,
which is fsynced and then ``os.replace``d into place, so readers see the old file or the new
one, never a torn one, and a crash leaves at most a stale staging file (swept on open).
All file I/O runs in worker threads so that a multi-GB artifact never stalls the event loop,
and data moves in bounded chunks so memory does not grow with file size.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import stat
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path

from metricgate.domain.artifacts.paths import normalize_artifact_path
from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.tracking.entities import ArtifactEntry
from metricgate.stores.artifacts.base import StagedPart
from metricgate.stores.artifacts.files import Descriptor as _Descriptor
from metricgate.stores.artifacts.files import StagedFile as _StagedFile
from metricgate.stores.artifacts.files import fsync_dir as _fsync_dir
from metricgate.stores.artifacts.files import write_all as _write_all
from metricgate.stores.artifacts.local_staging import UPLOADS_DIR, LocalStagedUploads
from metricgate.stores.artifacts.parts import spool

log = logging.getLogger(__name__)

# Hidden from listings and reserved: no artifact path may start with it.
STAGING_DIR = ".metricgate-staging"
READ_CHUNK_BYTES = 1024 * 1024
# A staging file is only stale when nothing has written to it for this long; an upload in
# progress in another process sharing the root keeps touching its file.
DEFAULT_STALE_AFTER_S = 3600.0
# A concurrent delete of the parent tree can race a commit; retry the mkdir+rename this often.
_COMMIT_ATTEMPTS = 3


class LocalArtifactStore:
    """``ArtifactStore`` on a local directory; see the module docstring for the guarantees."""

    def __init__(self, root: Path | str, *, read_chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        # Everything is joined to and compared with the *real* root, so a root reached through
        # a symlink still confines correctly.
        self._root = os.path.realpath(root)
        self._root_prefix = self._root.rstrip(os.sep) + os.sep
        self._staging = os.path.join(self._root, STAGING_DIR)
        self._staging_prefix = self._staging + os.sep
        self._read_chunk = read_chunk_bytes
        self._staged = LocalStagedUploads(self, self._staging)

    @classmethod
    async def open(
        cls, root: Path | str, *, stale_after_s: float = DEFAULT_STALE_AFTER_S
    ) -> LocalArtifactStore:
        """Create the root if needed and drop staging files left by a crash."""
        store = cls(root)
        await asyncio.to_thread(os.makedirs, store._staging, exist_ok=True)
        removed = await store.sweep_staging(stale_after_s)
        if removed:
            log.info("removed %d stale staging file(s) under %s", removed, store._staging)
        return store

    @property
    def root(self) -> Path:
        return Path(self._root)

    # ------------------------------------------------------------------ path handling

    def _relative(self, path: str, *, allow_root: bool = False) -> str:
        rel = normalize_artifact_path(path, allow_root=allow_root)
        if rel.split("/", 1)[0] == STAGING_DIR:
            raise InvalidParameter(f"Invalid artifact path {rel!r}: {STAGING_DIR!r} is reserved")
        return rel

    def _lexical(self, rel: str) -> str:
        return os.path.join(self._root, *rel.split("/")) if rel else self._root

    def _is_confined(self, real: str) -> bool:
        inside = real == self._root or real.startswith(self._root_prefix)
        staged = real == self._staging or real.startswith(self._staging_prefix)
        return inside and not staged

    def _real(self, rel: str) -> str:
        """The symlink-free location of ``rel``; refuses links that lead out of the root."""
        real = os.path.realpath(self._lexical(rel))
        if not self._is_confined(real):
            raise InvalidParameter(
                f"Invalid artifact path {rel!r}: it resolves outside the artifact root"
            )
        return real

    def _real_parent(self, rel: str) -> tuple[str, str]:
        """(real parent dir, final name): for operations that act on the entry itself."""
        parent, _, name = rel.rpartition("/")
        return self._real(parent), name

    # ------------------------------------------------------------------ writes

    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        rel = self._relative(path)
        # Fail before consuming the body when the destination can never be written.
        await asyncio.to_thread(self._check_writable, rel)
        staged = await asyncio.to_thread(self._create_staged)
        try:
            size = await self._fill(staged, chunks)
            await asyncio.to_thread(self._commit, staged, rel)
            return size
        except BaseException:
            # Synchronous and non-blocking on purpose: this also runs on cancellation (client
            # went away), where a second await could be cancelled too. A crash here at worst
            # leaves a staging file for sweep_staging.
            staged.discard()
            raise

    def _check_writable(self, rel: str) -> None:
        real_parent, name = self._real_parent(rel)
        target = os.path.join(real_parent, name)
        if os.path.isdir(target) and not os.path.islink(target):
            raise InvalidParameter(f"Invalid artifact path {rel!r}: it is a directory")

    def _create_staged(self) -> _StagedFile:
        # Staging lives under the root so the final os.replace stays on one filesystem: a
        # rename across filesystems is not atomic (it fails with EXDEV).
        os.makedirs(self._staging, exist_ok=True)
        path = os.path.join(self._staging, f"{uuid.uuid4().hex}.part")
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666
        )
        return _StagedFile(fd, path)

    async def _fill(self, staged: _StagedFile, chunks: AsyncIterable[bytes]) -> int:
        size = 0

        def write(batch: list[bytes]) -> None:
            nonlocal size
            staged.fd.call(_write_all, batch)
            size += sum(map(len, batch))

        await spool(chunks, write)
        return size

    def _commit(self, staged: _StagedFile, rel: str) -> None:
        staged.fd.call(os.fsync)
        staged.fd.release()
        source = staged.path  # read once: a cancelled put may clear it from the event loop
        if source is None:
            raise OSError(errno.ENOENT, "staged artifact was discarded before commit")
        for attempt in range(_COMMIT_ATTEMPTS):
            real_parent, name = self._real_parent(rel)
            try:
                self._makedirs_durable(real_parent, rel)
                self._check_writable(rel)
                os.replace(source, os.path.join(real_parent, name))
                break
            except FileNotFoundError:
                # The parent tree was deleted between mkdir and rename; build it again.
                if attempt == _COMMIT_ATTEMPTS - 1:
                    raise
        staged.path = None  # now owned by the destination
        _fsync_dir(real_parent)

    def _makedirs_durable(self, real_dir: str, rel: str) -> None:
        """mkdir -p that fsyncs each parent it adds an entry to, so new dirs survive a crash."""
        missing: list[str] = []
        current = real_dir
        while not os.path.isdir(current):
            if os.path.lexists(current):
                raise InvalidParameter(f"Invalid artifact path {rel!r}: a parent of it is a file")
            missing.append(current)
            current = os.path.dirname(current)
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):
                os.mkdir(directory)
            _fsync_dir(os.path.dirname(directory))
        # A link swapped in while we were creating dirs must not take the file elsewhere.
        if not self._is_confined(os.path.realpath(real_dir)):
            raise InvalidParameter(
                f"Invalid artifact path {rel!r}: it resolves outside the artifact root"
            )

    # ------------------------------------------------------------------ reads

    async def size(self, path: str) -> int:
        rel = self._relative(path)
        return await asyncio.to_thread(self._size_sync, rel)

    def _size_sync(self, rel: str) -> int:
        try:
            st = os.stat(self._real(rel))
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(rel) from None
        if not stat.S_ISREG(st.st_mode):
            raise self._not_found(rel)
        return st.st_size

    @staticmethod
    def _not_found(rel: str) -> NotFound:
        return NotFound(f"No such artifact: '{rel}'")

    def read(self, path: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        # Not an async generator itself, so that a bad path or range raises at the call.
        rel = self._relative(path)
        if start < 0 or (end is not None and end < start):
            raise InvalidParameter(f"Invalid byte range [{start}, {end}) for artifact {rel!r}")
        return self._read_range(rel, start, end)

    async def _read_range(self, rel: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        raw_fd, _ = await asyncio.to_thread(self._open_for_read, rel)
        async for chunk in self._stream_fd(raw_fd, start, end):
            yield chunk

    async def _stream_fd(self, raw_fd: int, start: int, end: int | None) -> AsyncIterator[bytes]:
        """Bytes [start, end) of an open file; the descriptor is released when done."""
        fd = _Descriptor(raw_fd)
        # The open descriptor pins this inode: a concurrent put replaces the name, not the
        # bytes we are streaming, so a reader always gets one consistent version.
        try:
            file_size = (await asyncio.to_thread(fd.call, os.fstat)).st_size
            stop = file_size if end is None else min(end, file_size)
            position = start
            while position < stop:
                want = min(self._read_chunk, stop - position)
                chunk = await asyncio.to_thread(fd.call, os.pread, want, position)
                if not chunk:
                    break
                position += len(chunk)
                yield chunk
        finally:
            fd.release()

    def _open_for_read(self, rel: str) -> tuple[int, int]:
        try:
            fd = os.open(self._real(rel), os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise self._not_found(rel) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise self._not_found(rel)
        return fd, st.st_size

    async def list(self, path: str) -> list[ArtifactEntry]:
        rel = self._relative(path, allow_root=True)
        return await asyncio.to_thread(self._list_sync, rel)

    def _list_sync(self, rel: str) -> list[ArtifactEntry]:
        real = self._real(rel)
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
        if dir_entry.path == self._staging:
            return None
        try:
            if dir_entry.is_symlink() and not self._is_confined(os.path.realpath(dir_entry.path)):
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
        rel = self._relative(path)
        await asyncio.to_thread(self._delete_sync, rel)

    def _delete_sync(self, rel: str) -> None:
        real_parent, name = self._real_parent(rel)
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
            iterator = os.scandir(self._staging)
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

    async def stage_parts(self, path: str, staging_id: str) -> list[StagedPart]:
        return await self._staged.parts(path, staging_id)

    async def stage_commit(self, path: str, staging_id: str, parts: list[StagedPart]) -> int:
        return await self._staged.commit(path, staging_id, parts)

    async def stage_abort(self, path: str, staging_id: str) -> None:
        await self._staged.abort(path, staging_id)

    async def stage_list(self) -> list[tuple[str, str, float]]:
        return await self._staged.list()

    async def head_external(self, uri: str) -> tuple[int, str | None]:
        return await self._staged.head_external(uri)

    def read_external(
        self, uri: str, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        self._staged.external_path(uri)  # a bad URI raises at the call, like read()
        if start < 0 or (end is not None and end < start):
            raise InvalidParameter(f"Invalid byte range [{start}, {end}) for {uri[:200]!r}")
        return self._staged.read_external(uri, start, end)

    async def aclose(self) -> None:
        """Nothing to release: every operation opens and closes its own descriptors."""
