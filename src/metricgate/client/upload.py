"""Upload a file or a directory through metricgate's resumable upload API.

One session per call (a directory commits all-or-nothing). Parts go up ``parallel`` at a time,
each with its SHA-256 (the server checks it while it streams), so at most ``parallel`` parts are
held in memory. The session id is kept in a resume record: after an interruption the same call
asks the server (``GET`` session) which parts it has and sends only the missing ones.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from metricgate.client import runs, sources
from metricgate.client.errors import ClientError
from metricgate.client.http import Api
from metricgate.client.resume import ResumeRecord, ResumeStore, SourceFile

UPLOADS = "/api/2.0/metricgate/uploads"
MIB = 1024 * 1024
DEFAULT_PART_SIZE = 32 * MIB
MAX_PARTS_PER_FILE = 10_000
_COMMIT_POLL_S = 0.5
_COMMIT_WAIT_S = 600.0

ProgressFn = Callable[[int, int], None]  # (bytes done, bytes in all)


@dataclass
class UploadResult:
    upload_id: str
    run_id: str
    path: str  # the artifact path, relative to the run's artifact root
    total_bytes: int
    parts_total: int
    parts_sent: list[tuple[int, int]] = field(default_factory=list)  # (file index, part number)
    resumed: bool = False
    sha256: dict[str, str] = field(default_factory=dict)  # artifact path -> whole-file SHA-256
    seconds: float = 0.0
    retries: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "upload_id": self.upload_id, "run_id": self.run_id, "path": self.path,
            "total_bytes": self.total_bytes, "parts_total": self.parts_total,
            "parts_sent": len(self.parts_sent), "sent": [list(p) for p in self.parts_sent],
            "resumed": self.resumed, "sha256": self.sha256, "seconds": round(self.seconds, 3),
            "retries": self.retries, "warnings": self.warnings,
        }  # fmt: skip


def choose_part_size(largest_file: int, requested: int | None) -> int:
    if requested:
        return requested
    part = DEFAULT_PART_SIZE
    while largest_file > part * MAX_PARTS_PER_FILE:
        part *= 2  # a 20 GiB checkpoint fits comfortably; only > 312 GiB files grow it
    return part


def _artifact_path(dest: str, source: SourceFile) -> str:
    return "/".join(p for p in (dest, source.rel_path) if p)


async def upload_async(
    path: str | Path,
    run_id: str,
    dest: str | None = None,
    *,
    url: str,
    part_size: int | None = None,
    parallel: int = 4,
    progress: ProgressFn | None = None,
    state_dir: Path | None = None,
    verify_on_server: bool = False,
    record_checksums: bool = True,
) -> UploadResult:
    """Upload ``path`` (a file or a directory) as the run's artifact ``dest`` (default: its name).

    ``verify_on_server`` hashes every file before the session starts and hands the SHA-256 to
    the server, which reads the assembled file back at completion (end-to-end, twice the I/O).
    Without it each part is still verified; the whole-file SHA-256 is computed while the parts go
    up and recorded as a run tag so ``download`` can verify.
    """
    started = time.monotonic()
    source = Path(path)
    files, is_dir = sources.collect(source)
    dest = (dest if dest is not None else source.resolve().name).strip("/")
    if not dest and not is_dir:
        raise ClientError("a file needs a destination artifact path")
    if parallel < 1:
        raise ClientError("parallel must be at least 1")
    record_store = ResumeStore(state_dir, base_url=url, run_id=run_id, dest=dest, source=source)
    async with Api(url, connections=parallel + 2) as api:
        session, resumed = await _resume_or_create(
            api, record_store, run_id, dest, files, is_dir, part_size, verify_on_server
        )
        by_path = {f.rel_path: f for f in files}
        total = sum(f.size for f in files)
        result = UploadResult(session["upload_id"], run_id, session.get("path", dest), total,
                              sum(f["part_count"] for f in session["files"]), resumed=resumed)  # fmt: skip
        hashing, stop = None, threading.Event()
        if record_checksums:
            # Alongside the parts (a second sequential read, mostly from the page cache).
            hashing = asyncio.create_task(asyncio.to_thread(
                lambda: {_artifact_path(dest, f): sources.sha256_of_file(f.abs_path, stop) for f in files}
            ))  # fmt: skip
        try:
            if session["state"] == "open":
                await _send_missing(api, session, by_path, parallel, progress, total, result)
            final = await _complete(api, session["upload_id"])
            if hashing is not None:
                result.sha256 = await hashing
        except BaseException:
            stop.set()
            if hashing is not None:
                hashing.cancel()
            raise
        if final["state"] != "committed":
            record_store.clear()
            raise ClientError(
                f"upload {session['upload_id']} ended {final['state']}: {final.get('failure') or 'no reason given'}"
            )
        record_store.clear()
        if result.sha256:
            try:
                await runs.record_sha256(api, run_id, result.sha256)
            except ClientError as exc:
                # The artifact is committed either way; only later verification is lost.
                result.warnings.append(f"SHA-256 not recorded as run tags: {exc}")
        result.retries = api.retries
    result.seconds = time.monotonic() - started
    return result


def upload(path: str | Path, run_id: str, dest: str | None = None, **kwargs: Any) -> UploadResult:
    """Blocking ``upload_async`` (for training scripts without an event loop)."""
    return asyncio.run(upload_async(path, run_id, dest, **kwargs))


async def _resume_or_create(
    api: Api,
    record_store: ResumeStore,
    run_id: str,
    dest: str,
    files: list[SourceFile],
    is_dir: bool,
    part_size: int | None,
    verify_on_server: bool,
) -> tuple[dict[str, Any], bool]:
    record = record_store.load()
    if record is not None and record.matches(files):
        try:
            session = await api.json("GET", f"{UPLOADS}/{record.upload_id}", what="resuming upload")
        except ClientError as exc:
            if exc.status != 404:
                raise
            session = None  # expired and swept: start again
        if session is not None and session["state"] in ("open", "committing", "committed"):
            return session, True
    body: dict[str, Any] = {
        "run_id": run_id,
        "path": dest,
        "directory": is_dir,
        "part_size": choose_part_size(max(f.size for f in files), part_size),
    }
    specs = []
    for f in files:
        spec: dict[str, Any] = {"size": f.size}
        if is_dir:
            spec["path"] = f.rel_path
        if verify_on_server:
            spec["sha256"] = await asyncio.to_thread(sources.sha256_of_file, f.abs_path)
        specs.append(spec)
    body["files"] = specs
    session = await api.json("POST", UPLOADS, body=body, what="creating upload session")
    record_store.save(ResumeRecord(session["upload_id"], session["part_size"], files))
    return session, False


async def _send_missing(api: Api, session: dict[str, Any], by_path: dict[str, SourceFile], parallel: int,
                        progress: ProgressFn | None, total: int, result: UploadResult) -> None:  # fmt: skip
    upload_id, part_size = session["upload_id"], session["part_size"]
    jobs: list[tuple[int, int, SourceFile, int, int]] = []
    done = total
    for file in session["files"]:
        src = by_path.get(file["path"] if session["directory"] else "")
        if src is None or src.size != file["size"]:
            raise ClientError(
                f"upload {upload_id} does not match the local files (file {file['path']!r})"
            )
        for number in file["missing_parts"]:
            offset = (number - 1) * part_size
            length = min(part_size, src.size - offset)
            jobs.append((file["index"], number, src, offset, length))
            done -= length
    if progress:
        progress(done, total)
    queue = iter(jobs)

    async def worker() -> None:
        nonlocal done
        for index, number, src, offset, length in queue:
            data = await asyncio.to_thread(sources.read_part, src, offset, length)
            sha = await asyncio.to_thread(sources.sha256_hex, data)
            headers = {"Content-Type": "application/octet-stream", "X-Checksum-SHA256": sha}
            await api.put_bytes(f"{UPLOADS}/{upload_id}/files/{index}/parts/{number}", data, headers,
                                what=f"part {number} of file {index}")  # fmt: skip
            result.parts_sent.append((index, number))
            done += length
            if progress:
                progress(done, total)

    workers = [asyncio.create_task(worker()) for _ in range(min(parallel, len(jobs)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()


async def _complete(api: Api, upload_id: str) -> dict[str, Any]:
    """Complete, then wait while another gateway (or a retried request) is still committing."""
    state: dict[str, Any] = await api.json(
        "POST", f"{UPLOADS}/{upload_id}/complete", what="completing upload"
    )
    deadline = time.monotonic() + _COMMIT_WAIT_S
    while state["state"] == "committing" and time.monotonic() < deadline:
        await asyncio.sleep(_COMMIT_POLL_S)
        state = await api.json("GET", f"{UPLOADS}/{upload_id}", what="waiting for the commit")
    return state
