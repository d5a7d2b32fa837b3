"""Database.aclose is bounded: both pools close even while a connection is never given back
(docs/design-shutdown.md)."""

from __future__ import annotations

import asyncio

import asyncpg

from metricgate.stores.postgres.pool import Database


async def test_database_close_ends_while_a_connection_is_never_released(db_url: str) -> None:
    # asyncpg's graceful close waits for every connection to come back: a request stuck on
    # one (or a task abandoned by the drain) would hold the process forever.
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=2)
    reads = await asyncpg.create_pool(db_url, min_size=0, max_size=1)
    db = Database(pool, 1.0, reads, 5.0)
    held = await pool.acquire()
    connection = held._con  # the proxy is detached when the pool terminates
    await asyncio.wait_for(db.aclose(timeout_s=0.3), 10)
    assert pool._closed and reads._closed
    assert connection is not None and connection.is_closed()
