"""File descriptors, temp files and streaming reads shared by the local store's modules
(local.py, local_root.py, local_staging.py) and the S3 store's part spool."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import threading
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

T = TypeVar("T")


def write_all(fd: int, chunks: list[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]


def fsync_dir(path: str) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Descriptor:
    """A file descriptor used from worker threads and released from the event loop.

    Cancellation (a client hanging up) can interrupt our await while a worker thread is still
    inside ``os.write``/``os.pread`` on the fd. Closing it right then would let the kernel hand
    the same number to the next ``open()`` elsewhere in the process, and the in-flight write
    could land in someone else's file. So ``release`` never closes under a running worker: the
    worker closes it on its way out instead. Nothing here blocks the event loop.
    """

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd
        self._lock = threading.Lock()
        self._release_requested = False

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(fd, *args)`` in the calling (worker) thread."""
        with self._lock:
            if self._fd is None:
                raise OSError(errno.EBADF, "artifact file descriptor already released")
            result = fn(self._fd, *args)
        if self._release_requested:
            self.release()
        return result

    def release(self) -> None:
        # The flag is set before trying the lock, so a worker that holds the lock now sees it
        # after unlocking and closes the fd itself.
        self._release_requested = True
        if not self._lock.acquire(blocking=False):
            return
        try:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                os.close(fd)
        finally:
            self._lock.release()


class StagedFile:
    """A temp file in the staging dir; discarded unless committed."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd = Descriptor(fd)
        self.path: str | None = path

    def discard(self) -> None:
        self.fd.release()
        if self.path is not None:
            path, self.path = self.path, None
            # A worker still writing keeps an unlinked inode, freed when it closes the fd.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)


async def stream_fd(
    raw_fd: int, start: int, end: int | None, chunk_bytes: int
) -> AsyncGenerator[bytes, None]:
    """Bytes [start, end) of an open file, ``chunk_bytes`` at a time; the descriptor is
    released when done."""
    fd = Descriptor(raw_fd)
    # The open descriptor pins this inode: a concurrent put replaces the name, not the
    # bytes we are streaming, so a reader always gets one consistent version.
    try:
        file_size = (await asyncio.to_thread(fd.call, os.fstat)).st_size
        stop = file_size if end is None else min(end, file_size)
        position = start
        while position < stop:
            want = min(chunk_bytes, stop - position)
            chunk = await asyncio.to_thread(fd.call, os.pread, want, position)
            if not chunk:
                break
            position += len(chunk)
            yield chunk
    finally:
        fd.release()
