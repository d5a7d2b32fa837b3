"""Pieces every store's staged uploads share: part-number and checksum rules, hashing while spooling.

A part's bytes are hashed (MD5 for the S3-style ETag, SHA-256 for the caller's checksum) in the
same worker-thread hop that writes them, so a multi-GB upload never hashes on the event loop and
never holds more than one batch in memory.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field

from metricgate.stores.artifacts.files import Descriptor, write_all

# Incoming chunks are gathered up to this size before one thread hop writes and hashes them.
SPOOL_BATCH_BYTES = 1024 * 1024


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
