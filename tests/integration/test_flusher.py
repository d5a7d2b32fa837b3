"""Flusher + PgMetricWriter on a real Redis and PostgreSQL: exact rows, replays, orphans, poison
entries, stop, duplicates, concurrent flushers and a PostgreSQL outage.

Points are checked row for row against what was appended; "exactly once" also uses the
``metricgate_points_flushed`` counter, which counts what flushes committed (a batch written twice
counts twice even though the unique index hides the second copy)."""

from __future__ import annotations

import asyncio
import contextlib
import math
import struct
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from metricgate.config import FlushSettings, IngestSettings, PostgresSettings
from metricgate.domain.errors import Unavailable
from metricgate.domain.metrics import wire
from metricgate.domain.metrics.chunks import build_batch, chunks_from_entries
from metricgate.domain.tracking.entities import Metric, MetricSeries
from metricgate.ingest.flusher import Flusher
from metricgate.ingest.sink import StreamMetricSink
from metricgate.ingest.streams import (
    DEAD_LETTER_STREAM,
    GROUP,
    IngestStreams,
    lastid_key,
    parse_id,
    shard_of,
    stream_key,
)
from metricgate.observability import METRICS
from metricgate.stores.postgres.metrics import PgMetricHistory, PgMetricWriter
from metricgate.stores.postgres.pool import Database, create_pool
from scripts import devservices

SHARDS = 4
FAST = FlushSettings(max_delay_ms=20, claim_idle_s=30.0, trim_interval_s=0.05, drain_timeout_s=5.0)

Row = tuple[object, ...]


# ---------------------------------------------------------------- fixtures and helpers


async def open_db(url: str) -> Database:
    pool = await create_pool(
        PostgresSettings(url=url, pool_min_size=1, pool_max_size=8, command_timeout_s=10)
    )
    return Database(pool, acquire_timeout_s=5)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    database = await open_db(db_url)
    try:
        yield database
    finally:
        await database.aclose()


@pytest.fixture
def writer(db: Database) -> PgMetricWriter:
    return PgMetricWriter(db)


def new_run() -> str:
    return uuid.uuid4().hex


def run_on_shard(shard: int) -> str:
    while True:
        run = new_run()
        if shard_of(run, SHARDS) == shard:
            return run


def f64(value: float) -> bytes:
    return struct.pack("<d", value)


def point_row(run: str, m: Metric) -> Row:
    return (
        run,
        m.key,
        m.step,
        m.timestamp_ms,
        f64(m.value),
        m.model_id,
        m.dataset_name,
        m.dataset_digest,
    )


def expected_rows(sent: Iterable[tuple[str, list[Metric]]]) -> Counter[Row]:
    """The distinct points appended (the unique index folds identical points into one)."""
    distinct = {point_row(run, m)[:5]: point_row(run, m) for run, metrics in sent for m in metrics}
    return Counter(distinct.values())


async def append(streams: IngestStreams, run: str, metrics: list[Metric]) -> bytes:
    return await streams.append(run, wire.encode(run, metrics, int(time.time() * 1000)))


def series_points(series: Iterable[MetricSeries]) -> list[tuple[int, int, bytes]]:
    """(step, timestamp, value bits) of every point read, in the order read."""
    return [
        (st, t, f64(v))
        for s in series
        for st, t, v in zip(s.steps, s.timestamps_ms, s.values, strict=True)
    ]


async def stored_rows(db: Database) -> Counter[Row]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT run_id, key, step, timestamp_ms, value, model_id, dataset_name, dataset_digest FROM metrics"
        )
    return Counter((r[0], r[1], r[2], r[3], f64(r[4]), r[5], r[6], r[7]) for r in rows)


async def latest_rows(db: Database) -> dict[tuple[str, str], tuple[int, int, bytes, str | None]]:
    async with db.connection() as conn:
        rows = await conn.fetch(
            "SELECT run_id, key, step, timestamp_ms, value, model_id FROM latest_metrics"
        )
    return {(r[0], r[1]): (r[2], r[3], f64(r[4]), r[5]) for r in rows}


