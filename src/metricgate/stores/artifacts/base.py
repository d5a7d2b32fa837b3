"""The narrow artifact-store interface: paths are relative to the artifact root, '/'-separated."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import Protocol

from metricgate.entities import ArtifactEntry


class ArtifactStore(Protocol):
    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        """Store a file from a stream of chunks, atomically (all or nothing); return its size."""
        ...

    async def size(self, path: str) -> int:
        """Size of a committed file; NotFound when there is none."""
        ...

    def read(self, path: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream bytes [start, end) of a committed file; NotFound when there is none."""
        ...

    async def list(self, path: str) -> list[ArtifactEntry]:
        """Entries directly under a directory; [] for a file or a missing path."""
        ...

    async def delete(self, path: str) -> None:
        """Delete a file or a directory tree; missing paths are not an error."""
        ...

    async def aclose(self) -> None: ...
