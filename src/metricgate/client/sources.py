"""Local files an upload sends, and hashing them off the event loop (bounded reads)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from metricgate.client.errors import ClientError
from metricgate.client.resume import SourceFile

HASH_CHUNK_BYTES = 4 * 1024 * 1024


def collect(path: Path) -> tuple[list[SourceFile], bool]:
    """(files, is_directory). A directory's files in a stable order, paths relative and '/'-joined."""
    if path.is_file():
        st = path.stat()
        return [SourceFile("", str(path.resolve()), st.st_size, st.st_mtime_ns)], False
    if not path.is_dir():
        raise ClientError(f"{path}: no such file or directory")
    files: list[SourceFile] = []
    root = path.resolve()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if not full.is_file():
                continue  # sockets, broken links: nothing to upload
            st = full.stat()
            files.append(
                SourceFile(full.relative_to(root).as_posix(), str(full), st.st_size, st.st_mtime_ns)
            )
    if not files:
        raise ClientError(f"{path}: the directory has no files to upload")
    return files, True


def read_part(source: SourceFile, offset: int, length: int) -> bytes:
    """One part of a file, checked against the size recorded at the start (a file rewritten while
    it uploads must not be committed half old, half new)."""
    fd = os.open(source.abs_path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        if st.st_size != source.size or st.st_mtime_ns != source.mtime_ns:
            raise ClientError(f"{source.abs_path} changed while it was being uploaded")
        chunks, done = [], 0
        while done < length:
            chunk = os.pread(fd, length - done, offset + done)
            if not chunk:
                raise ClientError(f"{source.abs_path} is shorter than {source.size} bytes now")
            chunks.append(chunk)
            done += len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def sha256_of_file(path: str, stop: threading.Event | None = None) -> str:
    """SHA-256 of a file, a chunk at a time. ``stop`` ends it early: a worker thread cannot be
    cancelled, and an interrupted upload must not wait for 20 GB to be hashed before exiting."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            if stop is not None and stop.is_set():
                raise ClientError("hashing stopped")
            digest.update(chunk)  # hashlib releases the GIL for large buffers
    return digest.hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
