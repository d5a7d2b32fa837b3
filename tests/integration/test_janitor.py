"""The abandoned-run janitor (ingest/janitor.py) on a real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from metricgate.config import FlushSettings, PostgresSettings
from metricgate.domain.metrics import wire
from metricgate.domain.metrics.chunks import build_batch, chunks_from_rows, rows_from_metrics
from metricgate.domain.tracking.entities import Metric
from metricgate.ingest.janitor import ABANDONED_TAG, AbandonedRunJanitor
from metricgate.ingest.streams import IngestStreams, lastwrite_key, shard_of
from metricgate.stores.postgres.metrics import PgMetricWriter
from metricgate.stores.postgres.pool import Database, create_pool
from metricgate.stores.postgres.runs import PgRunStore

SHARDS = 4
AFTER_S = 2.0


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    pool = await create_pool(PostgresSettings(url=db_url, pool_min_size=1, pool_max_size=4))
    database = Database(pool, 5)
    try:
        yield database
    finally:
        await database.aclose()


@pytest.fixture
def runs(db: Database) -> PgRunStore:
    return PgRunStore(db)


async def new_run(runs: PgRunStore, start_time: int) -> str:
    run = await runs.create(
        experiment_id=0, user_id="tester", start_time=start_time, run_name=None, tags=[]
    )
    return run.info.run_id


async def state(runs: PgRunStore, run_id: str) -> tuple[str, int | None, str | None]:
    run = await runs.get(run_id)
    tags = {t.key: t.value for t in run.tags}
    return run.info.status, run.info.end_time, tags.get(ABANDONED_TAG)


async def write_metric(db: Database, run_id: str, timestamp_ms: int) -> None:
    await PgMetricWriter(db).write(
        build_batch(
            chunks_from_rows(rows_from_metrics(run_id, [Metric("loss", 1.0, timestamp_ms, 0)]))
        )
    )


async def set_last_write(redis: aioredis.Redis, run_id: str, ms: int) -> None:
    await redis.hset(lastwrite_key(shard_of(run_id, SHARDS)), run_id, ms)


def janitor(
    runs: PgRunStore, streams: IngestStreams | None, *, fail: bool, after_s: float = AFTER_S
) -> AbandonedRunJanitor:
    return AbandonedRunJanitor(
        runs, FlushSettings(abandoned_after_s=after_s, abandoned_fail=fail), streams
    )


async def test_idle_running_runs_are_tagged_and_active_ones_left_alone(
    runs: PgRunStore, db: Database, streams: IngestStreams, redis: aioredis.Redis
) -> None:
    now = now_ms()
    old = now - 60_000
    idle = await new_run(runs, old)
    idle_old_metrics = await new_run(runs, old)
    await write_metric(db, idle_old_metrics, now - 30_000)
    idle_old_redis_write = await new_run(runs, old)
    await set_last_write(redis, idle_old_redis_write, now - 20_000)
    recent_start = await new_run(runs, now - 100)
    recent_redis_write = await new_run(runs, old)
    await streams.append(
        recent_redis_write, wire.encode(recent_redis_write, [Metric("m", 1.0, old, 0)], now)
    )
    recent_pg_metric = await new_run(runs, old)
    await write_metric(db, recent_pg_metric, now - 100)
    finished = await new_run(runs, old)
    await runs.update(finished, "FINISHED", old + 1, None)
    killed = await new_run(runs, old)
    await runs.update(killed, "KILLED", old + 2, None)
    deleted = await new_run(runs, old)
    await runs.delete(deleted)

    marked = await janitor(runs, streams, fail=False).sweep()
    assert sorted(marked) == sorted([idle, idle_old_metrics, idle_old_redis_write])
    for run_id in (idle, idle_old_metrics, idle_old_redis_write):
        assert await state(runs, run_id) == ("RUNNING", None, "true")
    for run_id in (recent_start, recent_redis_write, recent_pg_metric):
        assert await state(runs, run_id) == ("RUNNING", None, None)
    assert await state(runs, finished) == ("FINISHED", old + 1, None)
    assert await state(runs, killed) == ("KILLED", old + 2, None)
    deleted_run = await runs.get(deleted)
    assert deleted_run.info.status == "RUNNING" and ABANDONED_TAG not in {
        t.key for t in deleted_run.tags
    }
    # Marking is idempotent: a second sweep (another janitor, or the next interval) finds nothing.
    assert await janitor(runs, streams, fail=False).sweep() == []


async def test_abandoned_fail_sets_failed_and_end_time_to_last_activity(
    runs: PgRunStore, db: Database, streams: IngestStreams, redis: aioredis.Redis
) -> None:
    now = now_ms()
    start = now - 60_000
    only_start = await new_run(runs, start)
    with_metric = await new_run(runs, start)
    await write_metric(db, with_metric, now - 40_000)
    with_redis_write = await new_run(runs, start)
    await write_metric(db, with_redis_write, now - 40_000)
    await set_last_write(redis, with_redis_write, now - 10_000)  # the newest activity wins
    alive = await new_run(runs, start)
    await set_last_write(redis, alive, now)

    marked = await janitor(runs, streams, fail=True).sweep()
    assert sorted(marked) == sorted([only_start, with_metric, with_redis_write])
    assert await state(runs, only_start) == ("FAILED", start, "true")
    assert await state(runs, with_metric) == ("FAILED", now - 40_000, "true")
    assert await state(runs, with_redis_write) == ("FAILED", now - 10_000, "true")
    assert await state(runs, alive) == ("RUNNING", None, None)
    # Failed runs' last-write times are dropped; the live run's stays.
    assert await streams.last_writes_ms([only_start, with_metric, with_redis_write, alive]) == {
        alive: now
    }
    assert await janitor(runs, streams, fail=True).sweep() == []


async def test_without_redis_postgresql_activity_decides(runs: PgRunStore, db: Database) -> None:
    """INGEST_MODE=direct runs the janitor without streams."""
    now = now_ms()
    idle = await new_run(runs, now - 60_000)
    active = await new_run(runs, now - 60_000)
    await write_metric(db, active, now)
    assert await janitor(runs, None, fail=True).sweep() == [idle]
    assert await state(runs, idle) == ("FAILED", now - 60_000, "true")
    assert await state(runs, active) == ("RUNNING", None, None)


async def test_a_run_that_logs_again_in_time_is_not_marked(
    runs: PgRunStore, streams: IngestStreams
) -> None:
    start = now_ms() - 1500
    run_id = await new_run(runs, start)
    j = janitor(runs, streams, fail=True, after_s=1.0)
    await streams.append(run_id, wire.encode(run_id, [Metric("m", 1.0, start, 0)], 0))
    await asyncio.sleep(0.6)  # start is now 2.1 s old, the write 0.6 s
    assert await j.sweep() == []
    await asyncio.sleep(0.6)  # the write is 1.2 s old
    assert await j.sweep() == [run_id]
    status, end_time, tag = await state(runs, run_id)
    assert (status, tag) == ("FAILED", "true")
    assert end_time is not None and end_time > start + 1000  # the last write, not the start


async def test_janitor_loop_marks_and_stops_promptly(
    runs: PgRunStore, streams: IngestStreams
) -> None:
    idle = await new_run(runs, now_ms() - 60_000)
    j = janitor(runs, streams, fail=False, after_s=0.5)
    task = asyncio.create_task(j.run())
    try:
        deadline = time.monotonic() + 5
        while (await state(runs, idle))[2] is None:
            assert time.monotonic() < deadline, "the janitor loop never marked the idle run"
            await asyncio.sleep(0.05)
        late = await new_run(runs, now_ms() - 60_000)
        deadline = time.monotonic() + 5  # interval_s is max(1, after/4) = 1 s
        while (await state(runs, late))[2] is None:
            assert time.monotonic() < deadline, "the janitor loop did not sweep again"
            await asyncio.sleep(0.05)
    finally:
        j.stop()
        started = time.monotonic()
        await asyncio.wait_for(task, 3)
        assert time.monotonic() - started < 1.0


async def test_many_live_old_runs_do_not_hide_an_abandoned_one(
    runs: PgRunStore, db: Database, streams: IngestStreams, redis: aioredis.Redis
) -> None:
    """Long training runs started hours ago and still logging are candidates by start time. The
    sweep must still find the abandoned run among them, however many live ones there are."""
    now = now_ms()
    live = [uuid.uuid4().hex for _ in range(1200)]
    async with db.connection() as conn:
        await conn.executemany(
            """INSERT INTO runs (run_id, experiment_id, run_name, user_id, status, start_time, lifecycle_stage,
                                 artifact_uri)
               VALUES ($1, 0, 'live', 'tester', 'RUNNING', $2, 'active', 'mlflow-artifacts:/0/x/artifacts')""",
            [(run_id, now - 3_600_000 + i) for i, run_id in enumerate(live)],
        )
    # Half log through the stream (recent Redis write), half are already in PostgreSQL.
    async with redis.pipeline(transaction=False) as pipe:
        for run_id in live[::2]:
            pipe.hset(lastwrite_key(shard_of(run_id, SHARDS)), run_id, now)
        await pipe.execute()
    await PgMetricWriter(db).write(
        build_batch(
            chunks_from_rows(
                row
                for run_id in live[1::2]
                for row in rows_from_metrics(run_id, [Metric("loss", 0.1, now, 9)])
            )
        )
    )
    abandoned = await new_run(runs, now - 60_000)  # started after all of them; idle for a minute
    marked = await janitor(runs, streams, fail=True).sweep()
    assert marked == [abandoned]
    assert await state(runs, abandoned) == ("FAILED", now - 60_000, "true")
