"""The asyncpg pool and the one place PostgreSQL errors become metricgate errors."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from metricgate.config import PostgresSettings
from metricgate.domain.errors import InvalidParameter, QueryTimeout, StoreUnavailable, Unavailable

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

# What store code runs its statements on: a pooled connection is a proxy that asyncpg's stubs type
# apart from a Connection (migrations also get a bare Connection); both answer the same calls.
PgConnection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection without asyncpg's default reset query (advisory unlock, CLOSE ALL,
    UNLISTEN, RESET ALL): that is one more round trip per request and nothing here needs it,
    because no code leaves session state on a pooled connection. Rules that keep it so: locks are
    ``pg_advisory_xact_lock`` (released at COMMIT/ROLLBACK), settings are ``SET LOCAL``, no LISTEN
    and no cursor outside a transaction. An open transaction is still rolled back by asyncpg."""


async def create_pool(
    settings: PostgresSettings,
    *,
    max_size: int | None = None,
    statement_timeout_s: float | None = None,
) -> asyncpg.Pool:
    """The main pool, or (with ``statement_timeout_s``) a pool whose sessions PostgreSQL itself
    stops after that long: a server-side limit also ends the statement if this process dies."""
    server_settings: dict[str, str] = {}
    command_timeout = settings.command_timeout_s
    if statement_timeout_s is not None:
        server_settings["statement_timeout"] = str(max(1, round(statement_timeout_s * 1000)))
        # Searches are short statements whose many-key forms cross JIT's cost thresholds: compiling
        # took ~145 ms where the work took ~6 ms. Not a setting: nothing on this pool gains from it.
        server_settings["jit"] = "off"
        # The client-side limit only backs up the server's (a partitioned network): a bit later.
        command_timeout = statement_timeout_s + 5.0
    max_size = settings.pool_max_size if max_size is None else max_size
    try:
        pool = await asyncpg.create_pool(
            settings.url,
            # The read pool opens connections when reads come (a flush process never has any).
            min_size=0
            if statement_timeout_s is not None
            else min(settings.pool_min_size, max_size),
            max_size=max_size,
            command_timeout=command_timeout,
            reset=_keep_session,
            server_settings=server_settings or None,
        )
    except _UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable("database is unreachable") from exc
    assert pool is not None
    return pool


@contextlib.contextmanager
def _translate_errors() -> Iterator[None]:
    """PostgreSQL failures as metricgate errors (what the client sees)."""
    try:
        yield
    except _UNAVAILABLE_ERRORS as exc:
        raise StoreUnavailable("database is unavailable, retry later", retry_after_s=2) from exc
    except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError) as exc:
        # Transient by nature: the client retries a 503 after Retry-After.
        raise StoreUnavailable(
            "write conflict with a concurrent request, retry", retry_after_s=1
        ) from exc
    except asyncpg.ProgramLimitExceededError as exc:
        raise InvalidParameter("A value is too large to be stored.") from exc
    except asyncpg.DataError as exc:
        # Defence in depth: the codec already refuses NUL in JSON bodies and query strings.
        raise InvalidParameter("Text values must be valid UTF-8 without NUL characters.") from exc


class Database:
    """Two pools behind one wrapper: acquire with a bounded wait and translate outages to 503.

    ``connection()`` serves the write path, the flusher and short keyed lookups. ``read_connection()``
    serves reads whose cost the client's input decides (searches, metric history): a separate,
    smaller pool with a statement timeout, so expensive reads queue among themselves and can
    never take the connections that acknowledged writes need to reach PostgreSQL. Without a
    read pool (tests that build a Database by hand) reads share the main pool."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        acquire_timeout_s: float,
        reads: asyncpg.Pool | None = None,
        read_statement_timeout_s: float | None = None,
    ) -> None:
        self.pool = pool
        self.reads = reads
        self._acquire_timeout_s = acquire_timeout_s
        self._read_timeout_s = read_statement_timeout_s

    @classmethod
    async def open(cls, settings: PostgresSettings) -> Database:
        pool = await create_pool(settings)
        try:
            reads = await create_pool(
                settings,
                max_size=settings.read_pool_max_size,
                statement_timeout_s=settings.read_statement_timeout_s,
            )
        except BaseException:
            await pool.close()
            raise
        return cls(pool, settings.acquire_timeout_s, reads, settings.read_statement_timeout_s)

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[PgConnection]:
        with _translate_errors():
            async with self.pool.acquire(timeout=self._acquire_timeout_s) as conn:
                yield conn

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:
        async with self.connection() as conn, conn.transaction():
            yield conn

    @contextlib.asynccontextmanager
    async def read_connection(self) -> AsyncIterator[PgConnection]:
        """A connection for a client-shaped read. Cancelling the task that holds it (the client
        went away) makes asyncpg cancel the running statement in PostgreSQL."""
        if self.reads is None:
            async with self.connection() as conn:
                yield conn
            return
        acquired = False
        try:
            with _translate_errors():
                async with self.reads.acquire(timeout=self._acquire_timeout_s) as conn:
                    acquired = True
                    yield conn
        except StoreUnavailable as exc:
            if not acquired and isinstance(exc.__cause__, asyncio.TimeoutError):
                # Every read connection is busy for the whole wait: overload, not an outage.
                raise Unavailable(
                    f"all {self.reads.get_max_size()} connections for searches and history reads "
                    "are busy; retry later",
                    retry_after_s=2,
                ) from exc.__cause__
            raise
        except asyncpg.QueryCanceledError as exc:
            if "statement timeout" not in str(exc):
                raise StoreUnavailable(
                    "the query was cancelled by the database, retry later"
                ) from exc
            raise QueryTimeout(
                f"The query ran longer than the server's limit of {self._read_timeout_s:g} s for "
                "searches and history reads and was cancelled; narrow the filter or ask for fewer "
                "results (METRICGATE_DB_READ_STATEMENT_TIMEOUT_S)."
            ) from exc

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.fetchval("SELECT 1")
            return True
        except StoreUnavailable:
            return False

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """Close both pools at once, each gracefully for at most ``timeout_s``. The graceful close
        waits for every connection to be released and for PostgreSQL to answer its goodbye: with
        the server frozen or a connection held by a stuck task that is never. Past the timeout
        the pool is terminated (sockets closed at once; PostgreSQL rolls back what was open)."""

        async def close(pool: asyncpg.Pool) -> None:
            closing = asyncio.ensure_future(pool.close())
            done, _ = await asyncio.wait({closing}, timeout=timeout_s)
            if not done:
                closing.cancel()  # asyncpg terminates the pool when its close is cancelled
                await asyncio.wait({closing}, timeout=1.0)
                pool.terminate()
            elif not closing.cancelled() and closing.exception() is not None:
                pool.terminate()  # a connection already broken by the outage: nothing to say goodbye to

        pools = [self.pool] if self.reads is None else [self.pool, self.reads]
        await asyncio.gather(*(close(pool) for pool in pools))
