"""The artifact store as readers see it: the physical store, minus destinations of sessions
still being committed, plus artifact references.

Every HTTP reader (the proxied artifact API and the run artifact listing) goes through this
wrapper, so the rules live in one place:

- a destination whose session is ``committing`` is hidden (listing, size, download) until the
  session is ``committed``: a directory commit becomes visible all at once (commit.py);
- a reference (``artifact_references``) appears as a file of its size, and its bytes are
  streamed from the referenced object with ``read_external``.

Writes, the staging area and external objects pass straight through (each method spelled out,
so the wrapper is an ``ArtifactStore`` by its own signatures); a delete also drops the
references at or under the deleted path.
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncGenerator, AsyncIterable

from metricgate.domain.artifacts.paths import normalize_artifact_path
from metricgate.domain.errors import NotFound
from metricgate.domain.tracking.entities import ArtifactEntry
from metricgate.domain.uploads.entities import ArtifactReference, PartLimits
from metricgate.stores.artifacts.base import ArtifactStore, StagedPart
from metricgate.stores.base import HiddenUploads, ReferenceStore


def _covers(dest: str, path: str) -> bool:
    """``path`` is ``dest`` or lies under it."""
    return path == dest or path.startswith(dest + "/")


class VisibleArtifactStore:
    """An ``ArtifactStore`` over the physical store ``inner``."""

    def __init__(
        self, inner: ArtifactStore, uploads: HiddenUploads, references: ReferenceStore
    ) -> None:
        self.inner = inner
        self._uploads = uploads
        self._references = references

    async def _reference_at(self, rel: str) -> ArtifactReference | None:
        hidden = await self._uploads.hidden_destinations(rel)
        if any(_covers(dest, rel) for dest in hidden):
            raise NotFound(f"No such artifact: '{rel}'")
        return await self._references.at(rel)

    # ------------------------------------------------------------------ reads

    async def size(self, path: str) -> int:
        rel = normalize_artifact_path(path)
        ref = await self._reference_at(rel)
        if ref is not None:
            return ref.size
        return await self.inner.size(path)

    def read(
        self, path: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        rel = normalize_artifact_path(path)
        return self._read(rel, start, end)

    async def _read(self, rel: str, start: int, end: int | None) -> AsyncGenerator[bytes, None]:
        ref = await self._reference_at(rel)
        if ref is not None:
            stop = ref.size if end is None else min(end, ref.size)
            source = self.inner.read_external(ref.uri, start, stop)
        else:
            source = self.inner.read(rel, start, end)
        try:
            async for chunk in source:
                yield chunk
        finally:
            await source.aclose()

    async def list(self, path: str) -> builtins.list[ArtifactEntry]:
        rel = normalize_artifact_path(path, allow_root=True)
        hidden = await self._uploads.hidden_destinations(rel)
        if any(_covers(dest, rel) for dest in hidden if dest):
            return []
        prefix = rel + "/" if rel else ""
        entries = {
            e.path: e
            for e in await self.inner.list(path)
            if not any(_covers(dest, prefix + e.path) for dest in hidden)
        }
        for ref in await self._references.at_or_under(rel):
            if ref.dest_path == rel or any(_covers(dest, ref.dest_path) for dest in hidden):
                continue
            name, _, deeper = ref.dest_path[len(prefix) :].partition("/")
            if deeper:
                entries.setdefault(name, ArtifactEntry(name, True, None))
            else:
                entries[name] = ArtifactEntry(name, False, ref.size)
        return sorted(entries.values(), key=lambda e: e.path)

    # ------------------------------------------------------------------ writes

    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        return await self.inner.put(path, chunks)

    async def delete(self, path: str) -> None:
        # Deleting an artifact deletes what readers see there, references included (never
        # the referenced objects themselves).
        await self.inner.delete(path)
        await self._references.delete_at_or_under(normalize_artifact_path(path))

    async def aclose(self) -> None:
        await self.inner.aclose()

    # ------------------------------------------------------------------ staging (pass-through)

    @property
    def part_limits(self) -> PartLimits:
        return self.inner.part_limits

    async def stage_begin(self, path: str) -> str:
        return await self.inner.stage_begin(path)

    async def stage_part(
        self,
        path: str,
        staging_id: str,
        part_number: int,
        chunks: AsyncIterable[bytes],
        expected_sha256: str | None = None,
    ) -> StagedPart:
        return await self.inner.stage_part(path, staging_id, part_number, chunks, expected_sha256)

    async def stage_parts(self, path: str, staging_id: str) -> builtins.list[StagedPart]:
        return await self.inner.stage_parts(path, staging_id)

    async def stage_commit(
        self, path: str, staging_id: str, parts: builtins.list[StagedPart]
    ) -> int:
        return await self.inner.stage_commit(path, staging_id, parts)

    async def stage_abort(self, path: str, staging_id: str) -> None:
        await self.inner.stage_abort(path, staging_id)

    async def stage_list(self) -> builtins.list[tuple[str, str, float]]:
        return await self.inner.stage_list()

    # ------------------------------------------------------------------ external objects (pass-through)

    async def head_external(self, uri: str) -> tuple[int, str | None]:
        return await self.inner.head_external(uri)

    def read_external(
        self, uri: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        return self.inner.read_external(uri, start, end)
