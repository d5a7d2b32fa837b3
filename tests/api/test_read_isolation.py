"""Client-shaped reads cannot pin the database (issue 11 §2, second half).

Searches, metric history and GraphQL run on a read pool of their own whose sessions carry a
PostgreSQL ``statement_timeout``; the handler of such a read is cancelled, its statement with it,
when the client leaves. Each test makes reads slow in a way it controls exactly: it holds an
ACCESS EXCLUSIVE lock on the table the read needs (``params`` for a ``params.*`` filter,
``metric_chunks`` for a history), so the statement waits inside PostgreSQL for as long as the test
wants, visible in ``pg_stat_activity``. Every test first proves the reads really are stuck there,
then checks the outcome.

The server is ``server.serve`` in this process (production's runner: aiohttp does not cancel
handlers when a client leaves; metricgate's own watch must).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from tests.api.conftest import Api, now_ms

from metricgate.config import Settings
from metricgate.server import serve
from scripts import devservices

WAIT_S = 15.0


@contextlib.asynccontextmanager
async def serving(settings: Settings, **postgres: Any) -> AsyncIterator[Api]:
    port = devservices.find_free_port()
    settings = dataclasses.replace(
        settings,
        http=dataclasses.replace(settings.http, host="127.0.0.1", port=port),
        postgres=dataclasses.replace(settings.postgres, **postgres),
    )
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, stop=stop, handle_signals=False))
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 20
            while True:
                assert not task.done(), task
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get("/health") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, "server.serve did not start"
                await asyncio.sleep(0.05)
            yield Api(http)  # type: ignore[arg-type]
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


@contextlib.asynccontextmanager
async def table_locked(db_url: str, table: str) -> AsyncIterator[asyncpg.Connection]:
    """Hold ACCESS EXCLUSIVE on ``table`` until the block ends: any statement that reads it waits."""
    conn = await asyncpg.connect(db_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def waiting_on(admin: asyncpg.Connection, table: str) -> int:
    """Statements of other sessions in this database that wait for a lock on ``table``."""
    return await admin.fetchval(
        """SELECT count(*) FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
           WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()
             AND NOT l.granted AND l.relation = $1::regclass""",
        table,
    )


async def until(
    predicate: Callable[[], Awaitable[bool]], what: str, timeout_s: float = WAIT_S
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        await asyncio.sleep(0.05)


async def _run_with_param(api: Api) -> tuple[str, str]:
    experiment_id = await api.create_experiment()
    run_id = await api.new_run_id(experiment_id)
    (await api.log_batch(run_id, params=[{"key": "p", "value": "x"}])).ok()
    return experiment_id, run_id


def _param_search(experiment_id: str) -> dict[str, Any]:
    return {"experiment_ids": [experiment_id], "filter": "params.p = 'x'"}


async def test_statement_timeout_is_a_clear_400_not_database_unavailable(
    settings: Settings, db_url: str
) -> None:
    async with serving(settings, read_statement_timeout_s=1.0) as api:
        experiment_id, run_id = await _run_with_param(api)
        (await api.log_metric(run_id, "loss", 0.5, step=1)).ok()
        await until(lambda: _has_latest(api, run_id, "loss"), "the metric is flushed")
        admin = await asyncpg.connect(db_url)
        try:
            async with table_locked(db_url, "params"):
                search = asyncio.create_task(api.post("/runs/search", _param_search(experiment_id)))
                await until(
                    lambda: _positive(waiting_on(admin, "params")), "the search waits in PostgreSQL"
                )
                reply = await asyncio.wait_for(search, WAIT_S)
                message = reply.error(400, "INVALID_PARAMETER_VALUE")
                assert "limit of 1 s" in message and "unavailable" not in message, message
                assert "Retry-After" not in reply.headers
            async with table_locked(db_url, "metric_chunks"):
                history = asyncio.create_task(
                    api.get("/metrics/get-history", {"run_id": run_id, "metric_key": "loss"})
                )
                await until(
                    lambda: _positive(waiting_on(admin, "metric_chunks")), "the history read waits"
                )
                reply = await asyncio.wait_for(history, WAIT_S)
                assert "limit of 1 s" in reply.error(400, "INVALID_PARAMETER_VALUE")
            # The same reads answer once nothing holds them up.
            assert (await api.post("/runs/search", _param_search(experiment_id))).ok()["runs"][0][
                "info"
            ]["run_id"] == run_id
            assert [m["value"] for m in await api.history(run_id, "loss")] == [0.5]
        finally:
            await admin.close()


async def test_a_client_that_leaves_takes_its_statement_with_it(
    settings: Settings, db_url: str
) -> None:
    async with serving(settings, read_statement_timeout_s=120.0) as api:
        experiment_id, _ = await _run_with_param(api)
        admin = await asyncpg.connect(db_url)
        try:
            async with table_locked(db_url, "params"):
                async with aiohttp.ClientSession(base_url=str(api.client._base_url)) as leaving:  # type: ignore[attr-defined]
                    search = asyncio.create_task(
                        leaving.post(
                            "/api/2.0/mlflow/runs/search", json=_param_search(experiment_id)
                        )
                    )
                    await until(
                        lambda: _positive(waiting_on(admin, "params")),
                        "the search waits in PostgreSQL",
                    )
                    search.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await search
                # The client is gone and the lock is still held: only a cancel can end the statement.
                await until(
                    lambda: _zero(waiting_on(admin, "params")),
                    "the abandoned statement is cancelled",
                    5.0,
                )
            metrics = await (await api.client.get("/metrics")).text()  # type: ignore[attr-defined]
            assert 'route="/api/2.0/mlflow/runs/search",status="499"' in metrics.replace(
                ", ", ","
            ), metrics[:2000]
        finally:
            await admin.close()


async def test_expensive_reads_never_take_the_write_paths_connections(
    settings: Settings, db_url: str
) -> None:
    """32 stuck searches against a 4-connection read pool and a 4-connection main pool: log-batch
    still answers and its points are flushed while every search is still waiting."""
    async with serving(
        settings, pool_max_size=4, read_pool_max_size=4, acquire_timeout_s=60.0
    ) as api:
        experiment_id, run_id = await _run_with_param(api)
        admin = await asyncpg.connect(db_url)
        try:
            async with table_locked(db_url, "params"):
                searches = [
                    asyncio.create_task(api.post("/runs/search", _param_search(experiment_id)))
                    for _ in range(32)
                ]
                # Every read connection is taken; the other 28 searches wait for one in metricgate.
                await until(
                    lambda: _equals(waiting_on(admin, "params"), 4), "4 searches wait in PostgreSQL"
                )
                for step in range(20):
                    metrics = [
                        {
                            "key": f"m{i}",
                            "value": step * 100 + i,
                            "timestamp": now_ms(),
                            "step": step,
                        }
                        for i in range(50)
                    ]
                    (await asyncio.wait_for(api.log_batch(run_id, metrics=metrics), WAIT_S)).ok()
                # Straight from PostgreSQL: runs/get would read the locked params table too.
                await until(
                    lambda: _flushed(admin, run_id, "m49", 1949.0), "the batches are flushed"
                )
                assert not any(s.done() for s in searches), (
                    "a search finished while the table was locked"
                )
                assert await waiting_on(admin, "params") == 4
            replies = await asyncio.wait_for(asyncio.gather(*searches), WAIT_S)
            assert all(r.ok()["runs"][0]["info"]["run_id"] == run_id for r in replies)
        finally:
            await admin.close()


async def test_all_read_connections_busy_is_backpressure(settings: Settings, db_url: str) -> None:
    async with serving(settings, read_pool_max_size=1, acquire_timeout_s=0.5) as api:
        experiment_id, _ = await _run_with_param(api)
        admin = await asyncpg.connect(db_url)
        try:
            async with table_locked(db_url, "params"):
                first = asyncio.create_task(api.post("/runs/search", _param_search(experiment_id)))
                await until(
                    lambda: _positive(waiting_on(admin, "params")),
                    "the first search holds the read connection",
                )
                reply = await api.post("/runs/search", _param_search(experiment_id))
                message = reply.error(503, "TEMPORARILY_UNAVAILABLE")
                assert "busy" in message, message
                assert int(reply.headers["Retry-After"]) >= 1
                # The write path is untouched by the full read pool.
                assert (
                    await api.post("/experiments/create", {"name": f"e-{time.monotonic_ns()}"})
                ).ok()
            assert (await asyncio.wait_for(first, WAIT_S)).ok()["runs"]
        finally:
            await admin.close()


async def _has_latest(api: Api, run_id: str, key: str, value: float | None = None) -> bool:
    run = await api.get_run(run_id)
    found = [m for m in run["data"].get("metrics", []) if m["key"] == key]
    return bool(found) and (value is None or found[0]["value"] == value)


async def _flushed(admin: asyncpg.Connection, run_id: str, key: str, value: float) -> bool:
    found = await admin.fetchval(
        "SELECT value FROM latest_metrics WHERE run_id = $1 AND key = $2", run_id, key
    )
    return found == value


async def _positive(count: Awaitable[int]) -> bool:
    return await count > 0


async def _zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def _equals(count: Awaitable[int], expected: int) -> bool:
    return await count == expected


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Stream ingest with its embedded flusher, as deployed: flushing must go on beside stuck reads.
    return dataclasses.replace(settings, ingest=dataclasses.replace(settings.ingest, mode="stream"))
