"""The asyncpg pool and the one place PostgreSQL errors become metricgate errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg

from metricgate.config import PostgresSettings
from metricgate.errors import InvalidParameter, StoreUnavailable

# Connection-level failures that mean "database unreachable", not "bad request".
_UNAVAILABLE_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.InterfaceError,
    # A pooled connection cut by a server shutdown can surface as this (asyncpg issue #1069).
    asyncpg.exceptions.InternalClientError,
)



async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection without asyncpg's default reset query (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL): that is one more round trip per request and nothing here needs it,
    because no code leaves session state on a pooled connection. Rules that keep it so: locks are
    ``pg_advisory_xact_lock`` (released at COMMIT/ROLLBACK), settings are ``SET LOCAL``, no LISTEN
    and no cursor outside a transaction. An open transaction is still rolled back by asyncpg."""


async def create_pool(settings: PostgresSettings) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            settings.url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            command_timeout=settings.command_timeout_s,
            reset=_keep_session,
        )
    except _UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable("database is unreachable") from exc
    assert pool is not None
    return pool


class Database:
    """Pool wrapper: acquire with a bounded wait and translate outages to 503."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout_s: float) -> None:
        self.pool = pool
        self._acquire_timeout_s = acquire_timeout_s

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        try:
            async with self.pool.acquire(timeout=self._acquire_timeout_s) as conn:
                yield conn
        except _UNAVAILABLE_ERRORS as exc:
            raise StoreUnavailable("database is unavailable, retry later", retry_after_s=2) from exc
        except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
            # Transient by nature: the client retries a 503 after Retry-After.
            raise StoreUnavailable("write conflict with a concurrent request, retry", retry_after_s=1) from exc
        except asyncpg.ProgramLimitExceededError as exc:
            raise InvalidParameter("A value is too large to be stored.") from exc
        except asyncpg.DataError as exc:
            # Defence in depth: the codec already refuses NUL in JSON bodies and query strings.
            raise InvalidParameter("Text values must be valid UTF-8 without NUL characters.") from exc

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1")
            return True
        except StoreUnavailable:
            return False

    async def aclose(self) -> None:
        await self.pool.close()
