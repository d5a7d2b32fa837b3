"""Fixtures shared by the ingest integration tests: a Redis client and the ingest streams on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from metricgate.ingest.streams import IngestStreams

SHARDS = 4


@pytest.fixture
async def redis(redis_client_url: str) -> AsyncIterator[aioredis.Redis]:
    # Room for many concurrent appends (redis-py's default pool refuses a 101st connection).
    client = aioredis.Redis.from_url(redis_client_url, max_connections=1000)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def streams(redis: aioredis.Redis) -> AsyncIterator[IngestStreams]:
    s = IngestStreams(redis, SHARDS)
    try:
        await s.ensure_groups()
        yield s
    finally:
        await s.aclose()
