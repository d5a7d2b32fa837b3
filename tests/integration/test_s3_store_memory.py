"""Memory stays bounded when big bodies go through the S3 store (SeaweedFS, real HTTP).

Python-level allocations are traced while a generated stream several times larger than the
allowed peak goes up and comes back down: a store that buffered the whole body would blow
the bound. (The 20 GB RSS figure is a benchmark, not a test.)
"""

from __future__ import annotations

import hashlib
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import pytest

from metricgate.stores.artifacts.s3 import S3ArtifactStore
from s3_services import S3Endpoint

MIB = 1024 * 1024
PART = 5 * MIB


async def generated(total: int, block: bytes) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        piece = block[: min(len(block), total - sent)]
        sent += len(piece)
        yield piece


@contextmanager
def traced_peak() -> Iterator[list[int]]:
    result: list[int] = []
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


@pytest.fixture
async def store(s3_seaweed: S3Endpoint) -> AsyncIterator[S3ArtifactStore]:
    opened = await S3ArtifactStore.open(
        f"s3://{s3_seaweed.bucket}/memory/{uuid.uuid4().hex}", endpoint_url=s3_seaweed.url,
        region=s3_seaweed.region, access_key=s3_seaweed.access_key, secret_key=s3_seaweed.secret_key,
        part_bytes=PART,
    )  # fmt: skip
    try:
        yield opened
    finally:
        await opened.aclose()


async def test_put_and_read_of_a_large_stream_stay_bounded(store: S3ArtifactStore) -> None:
    total = 80 * MIB
    block = hashlib.sha256(b"seed").digest() * (MIB // 32)
    with traced_peak() as put_peak:
        assert await store.put("big.bin", generated(total, block)) == total
    # One part being filled + UPLOAD_CONCURRENCY parts in flight (+ their joined copies).
    assert put_peak[0] < 40 * MIB, (
        f"put peaked at {put_peak[0] / MIB:.1f} MiB for an {total // MIB} MiB body"
    )

    digest = hashlib.sha256()
    received = 0
    with traced_peak() as read_peak:
        async for chunk in store.read("big.bin"):
            digest.update(chunk)
            received += len(chunk)
    assert received == total
    assert read_peak[0] < 16 * MIB, f"read peaked at {read_peak[0] / MIB:.1f} MiB"
    expected = hashlib.sha256()
    async for chunk in generated(total, block):
        expected.update(chunk)
    assert digest.hexdigest() == expected.hexdigest()


async def test_staged_part_is_spooled_not_buffered(store: S3ArtifactStore) -> None:
    part_size = 48 * MIB
    block = b"\x5a" * MIB
    staging_id = await store.stage_begin("staged.bin")
    with traced_peak() as peak:
        part = await store.stage_part("staged.bin", staging_id, 1, generated(part_size, block))
    assert part.size == part_size
    assert peak[0] < 16 * MIB, (
        f"stage_part peaked at {peak[0] / MIB:.1f} MiB for a {part_size // MIB} MiB part"
    )
    assert await store.stage_commit("staged.bin", staging_id, [part]) == part_size
    assert await store.size("staged.bin") == part_size
