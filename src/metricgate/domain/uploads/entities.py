"""Upload sessions and artifact references as plain values (what the stores return)."""

from __future__ import annotations

from dataclasses import dataclass

OPEN = "open"
COMMITTING = "committing"
COMMITTED = "committed"
ABORTED = "aborted"
EXPIRED = "expired"
# Sessions in these states still own staged data; everything else has released it.
LIVE_STATES = (OPEN, COMMITTING)


@dataclass(frozen=True, slots=True)
class ReceivedPart:
    part_number: int
    size: int
    sha256: str
    etag: str


@dataclass(frozen=True, slots=True)
class NewFile:
    """A file of a session being created (its staged upload already begun)."""

    rel_path: str
    dest_path: str
    size: int
    sha256: str | None
    staging_id: str
    part_count: int


@dataclass(frozen=True, slots=True)
class UploadFile:
    index: int
    rel_path: str  # relative to the session's destination; '' for a file session
    dest_path: str  # the store path it is committed to
    size: int
    sha256: str | None
    staging_id: str
    part_count: int
    committed: bool
    parts: tuple[ReceivedPart, ...] = ()

    def expected_part_size(self, part_number: int, part_size: int) -> int:
        """Every part is ``part_size`` bytes except the last, which holds the rest."""
        if part_number < self.part_count:
            return part_size
        return self.size - part_size * (self.part_count - 1)

    def missing_parts(self) -> list[int]:
        have = {p.part_number for p in self.parts}
        return [n for n in range(1, self.part_count + 1) if n not in have]


@dataclass(frozen=True, slots=True)
class UploadSession:
    session_id: str
    run_id: str
    rel_path: str
    dest_path: str
    is_directory: bool
    state: str
    part_size: int
    expires_at_ms: int
    created_at_ms: int
    updated_at_ms: int
    actor: str | None
    failure: str | None
    files: tuple[UploadFile, ...] = ()

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True, slots=True)
class PartTarget:
    """What a part upload needs to know, without loading every received part of the session."""

    session_id: str
    state: str
    expired: bool
    part_size: int
    file: UploadFile


@dataclass(frozen=True, slots=True)
class ArtifactReference:
    run_id: str
    rel_path: str  # relative to the run's artifact root
    dest_path: str  # the store path listings and downloads show it at
    uri: str
    size: int
    sha256: str | None
    etag: str | None
    registered_at_ms: int = 0
