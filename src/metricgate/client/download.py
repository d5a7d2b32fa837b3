"""Download a run artifact (a file or a directory) with parallel HTTP Range GETs.

Each file is fetched in ``chunk_size`` ranges, ``parallel`` at a time across all files, written at
their offsets into a temporary file next to the destination. A per-file hasher follows the
contiguous prefix that has arrived, reading it back from the page cache, so the SHA-256 is
ready when the last range lands and memory stays at one chunk buffer per request. The file is
renamed into place only once its size and SHA-256 check out.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metricgate.client import runs
from metricgate.client.errors import ChecksumMismatch, ClientError
from metricgate.client.http import Api

MIB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 32 * MIB
_HASH_READ_BYTES = 4 * MIB
PARTIAL_SUFFIX = ".metricgate-partial"

ProgressFn = Callable[[int, int], None]


@dataclass
class DownloadedFile:
    artifact_path: str
    local_path: str
    size: int
    sha256: str
    verified: bool  # False when no SHA-256 was known to compare with


@dataclass
class DownloadResult:
    run_id: str
    artifact_path: str
    local_path: str
    files: list[DownloadedFile] = field(default_factory=list)
    seconds: float = 0.0
    retries: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id, "path": self.artifact_path, "local_path": self.local_path,
            "total_bytes": self.total_bytes, "seconds": round(self.seconds, 3), "retries": self.retries,
            "files": [f.__dict__ for f in self.files],
        }  # fmt: skip


class _Target:
    """One file being downloaded: its temp file, and the hasher that follows the written prefix."""

    def __init__(self, artifact_path: str, local: Path) -> None:
        self.artifact_path = artifact_path
        self.local = local
        self.partial = local.with_name(local.name + PARTIAL_SUFFIX)
        local.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.partial, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        self.size: int | None = None
        self.digest = hashlib.sha256()
        self.hashed = 0
        self.done: dict[int, int] = {}  # range start -> end, finished but not hashed yet
        self.lock = asyncio.Lock()

    def sink_at(
        self, offset: int, on_bytes: Callable[[int], None]
    ) -> Callable[[], Callable[[bytes], Awaitable[None]]]:
        def new_sink() -> Callable[[bytes], Awaitable[None]]:
            position = offset

            async def write(chunk: bytes) -> None:
                nonlocal position
                os.pwrite(
                    self.fd, chunk, position
                )  # page-cache write of <= 1 MiB: not worth a thread hop
                position += len(chunk)
                on_bytes(len(chunk))

            return write

        return new_sink

    async def finished(self, start: int, end: int) -> None:
        self.done[start] = end
        async with self.lock:  # one hasher per file, in order
            while self.hashed in self.done:
                stop = self.done.pop(self.hashed)
                await asyncio.to_thread(self._hash, self.hashed, stop)
                self.hashed = stop

    def _hash(self, start: int, stop: int) -> None:
        while start < stop:
            chunk = os.pread(self.fd, min(_HASH_READ_BYTES, stop - start), start)
            if not chunk:
                raise ClientError(f"{self.partial} is shorter than what was downloaded")
            self.digest.update(chunk)
            start += len(chunk)

    def discard(self) -> None:
        os.close(self.fd)
        self.partial.unlink(missing_ok=True)


async def _list_files(api: Api, run_id: str, path: str) -> list[str] | None:
    """Every file under ``path`` (paths relative to the run root), or None when it is no directory."""
    body = await api.json("GET", "/api/2.0/mlflow/artifacts/list", params={"run_id": run_id, "path": path},
                          what=f"listing {path or 'the run artifacts'}")  # fmt: skip
    entries = body.get("files", [])
    if not entries:
        return None
    out: list[str] = []
    for entry in entries:
        if entry.get("is_dir"):
            out.extend(await _list_files(api, run_id, entry["path"]) or [])
        else:
            out.append(entry["path"])
    return out


def _local_target(dest: Path, artifact_path: str, is_dir: bool) -> Path:
    name = artifact_path.rstrip("/").rsplit("/", 1)[-1]
    if is_dir or dest.is_dir():
        return dest / name if name else dest
    return dest


async def download_async(
    run_id: str,
    artifact_path: str,
    dest: str | Path = ".",
    *,
    url: str,
    parallel: int = 4,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: ProgressFn | None = None,
    sha256: str | None = None,
    fsync: bool = False,
) -> DownloadResult:
    """Download ``artifact_path`` of a run into ``dest`` (a directory, or the file name for a file).

    ``fsync`` flushes each file to disk before it is renamed into place (slower: the whole file
    is written back before the call returns), for a copy that must survive a power loss.

    The expected SHA-256 is ``sha256`` when given (a single file), else the one recorded by
    ``upload`` in the run's tags. Raises ``ChecksumMismatch`` (and keeps nothing) when it differs.
    """
    started = time.monotonic()
    artifact_path = artifact_path.strip("/")
    if parallel < 1 or chunk_size < 1:
        raise ClientError("parallel and chunk_size must be positive")
    async with Api(url, connections=parallel + 2) as api:
        run = await runs.get_run(api, run_id)
        root = runs.store_root(run)
        # Checksums we can hold the bytes to: a reference's registered SHA-256, the one upload
        # recorded as a run tag, or the caller's (for one file).
        expected = {**await runs.reference_sha256(api, run_id), **runs.recorded_sha256(run)}
        listed = await _list_files(api, run_id, artifact_path)
        is_dir = listed is not None
        if sha256 is not None and is_dir:
            raise ClientError("an expected sha256 can only be given for a single file")
        if sha256 is not None:
            expected[artifact_path] = sha256.lower()
        top = _local_target(Path(dest), artifact_path, is_dir)
        paths = listed if listed is not None else [artifact_path]
        targets = []
        for p in paths:
            rel = p[len(artifact_path) :].lstrip("/") if is_dir else ""
            targets.append(_Target(p, top / rel if rel else top))
        result = DownloadResult(run_id, artifact_path, str(top))
        try:
            await _fetch_all(api, root, targets, parallel, chunk_size, progress)
            for t in targets:
                actual = t.digest.hexdigest()
                want = expected.get(t.artifact_path)
                if want is not None and want != actual:
                    raise ChecksumMismatch(t.artifact_path, want, actual)
                result.files.append(
                    DownloadedFile(
                        t.artifact_path, str(t.local), t.size or 0, actual, want is not None
                    )
                )
            for t in targets:
                if fsync:
                    os.fsync(t.fd)
                os.close(t.fd)
                t.fd = -1
                os.replace(t.partial, t.local)
        finally:
            for t in targets:
                if t.fd != -1:
                    t.discard()
        result.retries = api.retries
    result.seconds = time.monotonic() - started
    return result


def download(
    run_id: str, artifact_path: str, dest: str | Path = ".", **kwargs: Any
) -> DownloadResult:
    """Blocking ``download_async``."""
    return asyncio.run(download_async(run_id, artifact_path, dest, **kwargs))


async def _fetch_all(api: Api, root: str, targets: list[_Target], parallel: int, chunk_size: int,
                     progress: ProgressFn | None) -> None:  # fmt: skip
    gate = asyncio.Semaphore(parallel)
    done = 0
    known_total = 0

    def on_bytes(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, max(known_total, done))

    async def fetch(t: _Target, url_path: str, start: int, end: int | None) -> int | None:
        async with gate:
            return await api.get_range(
                url_path, start, end, t.sink_at(start, on_bytes), what=t.artifact_path
            )

    async def one_file(t: _Target) -> None:
        nonlocal known_total
        url_path = runs.artifact_url_path(root, t.artifact_path)
        total = await fetch(t, url_path, 0, chunk_size)
        if total is None:
            raise ClientError(f"{t.artifact_path}: the server did not say how large the file is")
        t.size = total
        known_total += total
        os.ftruncate(t.fd, total)
        await t.finished(0, min(chunk_size, total))
        starts = range(chunk_size, total, chunk_size)

        async def part(start: int) -> None:
            end = min(start + chunk_size, total)
            await fetch(t, url_path, start, end)
            await t.finished(start, end)

        await asyncio.gather(*(part(s) for s in starts))
        if t.hashed != total:
            raise ClientError(f"{t.artifact_path}: hashed {t.hashed} of {total} bytes")

    tasks = [asyncio.create_task(one_file(t)) for t in targets]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
