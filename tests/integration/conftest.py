"""Fixtures shared by the integration tests: a Redis client and the ingest streams on it, and a
metricgate ``Database`` (asyncpg pool) on the test's own database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from metricgate.config import PostgresSettings
from metricgate.ingest.streams import IngestStreams
from metricgate.stores.postgres.pool import Database, create_pool

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


async def open_database(db_url: str, max_size: int = 25) -> Database:
    """A pool on ``db_url``; connections open on demand, so a large ``max_size`` costs nothing
    until a test runs that many statements at once (the concurrency tests)."""
    settings = PostgresSettings(url=db_url, pool_min_size=1, pool_max_size=max_size)
    return Database(await create_pool(settings), settings.acquire_timeout_s)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await open_database(db_url)
    try:
        yield database
    finally:
        await database.aclose()
