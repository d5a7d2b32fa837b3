"""Artifact references: existing objects registered as run artifacts without copying them."""

from __future__ import annotations

import asyncpg

from metricgate.domain.errors import NotFound
from metricgate.domain.uploads.entities import ArtifactReference
from metricgate.stores.base import AuditContext
from metricgate.stores.postgres import auth
from metricgate.stores.postgres.pool import Database
from metricgate.stores.postgres.runs import require_active_run

_COLUMNS = """run_id, rel_path, dest_path, uri, size_bytes, sha256, etag,
    (extract(epoch FROM registered_at) * 1000)::bigint AS registered_ms"""


def _reference(row: asyncpg.Record) -> ArtifactReference:
    return ArtifactReference(
        run_id=row["run_id"],
        rel_path=row["rel_path"],
        dest_path=row["dest_path"],
        uri=row["uri"],
        size=row["size_bytes"],
        sha256=row["sha256"],
        etag=row["etag"],
        registered_at_ms=row["registered_ms"],
    )


class PgReferenceStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, ref: ArtifactReference) -> ArtifactReference:
        """Register (or re-register: the newer object wins) a reference of an active run."""
        async with self._db.transaction() as conn:
            await require_active_run(conn, ref.run_id, lock=True)
            row = await conn.fetchrow(
                f"""INSERT INTO artifact_references (run_id, rel_path, dest_path, uri, size_bytes, sha256, etag)
                    VALUES ($1, $2, $3, $4, $5, $6, $7)
                    ON CONFLICT (run_id, rel_path) DO UPDATE
                    SET uri = EXCLUDED.uri, size_bytes = EXCLUDED.size_bytes, sha256 = EXCLUDED.sha256,
                        etag = EXCLUDED.etag, registered_at = now()
                    RETURNING {_COLUMNS}""",
                ref.run_id, ref.rel_path, ref.dest_path, ref.uri, ref.size, ref.sha256, ref.etag,
            )  # fmt: skip
        assert row is not None  # INSERT ... ON CONFLICT DO UPDATE ... RETURNING: one row
        return _reference(row)

    async def list_for_run(self, run_id: str) -> list[ArtifactReference]:
        async with self._db.connection() as conn:
            rows = await conn.fetch(
                f"SELECT {_COLUMNS} FROM artifact_references WHERE run_id = $1 ORDER BY rel_path",
                run_id,
            )
        return [_reference(r) for r in rows]

    async def delete(
        self, run_id: str, rel_path: str, *, audit: AuditContext | None = None
    ) -> None:
        """With ``audit`` (access control on), the ``artifact_reference.deleted`` entry in the
        delete's transaction: an entry that cannot be written undoes the delete."""
        async with self._db.transaction() as conn:
            row = await conn.fetchrow(
                """DELETE FROM artifact_references WHERE run_id = $1 AND rel_path = $2
                   RETURNING dest_path, uri""",
                run_id,
                rel_path,
            )
            if row is None:
                raise NotFound(f"Run '{run_id}' has no artifact reference at '{rel_path}'")
            details = {"run_id": run_id, "path": rel_path, "uri": row["uri"]}
            await auth.audit_deletion(
                conn, audit, "artifact_reference.deleted", "artifact", row["dest_path"], details
            )

    async def at(self, path: str) -> ArtifactReference | None:
        """The reference shown at store path ``path``, if any."""
        async with self._db.connection() as conn:
            row = await conn.fetchrow(
                f'SELECT {_COLUMNS} FROM artifact_references WHERE dest_path COLLATE "C" = $1', path
            )
        return _reference(row) if row is not None else None

    async def at_or_under(self, path: str) -> list[ArtifactReference]:
        """The reference at store path ``path`` and every one below it (a directory)."""
        # Below 'dir' means 'dir/' <= p < 'dir0' in byte order ('0' follows '/'): an index range.
        sql = f"""SELECT {_COLUMNS} FROM artifact_references
                  WHERE dest_path COLLATE "C" = $1
                     OR (dest_path COLLATE "C" >= $1 || '/' AND dest_path COLLATE "C" < $1 || '0')
                  ORDER BY dest_path COLLATE "C" LIMIT 10000"""
        if path == "":
            sql = f'SELECT {_COLUMNS} FROM artifact_references ORDER BY dest_path COLLATE "C" LIMIT 10000'
        async with self._db.connection() as conn:
            rows = await conn.fetch(sql, path) if path else await conn.fetch(sql)
        return [_reference(r) for r in rows]

    async def delete_at_or_under(self, path: str) -> None:
        """Drop the references an artifact delete of ``path`` (a file or a tree) removes."""
        async with self._db.connection() as conn:
            await conn.execute(
                """DELETE FROM artifact_references
                   WHERE dest_path COLLATE "C" = $1
                      OR (dest_path COLLATE "C" >= $1 || '/' AND dest_path COLLATE "C" < $1 || '0')""",
                path,
            )