def mlflow_latest(
    sent: Iterable[tuple[str, list[Metric]]],
) -> dict[tuple[str, str], tuple[int, int, bytes, str | None]]:
    best: dict[tuple[str, str], Metric] = {}

    def rank(m: Metric) -> tuple[int, int, int, float]:
        nan = math.isnan(m.value)
        return (m.step, m.timestamp_ms, int(nan), 0.0 if nan else m.value)

    for run, metrics in sent:
        for m in metrics:
            current = best.get((run, m.key))
            if current is None or rank(m) > rank(current):
                best[(run, m.key)] = m
    return {k: (m.step, m.timestamp_ms, f64(m.value), m.model_id) for k, m in best.items()}


async def pending_count(redis: aioredis.Redis) -> int:
    total = 0
    for shard in range(SHARDS):
        total += (await redis.xpending(stream_key(shard), GROUP))["pending"]
    return total


async def everything_flushed(streams: IngestStreams) -> bool:
    for shard, last in enumerate(await streams.last_ids()):
        if last is not None and not await streams.is_flushed(shard, last):
            return False
    return True


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(*flushers: Flusher) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.create_task(f.run()) for f in flushers]
    try:
        yield tasks
    finally:
        for f in flushers:
            f.stop()
        for t in tasks:
            if not t.done():
                try:
                    await asyncio.wait_for(asyncio.shield(t), 5)
                except TimeoutError:
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t


async def drain(
    streams: IngestStreams, tasks: list[asyncio.Task[None]], timeout_s: float = 10.0
) -> None:
    async def done() -> bool:
        for t in tasks:
            if t.done():  # a crashed flusher never drains: say why instead of timing out
                t.result()
                raise AssertionError("flusher task ended on its own")
        return await everything_flushed(streams)

    await wait_for(done, timeout_s, "the streams to drain")


def flushed_counter() -> float:
    return METRICS.points_flushed._value.get()


def sample_points(run: str, n: int, *, step0: int = 0, model_every: int = 0) -> list[Metric]:
    out = []
    for i in range(n):
        extras = {}
        if model_every and i % model_every == 0:
            extras = {"model_id": f"m-{run[:8]}", "dataset_name": "eval", "dataset_digest": "d1"}
        out.append(Metric(f"k{i % 3}", float(i) / 3, 1_700_000_000_000 + i, step0 + i, **extras))
    return out


# ---------------------------------------------------------------- exact rows


