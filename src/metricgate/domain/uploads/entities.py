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

# S3's part numbers; the local store keeps the same so that sessions behave alike on both.
MIN_PART_NUMBER = 1
MAX_PART_NUMBER = 10_000
# S3 refuses (at CompleteMultipartUpload, i.e. after every byte was sent) parts below 5 MiB
# except the last, and any part above 5 GiB.
S3_MIN_PART_BYTES = 5 * 1024 * 1024
S3_MAX_PART_BYTES = 5 * 1024 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PartLimits:
    """What a store's staging area can commit. The byte bounds hold for every part of a file
    but its last; ``max_part_bytes`` None means no ceiling of the store's own."""

    min_part_bytes: int = 0
    max_part_bytes: int | None = None
    max_parts: int = MAX_PART_NUMBER


S3_PART_LIMITS = PartLimits(S3_MIN_PART_BYTES, S3_MAX_PART_BYTES, MAX_PART_NUMBER)
# A filesystem takes parts of any size: only the settings bound them.
LOCAL_PART_LIMITS = PartLimits(0, None, MAX_PART_NUMBER)


@dataclass(frozen=True, slots=True)
class PartSizes:
    """The part sizes an upload session may choose: the settings within the store's limits."""

    min_part_bytes: int
    max_part_bytes: int


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
