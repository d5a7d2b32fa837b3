"""IngestStreams (ingest/streams.py) against a real Redis: append, groups, reads, acks, trimming,
orphan claims, watermarks and the backlog count."""

from __future__ import annotations

import asyncio
import uuid
import zlib

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from metricgate.config import IngestSettings
from metricgate.domain.metrics import wire
from metricgate.domain.tracking.entities import Metric
from metricgate.ingest.sink import StreamMetricSink
from metricgate.ingest.streams import (
    DEAD_LETTER_STREAM,
    GROUP,
    Entry,
    IngestStreams,
    lastid_key,
    lastwrite_key,
    parse_id,
    shard_of,
    stream_key,
)

SHARDS = 4


def run_id() -> str:
    return uuid.uuid4().hex


def run_on_shard(shard: int, shards: int = SHARDS) -> str:
    while True:
        candidate = run_id()
        if shard_of(candidate, shards) == shard:
            return candidate


def fields_for(run: str, n: int = 1, base_step: int = 0) -> dict[bytes, bytes]:
    return wire.encode(run, [Metric("k", float(i), 1000 + i, base_step + i) for i in range(n)], 1)


async def pending_ids(redis: aioredis.Redis, stream: bytes) -> list[bytes]:
    rows = await redis.xpending_range(stream, GROUP, min="-", max="+", count=10_000)
    return [r["message_id"] for r in rows]


async def stream_ids(redis: aioredis.Redis, stream: bytes) -> list[bytes]:
    return [entry_id for entry_id, _ in await redis.xrange(stream)]


# ---------------------------------------------------------------- gateway side


