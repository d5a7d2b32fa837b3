"""Upload sessions, their files and received parts in PostgreSQL (schema: 0004_uploads.sql).

State changes are single conditional UPDATEs (``WHERE state = 'open'`` ...), so two gateways
racing on one session cannot both win; the sweeper takes rows with ``FOR UPDATE SKIP LOCKED``
so several gateways sweep side by side without waiting on each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import asyncpg

from metricgate.domain.errors import NotFound
from metricgate.domain.uploads.entities import (
    COMMITTING,
    LIVE_STATES,
    OPEN,
    NewFile,
    PartTarget,
    ReceivedPart,
    UploadFile,
    UploadSession,
)
from metricgate.stores.postgres.pool import Database, PgConnection
from metricgate.stores.postgres.runs import require_active_run

_SESSION_COLUMNS = """session_id, run_id, rel_path, dest_path, is_directory, state, part_size_bytes,
    (extract(epoch FROM expires_at) * 1000)::bigint AS expires_ms,
    (extract(epoch FROM created_at) * 1000)::bigint AS created_ms,
    (extract(epoch FROM updated_at) * 1000)::bigint AS updated_ms,
    actor, failure"""


def session_not_found(session_id: str) -> NotFound:
    return NotFound(f"Upload session '{session_id}' does not exist")


def _file(row: asyncpg.Record, parts: Sequence[ReceivedPart] = ()) -> UploadFile:
    return UploadFile(
        index=row["file_index"],
        rel_path=row["rel_path"],
        dest_path=row["dest_path"],
        size=row["size_bytes"],
        sha256=row["sha256"],
        staging_id=row["staging_id"],
        part_count=row["part_count"],
        committed=row["committed_at"] is not None,
        parts=tuple(parts),
    )


def _session(row: asyncpg.Record, files: Sequence[UploadFile]) -> UploadSession:
    return UploadSession(
        session_id=row["session_id"],
        run_id=row["run_id"],
        rel_path=row["rel_path"],
        dest_path=row["dest_path"],
        is_directory=row["is_directory"],
        state=row["state"],
        part_size=row["part_size_bytes"],
        expires_at_ms=row["expires_ms"],
        created_at_ms=row["created_ms"],
        updated_at_ms=row["updated_ms"],
        actor=row["actor"],
        failure=row["failure"],
        files=tuple(files),
    )


async def _load(conn: PgConnection, session_id: str, *, lock: bool = False) -> UploadSession:
    sql = f"SELECT {_SESSION_COLUMNS} FROM upload_sessions WHERE session_id = $1"
    row = await conn.fetchrow(sql + (" FOR UPDATE" if lock else ""), session_id)
    if row is None:
        raise session_not_found(session_id)
    file_rows = await conn.fetch(
        "SELECT * FROM upload_files WHERE session_id = $1 ORDER BY file_index", session_id
    )
    part_rows = await conn.fetch(
        """SELECT file_index, part_number, size_bytes, sha256, etag FROM upload_parts
           WHERE session_id = $1 ORDER BY file_index, part_number""",
        session_id,
    )
    parts: dict[int, list[ReceivedPart]] = {}
    for p in part_rows:
        parts.setdefault(p["file_index"], []).append(
            ReceivedPart(p["part_number"], p["size_bytes"], p["sha256"], p["etag"])
        )
    return _session(row, [_file(f, parts.get(f["file_index"], ())) for f in file_rows])


class PgUploadStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    # ------------------------------------------------------------------ client-facing

    async def create(
        self,
        *,
        session_id: str,
        run_id: str,
        rel_path: str,
        dest_path: str,
        is_directory: bool,
        part_size: int,
        ttl_s: float,
        actor: str | None,
        files: Sequence[NewFile],
    ) -> UploadSession:
        async with self._db.transaction() as conn:
            # FOR SHARE: a concurrent delete of the run waits for us (or we see it deleted).
            await require_active_run(conn, run_id, lock=True)
            await conn.execute(
                """INSERT INTO upload_sessions (session_id, run_id, rel_path, dest_path, is_directory,
                                                part_size_bytes, expires_at, actor)
                   VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8)""",
                session_id, run_id, rel_path, dest_path, is_directory, part_size, ttl_s, actor,
            )  # fmt: skip
            await conn.executemany(
                """INSERT INTO upload_files (session_id, file_index, rel_path, dest_path, size_bytes,
                                             sha256, staging_id, part_count)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
                [
                    (
                        session_id,
                        i,
                        f.rel_path,
                        f.dest_path,
                        f.size,
                        f.sha256,
                        f.staging_id,
                        f.part_count,
                    )
                    for i, f in enumerate(files)
                ],
            )
            return await _load(conn, session_id)

    async def get(self, session_id: str) -> UploadSession:
        async with self._db.connection() as conn:
            return await _load(conn, session_id)

    async def part_target(self, session_id: str, file_index: int) -> PartTarget:
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                """SELECT s.state, s.expires_at < now() AS expired, s.part_size_bytes, f.*
                   FROM upload_sessions s JOIN upload_files f USING (session_id)
                   WHERE s.session_id = $1 AND f.file_index = $2""",
                session_id,
                file_index,
            )
            if row is None:
                if await conn.fetchval(
                    "SELECT 1 FROM upload_sessions WHERE session_id = $1", session_id
                ):
                    raise NotFound(
                        f"Upload session '{session_id}' has no file with index {file_index}"
                    )
                raise session_not_found(session_id)
        return PartTarget(
            session_id, row["state"], row["expired"], row["part_size_bytes"], _file(row)
        )

    async def record_part(
        self, session_id: str, file_index: int, part: ReceivedPart, ttl_s: float
    ) -> bool:
        """Remember a stored part and extend the session's life; False if it is no longer open."""
        async with self._db.transaction() as conn:
            bumped = await conn.fetchval(
                """UPDATE upload_sessions
                   SET expires_at = now() + make_interval(secs => $2), updated_at = now()
                   WHERE session_id = $1 AND state = 'open' RETURNING 1""",
                session_id,
                ttl_s,
            )
            if not bumped:
                return False
            await conn.execute(
                """INSERT INTO upload_parts (session_id, file_index, part_number, size_bytes, sha256, etag)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (session_id, file_index, part_number) DO UPDATE
                   SET size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
                       etag = EXCLUDED.etag, received_at = now()""",
                session_id, file_index, part.part_number, part.size, part.sha256, part.etag,
            )  # fmt: skip
            return True

    async def begin_commit(
        self, session_id: str, check: Callable[[UploadSession, bool], None]
    ) -> tuple[UploadSession, bool]:
        """Move an open session to ``committing`` after ``check(session, expired)`` accepts it;
        (session, whether this call started the commit).

        ``committing`` is written in its own transaction *before* any file is made visible: from
        then on reads hide the destination, and a gateway that dies leaves a state that any other
        gateway rolls forward.
        """
        async with self._db.transaction() as conn:
            session = await _load(conn, session_id, lock=True)
            expired = bool(await conn.fetchval(
                "SELECT expires_at < now() FROM upload_sessions WHERE session_id = $1", session_id
            ))  # fmt: skip
            check(session, expired)
            if session.state != OPEN:
                return session, False
            await require_active_run(conn, session.run_id, lock=True)
            await conn.execute(
                """UPDATE upload_sessions SET state = 'committing', commit_heartbeat_at = now(),
                          updated_at = now() WHERE session_id = $1""",
                session_id,
            )
            return await _load(conn, session_id), True

    async def abort(self, session_id: str) -> tuple[UploadSession, bool]:
        """Mark an open session aborted; (session, whether this call aborted it)."""
        async with self._db.transaction() as conn:
            session = await _load(conn, session_id, lock=True)
            if session.state != OPEN:
                return session, False
            await conn.execute(
                "UPDATE upload_sessions SET state = 'aborted', updated_at = now() WHERE session_id = $1",
                session_id,
            )
            return await _load(conn, session_id), True

    # ------------------------------------------------------------------ the committer

    async def heartbeat(self, session_id: str) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                """UPDATE upload_sessions SET commit_heartbeat_at = now()
                   WHERE session_id = $1 AND state = 'committing'""",
                session_id,
            )

    async def mark_file_committed(self, session_id: str, file_index: int) -> None:
        async with self._db.connection() as conn:
            await conn.execute(
                """UPDATE upload_files SET committed_at = now()
                   WHERE session_id = $1 AND file_index = $2 AND committed_at IS NULL""",
                session_id,
                file_index,
            )

    async def finish(self, session_id: str, state: str, failure: str | None = None) -> None:
        """End a commit: ``committed``, or ``aborted`` with the reason."""
        async with self._db.connection() as conn:
            await conn.execute(
                """UPDATE upload_sessions SET state = $2, failure = $3, updated_at = now(),
                          commit_heartbeat_at = NULL
                   WHERE session_id = $1 AND state = $4""",
                session_id,
                state,
                failure,
                COMMITTING,
            )

    # ------------------------------------------------------------------ the sweeper

    async def expire_due(self, limit: int = 100) -> list[UploadSession]:
        """Mark open sessions past their expiry ``expired``; they are returned for staging cleanup."""
        async with self._db.transaction() as conn:
            ids = await conn.fetch(
                """UPDATE upload_sessions SET state = 'expired', updated_at = now()
                   WHERE session_id IN (
                       SELECT session_id FROM upload_sessions
                       WHERE state = 'open' AND expires_at < now()
                       ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)
                   RETURNING session_id""",
                limit,
            )
            return [await _load(conn, r["session_id"]) for r in ids]

    async def claim_stale_commits(self, lease_s: float, limit: int = 10) -> list[str]:
        """Take over commits whose committer went quiet for ``lease_s`` (it died)."""
        async with self._db.transaction() as conn:
            rows = await conn.fetch(
                """UPDATE upload_sessions SET commit_heartbeat_at = now()
                   WHERE session_id IN (
                       SELECT session_id FROM upload_sessions
                       WHERE state = 'committing'
                         AND commit_heartbeat_at < now() - make_interval(secs => $1)
                       LIMIT $2 FOR UPDATE SKIP LOCKED)
                   RETURNING session_id""",
                lease_s,
                limit,
            )
            return [r["session_id"] for r in rows]

    async def live_staging_ids(self) -> set[str]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """SELECT f.staging_id FROM upload_files f JOIN upload_sessions s USING (session_id)
                   WHERE s.state = ANY($1::text[]) AND f.committed_at IS NULL""",
                list(LIVE_STATES),
            )
        return {r["staging_id"] for r in rows}

    # ------------------------------------------------------------------ visibility

    async def hidden_destinations(self, path: str) -> list[str]:
        """Destinations being committed that are ``path``, contain it, or lie under it."""
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                """SELECT dest_path FROM upload_sessions
                   WHERE state = $2 AND (dest_path = $1 OR starts_with($1, dest_path || '/')
                                         OR $1 = '' OR starts_with(dest_path, $1 || '/'))""",
                path,
                COMMITTING,
            )
        return [r["dest_path"] for r in rows]
