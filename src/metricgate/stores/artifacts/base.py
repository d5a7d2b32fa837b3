"""The artifact-store interface, in narrow parts: paths are relative to the artifact root,
'/'-separated.

- ``ArtifactReader``: committed files (size, ranged read, listing);
- ``ArtifactWriter``: whole-file ``put`` and ``delete``;
- ``StagingArea``: *staged* uploads, parts stored invisibly (a hidden staging area on disk, an
  uncompleted multipart upload on S3) and made visible in one atomic step by ``stage_commit``.
  MLflow's multipart protocol and metricgate's resumable upload API are both built on that, so
  neither ever exposes a partial artifact;
- ``ExternalSource``: objects outside the root that artifact references point at.

``ArtifactStore`` is all of them; each caller types its collaborator with the narrowest part it
uses.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterable
from dataclasses import dataclass
from typing import Protocol

from metricgate.domain.tracking.entities import ArtifactEntry
from metricgate.domain.uploads.entities import MAX_PART_NUMBER, MIN_PART_NUMBER, PartLimits

__all__ = [
    "MAX_PART_NUMBER",
    "MIN_PART_NUMBER",
    "ArtifactReader",
    "ArtifactStore",
    "ArtifactWriter",
    "ExternalSource",
    "PartLimits",
    "StagedPart",
    "StagingArea",
]


@dataclass(frozen=True)
class StagedPart:
    part_number: int  # 1..10000
    size: int
    etag: str  # S3 ETag (quoted form stripped) or, locally, the hex MD5 of the part
    sha256: str  # hex SHA-256 of the part's bytes, computed while streaming ('' when unknown)


class ArtifactReader(Protocol):
    async def size(self, path: str) -> int:
        """Size of a committed file; NotFound when there is none."""
        ...

    def read(
        self, path: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream bytes [start, end) of a committed file; NotFound when there is none."""
        ...

    async def list(self, path: str) -> builtins.list[ArtifactEntry]:
        """Entries directly under a directory; [] for a file or a missing path."""
        ...


class ArtifactWriter(Protocol):
    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """Store a file from a stream of chunks, atomically (all or nothing); return its size."""
        ...

    async def delete(self, path: str) -> None:
        """Delete a file or a directory tree; missing paths are not an error."""
        ...


class StagingArea(Protocol):
    @property
    def part_limits(self) -> PartLimits:
        """The part sizes and count this store can commit (S3's, or the filesystem's)."""
        ...

    async def stage_begin(self, path: str) -> str:
        """Start a staged (invisible) upload of ``path``; returns an opaque staging id
        (S3: the multipart UploadId; local: a directory under the root's hidden staging area)."""
        ...

    async def stage_part(
        self,
        path: str,
        staging_id: str,
        part_number: int,
        chunks: AsyncIterable[bytes],
        expected_sha256: str | None = None,
    ) -> StagedPart:
        """Store one part (re-uploading a part number replaces it). Streams: memory bounded.
        Raises InvalidParameter on checksum mismatch (the part is discarded), NotFound for an
        unknown staging id."""
        ...

    async def stage_parts(self, path: str, staging_id: str) -> list[StagedPart]:
        """Parts already stored, by part number (resume). sha256 may be '' on S3 when only
        the ETag is known."""
        ...

    async def stage_commit(self, path: str, staging_id: str, parts: list[StagedPart]) -> int:
        """Make ``path`` visible in one atomic step from the given parts in order; returns the size.
        Local: concatenate into a temp file, fsync, rename. S3: CompleteMultipartUpload."""
        ...

    async def stage_abort(self, path: str, staging_id: str) -> None:
        """Discard staged data; idempotent."""
        ...

    async def stage_list(self) -> list[tuple[str, str, float]]:
        """(path, staging_id, started_at_epoch) of every staged upload — for the GC sweeper,
        including ones a crashed gateway left behind."""
        ...


class ExternalSource(Protocol):
    async def head_external(self, uri: str) -> tuple[int, str | None]:
        """(size, etag) of an existing object given by an absolute URI this store can reach
        (s3://bucket/key for S3, file:///... for local); NotFound if it does not exist."""
        ...

    def read_external(
        self, uri: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream bytes [start, end) of such a referenced object (for artifact references)."""
        ...


class ArtifactStore(ArtifactReader, ArtifactWriter, StagingArea, ExternalSource, Protocol):
    """The whole store, as the service opens it."""

    async def aclose(self) -> None: ...