async def test_flush_writes_exact_rows_latest_and_model_points(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    runs = [new_run() for _ in range(5)]
    sent: list[tuple[str, list[Metric]]] = []
    for _i, run in enumerate(runs):
        sent.append((run, sample_points(run, 30, model_every=4)))
    special = [
        Metric("nan", math.nan, 5, 0),
        Metric("inf", math.inf, 5, 0),
        Metric("ninf", -math.inf, 5, 0),
        Metric("zero", -0.0, 5, 0),
        Metric("big", 1.7976931348623157e308, 2**63 - 1, 2**63 - 1),
        Metric("big", -1.0, -(2**63), -(2**63)),
        Metric("ключ/ü", 3.25, 7, 7),
    ]
    sent.append((runs[0], special))
    flushed_before = flushed_counter()
    async with running(Flusher(streams, writer, FAST)) as tasks:
        for run, metrics in sent:
            await append(streams, run, metrics)
        await drain(streams, tasks)

        async def trimmed() -> bool:
            return await streams.backlog_entries() == 0

        # No more writes arrive: the idle flusher still trims what it flushed.
        await wait_for(trimmed, 3, "the flusher to trim the flushed entries")
    assert await stored_rows(db) == expected_rows(sent)
    assert await latest_rows(db) == mlflow_latest(sent)
    assert flushed_counter() - flushed_before == sum(len(m) for _, m in sent)
    async with db.connection() as conn:
        model_rows = await conn.fetch(
            "SELECT run_id, key, step, timestamp_ms, value, model_id, dataset_name, dataset_digest"
            " FROM logged_model_metrics"
        )
    expected_model = Counter(
        point_row(run, m) for run, metrics in sent for m in metrics if m.model_id is not None
    )
    assert (
        Counter((r[0], r[1], r[2], r[3], f64(r[4]), r[5], r[6], r[7]) for r in model_rows)
        == expected_model
    )
    # Bookkeeping: nothing pending, no watermark left, streams trimmed, nothing dead-lettered.
    assert await pending_count(redis) == 0
    for shard in range(SHARDS):
        assert await redis.hlen(lastid_key(shard)) == 0
    assert await redis.xlen(DEAD_LETTER_STREAM) == 0


async def test_latest_never_regresses_across_batches(
    streams: IngestStreams, writer: PgMetricWriter, db: Database
) -> None:
    run = new_run()
    waves = [
        [Metric("m", 1.0, 100, 5)],
        [Metric("m", 99.0, 999, 3)],  # older step, newer timestamp, bigger value: not latest
        [Metric("m", 0.5, 101, 5)],  # same step, newer timestamp: latest
        [Metric("m", math.inf, 101, 5)],  # same step and timestamp, bigger value: latest
        [Metric("m", math.nan, 101, 5)],  # NaN ranks above +Infinity
        [Metric("m", 7.0, 101, 5), Metric("m", -math.inf, 50, 5)],  # neither beats NaN
    ]
    sent: list[tuple[str, list[Metric]]] = []
    async with running(Flusher(streams, writer, FAST)) as tasks:
        for wave in waves:
            await append(streams, run, wave)
            sent.append((run, wave))
            await drain(streams, tasks)
            assert await latest_rows(db) == mlflow_latest(sent), wave
    ((step, ts, value, _),) = (await latest_rows(db)).values()
    assert (step, ts) == (5, 101) and math.isnan(struct.unpack("<d", value)[0])
    assert await stored_rows(db) == expected_rows(sent)


# ---------------------------------------------------------------- replays and orphans


async def test_replay_after_crash_between_commit_and_ack_stores_nothing_twice(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    runs = [new_run() for _ in range(3)]
    sent = [(run, sample_points(run, 40, model_every=5)) for run in runs]
    for run, metrics in sent:
        await append(streams, run, metrics)
    # A flusher reads the entries, COMMITs them ... and dies before XACK.
    entries = await streams.read("crashed-after-commit", count=1000, block_ms=None)
    assert len(entries) == 3
    await writer.write(build_batch(chunks_from_entries([wire.decode(e.fields) for e in entries])))
    assert await stored_rows(db) == expected_rows(sent)
    assert await pending_count(redis) == 3
    # A live flusher reclaims them (idle past claim_idle_s already) and replays the batch.
    settings = FlushSettings(max_delay_ms=20, claim_idle_s=0.2, trim_interval_s=0.05)
    await asyncio.sleep(0.3)
    flushed_before = flushed_counter()
    async with running(Flusher(streams, writer, settings)) as tasks:
        await drain(streams, tasks)
    assert await pending_count(redis) == 0
    assert await stored_rows(db) == expected_rows(sent)  # no duplicate row
    assert await latest_rows(db) == mlflow_latest(sent)
    async with db.connection() as conn:
        assert await conn.fetchval("SELECT count(*) FROM logged_model_metrics") == sum(
            1 for _, ms in sent for m in ms if m.model_id
        )
    assert flushed_counter() - flushed_before == 120  # the replay, once
    for shard in range(SHARDS):
        assert await redis.hlen(lastid_key(shard)) == 0


async def test_same_entries_added_again_after_flush_store_nothing_new(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    run = new_run()
    first = sample_points(run, 25)
    async with running(Flusher(streams, writer, FAST)) as tasks:
        await append(streams, run, first)
        await drain(streams, tasks)
        before = await stored_rows(db)
        # A client's retry of a request already acknowledged: same points, new entry. Its
        # chunks equal the stored ones, so nothing at all is stored again.
        await append(streams, run, first)
        await drain(streams, tasks)
        assert await stored_rows(db) == before
        # Another request that repeats some points among new ones (the COPY fast path must not
        # lose the new ones). Its chunks differ from the first request's, so the repeated points
        # are stored a second time; every read folds them, as MLflow folds identical points.
        more = sample_points(run, 10, step0=100)
        await append(streams, run, first[:5] + more)
        await drain(streams, tasks)
    assert before == expected_rows([(run, first)])
    stored = await stored_rows(db)
    assert Counter(set(stored)) == expected_rows([(run, first), (run, more)])
    assert stored - Counter(set(stored)) == expected_rows([(run, first[:5])])
    history = PgMetricHistory(db)
    for key in {m.key for m in first + more}:
        points = series_points((await history.history(run, key, 1000, None)).items)
        assert sorted(points) == sorted(
            {(m.step, m.timestamp_ms, f64(m.value)) for m in first + more if m.key == key}
        )
    assert await latest_rows(db) == mlflow_latest([(run, first), (run, more)])
    assert await pending_count(redis) == 0


async def test_orphan_of_a_dead_consumer_is_reclaimed_and_flushed_once(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    runs = [run_on_shard(s) for s in range(SHARDS)]
    orphaned = [(run, sample_points(run, 10)) for run in runs]
    for run, metrics in orphaned:
        await append(streams, run, metrics)
    # A consumer reads the entries and dies before writing anything.
    taken = await streams.read("dead-consumer", count=1000, block_ms=None)
    assert len(taken) == SHARDS
    later = [(run, sample_points(run, 5, step0=50)) for run in runs]
    await asyncio.sleep(0.4)  # the dead consumer's entries are now idle past claim_idle_s
    flushed_before = flushed_counter()
    flusher = Flusher(
        streams, writer, FlushSettings(max_delay_ms=20, claim_idle_s=0.3, trim_interval_s=0.05)
    )
    async with running(flusher) as tasks:
        for run, metrics in later:
            await append(streams, run, metrics)
        await drain(streams, tasks)
    assert await stored_rows(db) == expected_rows(orphaned + later)
    assert await latest_rows(db) == mlflow_latest(orphaned + later)
    assert flushed_counter() - flushed_before == 4 * 10 + 4 * 5  # each entry flushed exactly once
    assert await pending_count(redis) == 0
    for shard in range(SHARDS):
        consumers = {
            c["name"]: c["pending"] for c in await redis.xinfo_consumers(stream_key(shard), GROUP)
        }
        assert consumers.get(b"dead-consumer", 0) == 0
    await streams.trim()
    assert await streams.backlog_entries() == 0


async def test_orphan_is_reclaimed_while_no_new_entries_arrive(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    """A flusher dies holding entries after the last write (traffic stopped, e.g. end of the
    training jobs). The live flusher must still reclaim them after ~claim_idle_s: their points
    are acknowledged, and until they are flushed every read of those runs waits and answers 503."""
    flusher = Flusher(
        streams, writer, FlushSettings(max_delay_ms=20, claim_idle_s=0.3, trim_interval_s=0.05)
    )
    async with running(flusher) as tasks:
        await asyncio.sleep(0.1)  # the live flusher is up and idle
        run = new_run()
        points = sample_points(run, 10)
        # The "other" flusher wins the read of the last write (XADD and its XREADGROUP in one
        # MULTI, so the live flusher's blocked read cannot get it first), then dies.
        stream = stream_key(shard_of(run, SHARDS))
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, wire.encode(run, points, int(time.time() * 1000)))
            pipe.xreadgroup(GROUP, "dead-consumer", {stream: ">"}, count=10)
            entry_id, taken = await pipe.execute()
        assert taken and taken[0][1][0][0] == entry_id
        await drain(streams, tasks, timeout_s=5)  # ~claim_idle_s + one claim interval is enough
    assert await stored_rows(db) == expected_rows([(run, points)])
    assert await pending_count(redis) == 0


async def test_read_your_writes_holds_while_an_older_entry_of_the_run_is_orphaned(
    streams: IngestStreams, writer: PgMetricWriter, db: Database
) -> None:
    """Invariant 4 with a dead flusher. Entry E1 of run R is pending on a dead consumer (not yet
    reclaimed); E2 of R is flushed by a live flusher. A read of R must not answer without E1's
    points: it may wait or answer 503, but once wait_visible returns, every point acknowledged
    for R is in PostgreSQL."""
    run = new_run()
    old = [Metric("loss", 1.0, 1000, 1)]
    new = [Metric("loss", 0.5, 2000, 2)]
    e1 = await append(streams, run, old)
    (taken,) = await streams.read("dead-consumer", count=10, block_ms=None)
    assert taken.entry_id == e1
    e2 = await append(streams, run, new)
    async with running(Flusher(streams, writer, FAST)):  # claim_idle_s=30: E1 stays orphaned
        await wait_for(lambda: _acked(streams, shard_of(run, SHARDS), e2), 10, "E2 to be flushed")
    sink = StreamMetricSink(streams, IngestSettings(read_wait_s=0.3))
    try:
        await sink.wait_visible(run)
    except Unavailable:
        return  # refusing the read is correct: E1 is not in PostgreSQL yet
    stored = await stored_rows(db)
    missing = expected_rows([(run, old), (run, new)]) - stored
    assert not missing, (
        f"wait_visible({run}) returned while acknowledged points are not in PostgreSQL: {sorted(missing)}; "
        "the flush of E2 dropped the run's watermark although the older E1 is still pending"
    )


async def _acked(streams: IngestStreams, shard: int, entry_id: bytes) -> bool:
    pending = await streams.client.xpending_range(
        streams.streams[shard], GROUP, min=entry_id, max=entry_id, count=1
    )
    info = await streams.client.xinfo_groups(streams.streams[shard])
    delivered = info[0]["last-delivered-id"]
    return not pending and parse_id(delivered) >= parse_id(entry_id)


# ---------------------------------------------------------------- poison entries


async def test_garbage_entry_goes_to_dead_letters_and_the_rest_is_written(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    run = run_on_shard(1)
    good1 = sample_points(run, 10)
    good2 = sample_points(run, 10, step0=10)
    await append(streams, run, good1)
    junk_id = await redis.xadd(stream_key(1), {b"junk": b"\x00\xff", b"r": run.encode()})
    wrong_version = dict(wire.encode(run, [Metric("never", 1.0, 1, 1)], 1))
    wrong_version[b"v"] = b"99"
    version_id = await redis.xadd(stream_key(1), wrong_version)
    short = dict(wire.encode(run, [Metric("never2", 1.0, 1, 1), Metric("never3", 2.0, 2, 2)], 1))
    short[b"x"] = short[b"x"][:8]
    short_id = await redis.xadd(stream_key(1), short)
    await append(streams, run, good2)
    async with running(Flusher(streams, writer, FAST)) as tasks:
        await drain(streams, tasks)
        # The flusher is still alive and keeps flushing.
        good3 = sample_points(run, 3, step0=500)
        await append(streams, run, good3)
        await drain(streams, tasks)
    assert await stored_rows(db) == expected_rows([(run, good1), (run, good2), (run, good3)])
    dead = await redis.xrange(DEAD_LETTER_STREAM)
    assert sorted(f[b"_id"] for _, f in dead) == sorted([junk_id, version_id, short_id])
    by_id = {f[b"_id"]: f for _, f in dead}
    assert by_id[junk_id][b"junk"] == b"\x00\xff"
    assert by_id[junk_id][b"_stream"] == stream_key(1)
    assert b"version" in by_id[version_id][b"_reason"]
    assert all(f[b"_reason"] for f in by_id.values())
    assert await pending_count(redis) == 0


async def test_entry_with_malformed_extras_is_dead_lettered_not_fatal(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    """An entry whose model/dataset column is not a list of triples (wire.decode raises TypeError
    instead of WireError) must be parked like any corrupt entry, not end the flusher."""
    run = run_on_shard(2)
    good = sample_points(run, 5)
    await append(streams, run, good)
    bad = dict(wire.encode(run, [Metric("k", 1.0, 1, 1)], 1))
    bad[b"m"] = b"5"
    bad_id = await redis.xadd(stream_key(2), bad)
    later = sample_points(run, 5, step0=10)
    await append(streams, run, later)
    async with running(Flusher(streams, writer, FAST)) as tasks:
        await drain(streams, tasks)
    assert await stored_rows(db) == expected_rows([(run, good), (run, later)])
    assert [f[b"_id"] for _, f in await redis.xrange(DEAD_LETTER_STREAM)] == [bad_id]


async def test_entry_postgresql_refuses_is_dead_lettered_and_the_rest_is_written(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    """A well-formed entry PostgreSQL can never store (a NUL character in a key: the API refuses
    it, but an entry written by another producer or version may hold one) must be isolated and
    dead-lettered; the rest of its batch is written and the flusher keeps running."""
    run = run_on_shard(3)
    good = sample_points(run, 5)
    await append(streams, run, good)
    bad_id = await append(streams, run, [Metric("bad\x00key", 1.0, 1, 1)])
    later = sample_points(run, 5, step0=10)
    await append(streams, run, later)
    async with running(Flusher(streams, writer, FAST)) as tasks:
        await drain(streams, tasks)
    assert await stored_rows(db) == expected_rows([(run, good), (run, later)])
    assert [f[b"_id"] for _, f in await redis.xrange(DEAD_LETTER_STREAM)] == [bad_id]


# ---------------------------------------------------------------- stop, duplicates, concurrency


async def test_stop_finishes_the_batch_in_hand(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    # A long max_delay: the flusher holds the entries it read while it waits for more.
    settings = FlushSettings(
        batch_points=1_000_000, max_delay_ms=600, claim_idle_s=30, trim_interval_s=0.05
    )
    flusher = Flusher(streams, writer, settings)
    task = asyncio.create_task(flusher.run())
    try:
        run = new_run()
        points = sample_points(run, 20)
        await append(streams, run, points)

        async def delivered_to_flusher() -> bool:
            shard = shard_of(run, SHARDS)
            rows = await redis.xpending_range(stream_key(shard), GROUP, min="-", max="+", count=10)
            return bool(rows) and rows[0]["consumer"] == flusher.consumer.encode()

        await wait_for(delivered_to_flusher, 5, "the flusher to read the entry")
        assert await stored_rows(db) == Counter()  # still collecting
        flusher.stop()
        await asyncio.wait_for(task, 5)
    finally:
        flusher.stop()
        if not task.done():
            task.cancel()
    assert await stored_rows(db) == expected_rows([(run, points)])
    assert await pending_count(redis) == 0
    # Once stopped, it reads nothing more.
    after = sample_points(run, 2, step0=900)
    entry_id = await append(streams, run, after)
    await asyncio.sleep(0.1)
    assert not await streams.is_flushed(shard_of(run, SHARDS), entry_id)
    assert await stored_rows(db) == expected_rows([(run, points)])


async def test_duplicates_within_and_across_batches_are_read_once(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    run = new_run()
    p = Metric("acc", 0.75, 1000, 3)
    q = Metric("acc", math.nan, 1000, 3)
    r = Metric("loss", -math.inf, 1000, 3)
    sent = [
        (run, [p, p, q, q, r]),  # duplicates inside one request
        (run, [p, q]),  # the same points in a second request of the same batch
    ]
    async with running(Flusher(streams, writer, FAST)) as tasks:
        for item in sent:
            await append(streams, *item)
        await drain(streams, tasks)
        sent.append((run, [r, p, Metric("acc", 0.8, 1001, 4)]))  # across batches, plus a new point
        await append(streams, *sent[-1])
        await drain(streams, tasks)
    # Exact repeats of a request's chunks are not stored again; points repeated inside one
    # request, or inside a request that also carries new points, are stored as sent, and
    # every read folds them (MLflow's rule for identical points).
    stored = await stored_rows(db)
    assert Counter(set(stored)) == expected_rows(sent)
    history = PgMetricHistory(db)
    acc = series_points((await history.history(run, "acc", 100, None)).items)
    assert acc == [(3, 1000, f64(0.75)), (3, 1000, f64(math.nan)), (4, 1001, f64(0.8))]
    loss = series_points((await history.history(run, "loss", 100, None)).items)
    assert loss == [(3, 1000, f64(-math.inf))]
    assert series_points(await history.bulk_interval([run], "acc", 100, None, None)) == acc
    assert await latest_rows(db) == mlflow_latest(sent)


async def test_two_concurrent_flushers_store_every_point_exactly_once(
    streams: IngestStreams, writer: PgMetricWriter, db: Database, redis: aioredis.Redis
) -> None:
    runs = [new_run() for _ in range(20)]
    sent: list[tuple[str, list[Metric]]] = []
    settings = FlushSettings(
        batch_points=200, max_delay_ms=5, claim_idle_s=30, trim_interval_s=0.02
    )
    a, b = Flusher(streams, writer, settings), Flusher(streams, writer, settings)
    flushed_before = flushed_counter()
    async with running(a, b) as tasks:
        for wave in range(10):
            batch = [(run, sample_points(run, 30, step0=wave * 100)) for run in runs]
            sent.extend(batch)
            await asyncio.gather(*(append(streams, run, metrics) for run, metrics in batch))
            await asyncio.sleep(0.01)
        await drain(streams, tasks, timeout_s=20)
    total = sum(len(m) for _, m in sent)
    assert total == 6000
    stored = await stored_rows(db)
    assert sum(stored.values()) == total
    assert stored == expected_rows(sent)
    assert await latest_rows(db) == mlflow_latest(sent)
    assert flushed_counter() - flushed_before == total  # no entry written by both
    assert await pending_count(redis) == 0
    owners: set[bytes] = set()
    for shard in range(SHARDS):
        for consumer in await redis.xinfo_consumers(stream_key(shard), GROUP):
            owners.add(consumer["name"])
    assert owners <= {a.consumer.encode(), b.consumer.encode()}


# ---------------------------------------------------------------- PostgreSQL outage


@pytest.fixture
def private_postgres() -> AsyncIterator[devservices.PostgresInstance]:
    try:
        with devservices.temporary_postgres() as instance:
            yield instance
    except devservices.ServiceNotFound as exc:
        pytest.skip(str(exc))


async def test_postgres_outage_is_retried_and_nothing_is_lost(
    private_postgres: devservices.PostgresInstance, streams: IngestStreams, redis: aioredis.Redis
) -> None:
    from metricgate.stores.postgres.migrate import migrate_url

    admin = await asyncpg.connect(private_postgres.url())
    try:
        await admin.execute('CREATE DATABASE "outage"')
    finally:
        await admin.close()
    url = private_postgres.url("outage")
    await migrate_url(url)
    database = await open_db(url)
    try:
        writer = PgMetricWriter(database)
        run = new_run()
        sent: list[tuple[str, list[Metric]]] = []
        async with running(Flusher(streams, writer, FAST)) as tasks:
            sent.append((run, sample_points(run, 10)))
            await append(streams, *sent[-1])
            await drain(streams, tasks)
            devservices.stop_postgres(Path(private_postgres.cluster_dir))
            for wave in range(1, 4):
                sent.append((run, sample_points(run, 10, step0=wave * 100)))
                await append(streams, *sent[-1])
                await asyncio.sleep(0.15)
            # Nothing can be flushed meanwhile, and nothing was acknowledged on the streams.
            assert not await everything_flushed(streams)
            assert not any(t.done() for t in tasks)
            devservices.start_postgres(
                Path(private_postgres.cluster_dir), durable=False, port=private_postgres.port
            )
            await drain(streams, tasks, timeout_s=20)
        assert await stored_rows(database) == expected_rows(sent)
        assert await latest_rows(database) == mlflow_latest(sent)
        assert await pending_count(redis) == 0
        assert await redis.xlen(DEAD_LETTER_STREAM) == 0
    finally:
        await database.aclose()


class _GatedWriter(PgMetricWriter):
    """The real writer, whose first write waits for the test's go: it lets a test look at the
    flusher while a batch is in PostgreSQL's hands."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.writing = asyncio.Event()
        self.go = asyncio.Event()
        self.active = self.max_active = 0
        self.first_steps: list[int] = []

    async def write(self, batch):  # type: ignore[no-untyped-def]
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            if not self.writing.is_set():
                self.writing.set()
                await self.go.wait()
            await super().write(batch)
            self.first_steps.append(min(min(chunk[2]) for chunk in batch.chunks))
        finally:
            self.active -= 1


async def test_next_batch_is_read_while_one_is_written_and_writes_stay_in_order(
    streams: IngestStreams, db: Database, redis: aioredis.Redis
) -> None:
    writer = _GatedWriter(db)
    flusher = Flusher(streams, writer, FAST)
    run = new_run()
    first, second = sample_points(run, 5), sample_points(run, 5, step0=100)
    async with running(flusher) as tasks:
        await append(streams, run, first)
        await asyncio.wait_for(writer.writing.wait(), 5)
        second_id = await append(streams, run, second)

        async def second_read_by_flusher() -> bool:
            rows = await redis.xpending_range(
                stream_key(shard_of(run, SHARDS)), GROUP, min=second_id, max=second_id, count=1
            )
            return bool(rows) and rows[0]["consumer"] == flusher.consumer.encode()

        # The pipeline: the second entry is read (and decoded) while the first is still being written...
        await wait_for(
            second_read_by_flusher, 5, "the second entry to be read during the first write"
        )
        assert await stored_rows(db) == Counter()
        # ... and neither is acknowledged before its own COMMIT.
        assert await pending_count(redis) == 2
        writer.go.set()
        await drain(streams, tasks)
    assert writer.max_active == 1  # one write at a time
    assert writer.first_steps == [0, 100]  # in the order read
    assert await stored_rows(db) == expected_rows([(run, first), (run, second)])
    assert await pending_count(redis) == 0
