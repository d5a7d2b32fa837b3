"""Pieces every store's staged uploads share: part-number and checksum rules, hashing while spooling.

A part's bytes are hashed (MD5 for the S3-style ETag, SHA-256 for the caller's checksum) in the
same worker-thread hop that writes them, so a multi-GB upload never hashes on the event loop and
never holds more than one batch in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field

from metricgate.domain.errors import InvalidParameter
from metricgate.domain.uploads.entities import MAX_PART_NUMBER, MIN_PART_NUMBER
from metricgate.stores.artifacts.files import Descriptor, write_all

# Incoming chunks are gathered up to this size before one thread hop writes and hashes them.
SPOOL_BATCH_BYTES = 1024 * 1024
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def check_part_number(part_number: int) -> int:
    if isinstance(part_number, bool) or not isinstance(part_number, int):
        raise InvalidParameter(f"Invalid part number {part_number!r}: expected an integer")
    if not MIN_PART_NUMBER <= part_number <= MAX_PART_NUMBER:
        raise InvalidParameter(
            f"Invalid part number {part_number}: must be between {MIN_PART_NUMBER} and {MAX_PART_NUMBER}"
        )
    return part_number


def normalize_sha256(value: str | None) -> str | None:
    """Lower-case hex SHA-256, or None; anything else is a client mistake."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if not _SHA256_HEX.match(lowered):
        raise InvalidParameter(f"Invalid SHA-256 {value[:80]!r}: expected 64 hexadecimal digits")
    return lowered


def checksum_mismatch(what: str, expected: str, actual: str) -> InvalidParameter:
    return InvalidParameter(
        f"Checksum mismatch for {what}: expected SHA-256 {expected}, received data has {actual}"
    )


def strip_etag(etag: str | None) -> str:
    """S3 returns ETags in double quotes; the contract keeps the bare value."""
    return (etag or "").strip().strip('"')


@dataclass
class PartDigest:
    """Running size and hashes of one part."""

    size: int = 0
    md5: hashlib._Hash = field(default_factory=hashlib.md5)
    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)

    def update(self, batch: list[bytes]) -> None:
        for chunk in batch:
            self.md5.update(chunk)
            self.sha256.update(chunk)
            self.size += len(chunk)


async def spool(chunks: AsyncIterable[bytes], handle: Callable[[list[bytes]], None]) -> None:
    """Gather ``chunks`` into batches of about ``SPOOL_BATCH_BYTES`` and pass each to ``handle``
    in one worker-thread hop (empty chunks are skipped)."""
    batch: list[bytes] = []
    batched = 0
    async for chunk in chunks:
        if not chunk:
            continue
        batch.append(bytes(chunk))
        batched += len(chunk)
        if batched >= SPOOL_BATCH_BYTES:
            await asyncio.to_thread(handle, batch)
            batch, batched = [], 0
    if batch:
        await asyncio.to_thread(handle, batch)


async def spool_hashed(chunks: AsyncIterable[bytes], fd: Descriptor) -> PartDigest:
    """Write ``chunks`` to ``fd`` in batches, hashing each batch in the same thread hop.

    ``fd`` guards the descriptor against a cancelled request closing it under the worker
    (see files.Descriptor).
    """
    digest = PartDigest()

    def write_and_hash(batch: list[bytes]) -> None:
        fd.call(write_all, batch)
        digest.update(batch)

    await spool(chunks, write_and_hash)
    return digest
