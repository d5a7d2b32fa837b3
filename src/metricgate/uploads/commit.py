"""Committing a session: every file of it becomes visible together, or none does.

No store offers an atomic commit of several objects (S3 has none at all), so the atomicity
lives in PostgreSQL: the session is ``committing`` before its first file is made visible, and
while it is, reads hide its destination (see ``visible_store``). Files are then committed one by
one (each atomically, by the store) and marked in PostgreSQL; ``committed`` is written last and
reveals them all at once. A committer that dies stops its heartbeat; after the lease any
gateway's sweeper claims the session and runs the same idempotent procedure again (roll
forward). docs/design-artifacts.md walks through every crash point.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator

from metricgate.domain.errors import InvalidParameter, MetricgateError, Unavailable
from metricgate.domain.uploads.entities import ABORTED, COMMITTED, UploadFile, UploadSession
from metricgate.stores.artifacts.base import ArtifactStore, StagedPart
from metricgate.stores.base import UploadCommits

log = logging.getLogger(__name__)


class VerificationFailed(Exception):
    """The committed bytes are not what the client announced; the session is rolled back."""


async def sha256_of(store: ArtifactStore, path: str) -> str:
    """Whole-file SHA-256 streamed from the store: memory stays one chunk whatever the size."""
    digest = hashlib.sha256()
    async with contextlib.aclosing(store.read(path)) as chunks:
        async for chunk in chunks:
            # hashlib releases the GIL on large buffers; a thread keeps the event loop free.
            await asyncio.to_thread(digest.update, chunk)
    return digest.hexdigest()


class SessionCommitter:
    def __init__(self, store: ArtifactStore, uploads: UploadCommits, lease_s: float) -> None:
        self._store = store
        self._uploads = uploads
        self._lease_s = lease_s

    async def commit(self, session: UploadSession) -> UploadSession:
        """Run (or resume) the commit of a session already in state ``committing``.

        Store outages propagate with the session left ``committing`` (hidden), to be rolled
        forward later; a verification failure rolls the session back and raises InvalidParameter.
        """
        async with self._heartbeat(session.session_id):
            reached = -1
            try:
                for file in session.files:
                    reached = file.index
                    if not file.committed:
                        await self._commit_file(file)
                        await self._uploads.mark_file_committed(session.session_id, file.index)
            except VerificationFailed as exc:
                await self._roll_back(session, reached, str(exc))
                raise InvalidParameter(
                    f"Upload session '{session.session_id}' failed verification: {exc}"
                ) from exc
            await self._uploads.finish(session.session_id, COMMITTED)
        log.info("upload session %s committed (%d file(s))", session.session_id, len(session.files))
        return await self._uploads.get(session.session_id)

    async def _commit_file(self, file: UploadFile) -> None:
        parts = [StagedPart(p.part_number, p.size, p.etag, p.sha256) for p in file.parts]
        size: int | None
        try:
            size = await self._store.stage_commit(file.dest_path, file.staging_id, parts)
        except Unavailable:
            raise
        except MetricgateError as exc:
            # Rolling forward after a crash between the store's commit and our mark: the staged
            # upload is gone because it *was* committed. The object's size tells us so.
            size = await self._committed_size(file)
            if size is None:
                raise VerificationFailed(
                    f"file '{file.rel_path or file.dest_path}' could not be committed: {exc}"
                ) from exc
        if size != file.size:
            raise VerificationFailed(
                f"file '{file.rel_path or file.dest_path}' has {size} bytes, expected {file.size}"
            )
        if file.sha256 is not None:
            actual = await sha256_of(self._store, file.dest_path)
            if actual != file.sha256:
                raise VerificationFailed(
                    f"file '{file.rel_path or file.dest_path}' has SHA-256 {actual}, expected {file.sha256}"
                )

    async def _committed_size(self, file: UploadFile) -> int | None:
        try:
            size = await self._store.size(file.dest_path)
        except MetricgateError:
            return None
        return size if size == file.size else None

    async def _roll_back(self, session: UploadSession, failed_index: int, reason: str) -> None:
        """Undo a failed commit: delete what was made visible, drop what is still staged.

        Files are committed in index order, so those up to ``failed_index`` may be in place;
        later ones never left staging (and whatever sits at their paths is not ours to delete).
        """
        for file in session.files:
            with contextlib.suppress(MetricgateError):
                await self._store.stage_abort(file.dest_path, file.staging_id)
            if file.index <= failed_index:
                with contextlib.suppress(MetricgateError):
                    await self._store.delete(file.dest_path)
        await self._uploads.finish(session.session_id, ABORTED, reason)
        log.warning("upload session %s rolled back: %s", session.session_id, reason)

    @contextlib.asynccontextmanager
    async def _heartbeat(self, session_id: str) -> AsyncIterator[None]:
        """Tell other gateways this commit is alive, so their sweepers leave it alone."""

        async def beat() -> None:
            while True:
                await asyncio.sleep(self._lease_s / 3)
                try:
                    await self._uploads.heartbeat(session_id)
                except MetricgateError as exc:
                    log.warning("commit heartbeat of %s failed: %s", session_id, exc)

        task = asyncio.create_task(beat(), name=f"commit-heartbeat-{session_id}")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