async def test_append_sets_entry_watermark_and_last_write(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    run = run_id()
    shard = shard_of(run, SHARDS)
    fields = fields_for(run, 3)
    entry_id = await streams.append(run, fields)
    assert isinstance(entry_id, bytes)
    stored = await redis.xrange(stream_key(shard))
    assert [(i, f) for i, f in stored] == [(entry_id, fields)]
    assert await redis.hget(lastid_key(shard), run) == entry_id
    assert int(await redis.hget(lastwrite_key(shard), run)) == parse_id(entry_id)[0]
    # Only that shard's stream got the entry.
    for other in range(SHARDS):
        if other != shard:
            assert await redis.xlen(stream_key(other)) == 0
    # A second append moves both forward.
    second = await streams.append(run, fields_for(run, 1))
    assert parse_id(second) > parse_id(entry_id)
    assert await redis.hget(lastid_key(shard), run) == second
    assert await streams.pending_id_of_run(run) == (shard, second)
    assert (await streams.last_writes_ms([run])) == {run: parse_id(second)[0]}


async def test_append_watermark_never_visible_without_its_entry(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    """Concurrent appends and a poller: whenever a watermark is visible, its entry is already in
    the stream and the last-write time matches it (one atomic script, not three commands)."""
    runs = [run_on_shard(0) for _ in range(5)]
    stop = asyncio.Event()
    violations: list[str] = []
    checks = 0

    async def poll() -> None:
        nonlocal checks
        poller = aioredis.Redis(connection_pool=redis.connection_pool)
        while True:
            final = (
                stop.is_set()
            )  # one more round after the appends, so the end state is checked too
            async with poller.pipeline(transaction=True) as pipe:
                pipe.hgetall(lastid_key(0))
                pipe.hgetall(lastwrite_key(0))
                pipe.xrevrange(stream_key(0), count=1)
                marks, writes, newest = await pipe.execute()
            newest_id = newest[0][0] if newest else None
            for run, mark in marks.items():
                checks += 1
                if newest_id is None or parse_id(mark) > parse_id(newest_id):
                    violations.append(
                        f"watermark {mark!r} of {run!r} ahead of the stream ({newest_id!r})"
                    )
                if writes.get(run) is None or int(writes[run]) != parse_id(mark)[0]:
                    violations.append(
                        f"last write {writes.get(run)!r} does not match watermark {mark!r}"
                    )
            if final:
                return
            await asyncio.sleep(0)

    task = asyncio.create_task(poll())
    for _wave in range(10):
        await asyncio.gather(
            *(streams.append(runs[i % 5], fields_for(runs[i % 5])) for i in range(30))
        )
        await asyncio.sleep(0.002)
    stop.set()
    await task
    assert not violations, violations[:5]
    assert checks >= 5  # at least the final round saw every run's watermark
    assert await redis.xlen(stream_key(0)) == 300
    # Every run's watermark is its newest entry.
    newest: dict[bytes, bytes] = {}
    for entry_id, fields in await redis.xrange(stream_key(0)):
        newest[fields[b"r"]] = entry_id
    assert await redis.hgetall(lastid_key(0)) == newest


async def test_concurrent_appends_each_get_their_own_entry_id(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    """Appends share pipelines (group commit): every caller must get back the id of its own entry."""
    runs = [run_id() for _ in range(400)]
    ids = await asyncio.gather(
        *(streams.append(r, fields_for(r, 1, base_step=i)) for i, r in enumerate(runs))
    )
    assert (
        len({(shard_of(r, SHARDS), i) for r, i in zip(runs, ids, strict=True)}) == 400
    )  # ids are per stream
    for i, (r, entry_id) in enumerate(zip(runs, ids, strict=True)):
        ((got_id, fields),) = await redis.xrange(
            stream_key(shard_of(r, SHARDS)), min=entry_id, max=entry_id
        )
        assert got_id == entry_id
        assert fields[b"r"] == r.encode()
        assert wire.decode(fields).steps[0] == i
        assert await redis.hget(lastid_key(shard_of(r, SHARDS)), r) == entry_id


async def test_append_survives_redis_forgetting_its_scripts(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    r = run_id()
    first = await streams.append(r, fields_for(r))
    await redis.script_flush()  # as after a restart or a failover
    second = await streams.append(r, fields_for(r))
    assert parse_id(second) > parse_id(first)
    assert await redis.hget(lastid_key(shard_of(r, SHARDS)), r) == second
    rows = await redis.xrange(stream_key(shard_of(r, SHARDS)))
    assert [i for i, _ in rows] == [first, second]


async def test_a_failing_append_does_not_fail_its_neighbours(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    """One request's Redis error (here: a shard's watermark hash clobbered by a string) fails that
    request only, not the other appends that shared its pipeline."""
    await redis.set(lastid_key(0), b"not a hash")
    good_runs = [run_on_shard(1) for _ in range(20)]
    bad_runs = [run_on_shard(0) for _ in range(20)]
    results = await asyncio.gather(
        *(
            streams.append(r, fields_for(r))
            for pair in zip(good_runs, bad_runs, strict=True)
            for r in pair
        ),
        return_exceptions=True,
    )
    good, bad = results[0::2], results[1::2]
    assert all(isinstance(entry_id, bytes) for entry_id in good), good
    assert all(isinstance(exc, Exception) for exc in bad), bad
    assert await redis.hgetall(lastid_key(1)) == {
        r.encode(): i for r, i in zip(good_runs, good, strict=True)
    }


def test_shard_of_is_stable_and_spread() -> None:
    # crc32, not hash(): the same run lands on the same shard in every process and version.
    assert (
        shard_of("0123456789abcdef0123456789abcdef", 4)
        == zlib.crc32(b"0123456789abcdef0123456789abcdef") % 4
    )
    assert [shard_of(r, 16) for r in ("a" * 32, "b" * 32, "c" * 32)] == [
        zlib.crc32(b"a" * 32) % 16,
        zlib.crc32(b"b" * 32) % 16,
        zlib.crc32(b"c" * 32) % 16,
    ]
    assert shard_of("abc", 1000) == 891568578 % 1000  # crc32(b"abc")
    assert shard_of("anything", 1) == 0
    runs = [uuid.uuid4().hex for _ in range(2000)]
    counts = [0] * 8
    for r in runs:
        s = shard_of(r, 8)
        assert s == shard_of(r, 8)
        counts[s] += 1
    assert min(counts) > 150, counts  # roughly even (expected 250 each)


def test_key_names_share_a_hash_tag_per_shard() -> None:
    assert stream_key(3) == b"mg:ingest:{3}"
    assert lastid_key(3) == b"mg:lastid:{3}"
    assert lastwrite_key(3) == b"mg:lastwrite:{3}"


async def test_ensure_groups_is_idempotent_and_counts_earlier_entries(
    redis: aioredis.Redis,
) -> None:
    s = IngestStreams(redis, SHARDS)
    run = run_on_shard(2)
    # An entry appended before any group exists (mkstream by XADD) must still be delivered.
    early = await s.append(run, fields_for(run))
    await s.aclose()
    await s.ensure_groups()
    await s.ensure_groups()
    other = IngestStreams(redis, SHARDS)
    await other.ensure_groups()
    await other.aclose()
    for shard in range(SHARDS):
        groups = await redis.xinfo_groups(stream_key(shard))
        assert [g["name"] for g in groups] == [GROUP]
    entries = await s.read("c1", count=10, block_ms=None)
    assert [e.entry_id for e in entries] == [early]
    # Creating the groups again does not rewind or reset the group.
    await s.ensure_groups()
    assert await s.read("c1", count=10, block_ms=None) == []
    assert await pending_ids(redis, stream_key(2)) == [early]


async def test_backlog_entries_counts_every_shard(streams: IngestStreams) -> None:
    assert await streams.backlog_entries() == 0
    for shard in range(SHARDS):
        for _ in range(shard + 1):
            r = run_on_shard(shard)
            await streams.append(r, fields_for(r))
    assert await streams.backlog_entries() == 1 + 2 + 3 + 4


async def test_last_ids_per_shard(streams: IngestStreams) -> None:
    assert await streams.last_ids() == [None] * SHARDS
    r1 = run_on_shard(1)
    await streams.append(r1, fields_for(r1))
    newest = await streams.append(r1, fields_for(r1))
    assert await streams.last_ids() == [None, newest, None, None]


async def test_last_writes_and_forget_runs(streams: IngestStreams) -> None:
    a, b, never = run_id(), run_id(), run_id()
    ida = await streams.append(a, fields_for(a))
    idb = await streams.append(b, fields_for(b))
    assert await streams.last_writes_ms([a, b, never]) == {a: parse_id(ida)[0], b: parse_id(idb)[0]}
    await streams.forget_runs([a])
    assert await streams.last_writes_ms([a, b, never]) == {b: parse_id(idb)[0]}


# ---------------------------------------------------------------- flusher side


async def test_read_returns_entries_once_and_ack_clears_pending(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    runs = [run_on_shard(s) for s in range(SHARDS)]
    ids = {r: await streams.append(r, fields_for(r, 2)) for r in runs}
    entries = await streams.read("c1", count=100, block_ms=None)
    assert sorted(e.entry_id for e in entries) == sorted(ids.values())
    for e in entries:
        assert e.stream == stream_key(shard_of(e.fields[b"r"].decode(), SHARDS))
        assert wire.decode(e.fields).run_id == e.fields[b"r"].decode()
    # Delivered once: another consumer of the group sees nothing new.
    assert await streams.read("c2", count=100, block_ms=None) == []
    # Own pending entries come back with own_pending (recovery after a restart under that name).
    again = await streams.read("c1", count=100, block_ms=None, own_pending=True)
    assert sorted(e.entry_id for e in again) == sorted(ids.values())
    assert await streams.read("c2", count=100, block_ms=None, own_pending=True) == []
    await streams.ack(entries)
    for shard in range(SHARDS):
        assert await pending_ids(redis, stream_key(shard)) == []
    assert await streams.read("c1", count=100, block_ms=None, own_pending=True) == []


async def test_read_respects_count_and_block(streams: IngestStreams) -> None:
    r = run_on_shard(0)
    for _ in range(5):
        await streams.append(r, fields_for(r))
    first = await streams.read("c1", count=2, block_ms=None)
    assert len(first) == 2
    rest = await streams.read("c1", count=100, block_ms=None)
    assert len(rest) == 3
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await streams.read("c1", count=100, block_ms=150) == []
    assert loop.time() - started >= 0.12
    # A blocked read wakes up for an entry appended meanwhile.
    reader = asyncio.create_task(streams.read("c1", count=100, block_ms=5000))
    await asyncio.sleep(0.05)
    new_id = await streams.append(r, fields_for(r))
    got = await asyncio.wait_for(reader, 2)
    assert [e.entry_id for e in got] == [new_id]


async def test_is_flushed_only_after_delivery_and_ack(streams: IngestStreams) -> None:
    r = run_on_shard(1)
    e1 = await streams.append(r, fields_for(r))
    e2 = await streams.append(r, fields_for(r))
    assert not await streams.is_flushed(1, e1)  # not delivered
    first = await streams.read("c1", count=1, block_ms=None)
    assert [e.entry_id for e in first] == [e1]
    assert not await streams.is_flushed(1, e1)  # delivered, pending
    assert not await streams.is_flushed(1, e2)  # not delivered
    await streams.ack(first)
    assert await streams.is_flushed(1, e1)
    assert not await streams.is_flushed(1, e2)
    second = await streams.read("c2", count=1, block_ms=None)
    assert [e.entry_id for e in second] == [e2]
    assert not await streams.is_flushed(1, e2)
    await streams.ack(second)
    assert await streams.is_flushed(1, e2)
    assert await streams.is_flushed(1, e1)


async def test_is_flushed_false_while_an_older_entry_is_pending(streams: IngestStreams) -> None:
    r = run_on_shard(3)
    e1 = await streams.append(r, fields_for(r))
    e2 = await streams.append(r, fields_for(r))
    (older,) = await streams.read("slow", count=1, block_ms=None)
    (newer,) = await streams.read("fast", count=1, block_ms=None)
    assert (older.entry_id, newer.entry_id) == (e1, e2)
    await streams.ack([newer])
    # e2 itself is acknowledged, but e1 (older, same shard) is not: not everything up to e2 is in.
    assert not await streams.is_flushed(3, e2)
    await streams.ack([older])
    assert await streams.is_flushed(3, e2)


async def test_is_flushed_without_group_is_false(redis: aioredis.Redis) -> None:
    s = IngestStreams(redis, SHARDS)
    r = run_on_shard(0)
    entry_id = await s.append(r, fields_for(r))  # stream exists, group does not
    await s.aclose()
    assert not await s.is_flushed(0, entry_id)


async def test_trim_keeps_undelivered_and_pending_and_removes_acked(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    r = run_on_shard(2)
    stream = stream_key(2)
    ids = [await streams.append(r, fields_for(r, base_step=i)) for i in range(6)]
    # Nothing delivered yet: trimming removes nothing.
    await streams.trim()
    assert await stream_ids(redis, stream) == ids
    delivered = await streams.read(
        "c1", count=4, block_ms=None
    )  # ids[0..3] pending, ids[4..5] undelivered
    assert [e.entry_id for e in delivered] == ids[:4]
    await streams.trim()
    assert await stream_ids(redis, stream) == ids
    # Ack out of order: ids[1] and ids[3]. ids[0] still pending keeps everything.
    await streams.ack([delivered[1], delivered[3]])
    await streams.trim()
    assert await stream_ids(redis, stream) == ids
    # Ack ids[0]: now ids[0], ids[1] can go; ids[2] is pending, ids[3] stays above it.
    await streams.ack([delivered[0]])
    await streams.trim()
    assert await stream_ids(redis, stream) == ids[2:]
    # Ack ids[2]: every delivered entry is done; undelivered ids[4], ids[5] stay.
    await streams.ack([delivered[2]])
    await streams.trim()
    assert await stream_ids(redis, stream) == ids[4:]
    assert await streams.backlog_entries() == 2
    # The undelivered entries are still readable after the trims.
    rest = await streams.read("c2", count=10, block_ms=None)
    assert [e.entry_id for e in rest] == ids[4:]
    await streams.ack(rest)
    await streams.trim()
    assert await stream_ids(redis, stream) == []
    # An entry appended after the trim is kept and delivered.
    late = await streams.append(r, fields_for(r))
    await streams.trim()
    assert await stream_ids(redis, stream) == [late]
    assert [e.entry_id for e in await streams.read("c2", count=10, block_ms=None)] == [late]


async def test_trim_pending_on_one_shard_does_not_hold_back_another(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    r0, r1 = run_on_shard(0), run_on_shard(1)
    await streams.append(r0, fields_for(r0))
    await streams.append(r1, fields_for(r1))
    entries = await streams.read("c1", count=10, block_ms=None)
    await streams.ack([e for e in entries if e.stream == stream_key(1)])
    await streams.trim()
    assert await redis.xlen(stream_key(0)) == 1
    assert await redis.xlen(stream_key(1)) == 0


async def test_claim_orphans_takes_idle_entries_of_another_consumer(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    runs = [run_on_shard(s) for s in (0, 1, 1, 3)]
    ids = sorted([await streams.append(r, fields_for(r)) for r in runs])
    taken = await streams.read("dead", count=100, block_ms=None)
    assert len(taken) == 4
    # Not idle long enough: nothing is claimed.
    assert await streams.claim_orphans("alive", min_idle_ms=60_000, count=100) == []
    await asyncio.sleep(0.12)
    claimed = await streams.claim_orphans("alive", min_idle_ms=100, count=100)
    assert sorted(e.entry_id for e in claimed) == ids
    assert {e.entry_id: e.fields for e in claimed} == {e.entry_id: e.fields for e in taken}
    assert all(isinstance(e, Entry) and e.stream in streams.streams for e in claimed)
    for shard in range(SHARDS):
        owners = await redis.xpending_range(stream_key(shard), GROUP, min="-", max="+", count=100)
        assert {o["consumer"] for o in owners} <= {b"alive"}
    # Freshly claimed: not idle any more, so a second claimer gets nothing.
    assert await streams.claim_orphans("third", min_idle_ms=100, count=100) == []
    await streams.ack(claimed)
    for shard in range(SHARDS):
        assert await pending_ids(redis, stream_key(shard)) == []


async def test_claim_orphans_skips_entries_trimmed_while_pending(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    r = run_on_shard(0)
    keep = await streams.append(r, fields_for(r))
    gone = await streams.append(r, fields_for(r))
    await streams.read("dead", count=10, block_ms=None)
    await redis.xdel(stream_key(0), gone)
    await asyncio.sleep(0.05)
    claimed = await streams.claim_orphans("alive", min_idle_ms=10, count=100)
    assert [e.entry_id for e in claimed] == [keep]


async def test_forget_flushed_drops_only_unchanged_watermarks(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    a, b = run_on_shard(0), run_on_shard(0)
    c = run_on_shard(3)
    ida = await streams.append(a, fields_for(a))
    idb_old = await streams.append(b, fields_for(b))
    idc = await streams.append(c, fields_for(c))
    idb_new = await streams.append(b, fields_for(b))  # b logged again after the batch was read
    await streams.forget_flushed([(a, ida), (b, idb_old), (c, idc)])
    assert await redis.hget(lastid_key(0), a) is None
    assert await redis.hget(lastid_key(0), b) == idb_new  # newer watermark kept
    assert await redis.hget(lastid_key(3), c) is None
    assert await streams.pending_id_of_run(a) == (0, None)
    assert await streams.pending_id_of_run(b) == (0, idb_new)
    # The last-write times stay (the janitor needs them).
    assert set(await streams.last_writes_ms([a, b, c])) == {a, b, c}
    # Forgetting with str ids works too, and an empty call is harmless.
    await streams.forget_flushed([(b, idb_new.decode())])
    assert await redis.hget(lastid_key(0), b) is None
    await streams.forget_flushed([])


async def test_dead_letter_keeps_fields_origin_and_reason(
    streams: IngestStreams, redis: aioredis.Redis
) -> None:
    entry = Entry(stream_key(1), b"123-4", {b"junk": b"\xff\x00", b"v": b"9"})
    await streams.dead_letter(entry, "unknown wire version b'9'" + "x" * 2000)
    (stored,) = await redis.xrange(DEAD_LETTER_STREAM)
    fields = stored[1]
    assert fields[b"junk"] == b"\xff\x00" and fields[b"v"] == b"9"
    assert fields[b"_stream"] == stream_key(1)
    assert fields[b"_id"] == b"123-4"
    assert (
        fields[b"_reason"].startswith(b"unknown wire version") and len(fields[b"_reason"]) == 1000
    )


class _CancellationAsRedisError(IngestStreams):
    """The real streams, except that a cancellation delivered inside the backlog read comes out
    as a RedisError, as redis-py can turn it into a connection error while tearing down. The read
    is slowed down so that a cancellation lands inside it."""

    async def backlog_entries(self) -> int:
        try:
            await asyncio.sleep(0.05)
            return await super().backlog_entries()
        except asyncio.CancelledError:
            raise RedisConnectionError("connection closed while reading") from None


async def test_sink_close_ends_the_backlog_poller_even_when_redis_swallows_the_cancel(
    redis: aioredis.Redis,
) -> None:
    # Regression: the poller logged the converted error, slept and polled again forever, and
    # the gateway's shutdown waited for it (1 in 8 SIGTERMs hung).
    sink = StreamMetricSink(_CancellationAsRedisError(redis, SHARDS), IngestSettings())
    await sink.start()
    await asyncio.sleep(0.02)  # the poller is inside its (slow) Redis read
    poller = sink._poller
    assert poller is not None
    closing = asyncio.create_task(sink.aclose())
    done, _ = await asyncio.wait([closing], timeout=2)  # waits without cancelling anything
    try:
        assert closing in done and poller.done(), (
            "sink.aclose() still waiting for the backlog poller"
        )
    finally:
        poller.cancel()  # without the fix: a second cancel lands in the sleep and ends it
        await asyncio.gather(closing, return_exceptions=True)
