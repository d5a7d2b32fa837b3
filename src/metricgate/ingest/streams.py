"""Redis streams as the write-ahead buffer: keys, append, consumer-group reads, acks, trimming.

Layout per shard ``s`` (the braces are Redis Cluster hash tags: one shard's keys share a slot):
  mg:ingest:{s}    stream of entries (one per acknowledged request), consumer group ``flushers``
  mg:lastid:{s}    hash run_id -> id of that run's newest entry not yet known to be flushed
  mg:lastwrite:{s} hash run_id -> ms of the run's last acknowledged metric write (abandoned runs)
The hash is what makes read-your-writes cheap: a read of a run with no field here has nothing
in flight and costs one HGET.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import NoScriptError, RedisError, ResponseError
from redis.typing import EncodableT, FieldT

from metricgate.ingest.group_append import GroupAppender

GROUP = b"flushers"
_GROUP_NAME = GROUP.decode()  # XREADGROUP's group as redis-py types it
DEAD_LETTER_STREAM = b"mg:ingest:dead"

# XADD and the run's last-id watermark in one atomic step: a reader can never see the entry
# without the watermark or the reverse.
_APPEND_LUA = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
redis.call('HSET', KEYS[2], ARGV[1], id)
redis.call('HSET', KEYS[3], ARGV[1], string.match(id, '^(%d+)'))
return id
"""

# After a flush: drop a run's watermark only if it still names the entry just flushed (a newer
# append may have replaced it meanwhile) and no older entry of the shard is still pending (held
# by a dead or slower flusher: that one may belong to the same run). Otherwise the watermark
# stays, and readers keep checking is_flushed, which looks at every pending entry.
_FORGET_LUA = """
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    local older = redis.call('XPENDING', KEYS[2], 'flushers', '-', ARGV[i + 1], 1)
    if #older == 0 then
      redis.call('HDEL', KEYS[1], ARGV[i]); n = n + 1
    end
  end
end
return n
"""


def stream_key(shard: int) -> bytes:
    return f"mg:ingest:{{{shard}}}".encode()


def lastid_key(shard: int) -> bytes:
    return f"mg:lastid:{{{shard}}}".encode()


def lastwrite_key(shard: int) -> bytes:
    return f"mg:lastwrite:{{{shard}}}".encode()


def shard_of(run_id: str, shards: int) -> int:
    # crc32 is stable across processes and versions (hash() is salted per process).
    return zlib.crc32(run_id.encode()) % shards


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def _id_text(entry_id: bytes | str) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def next_id(entry_id: bytes | str) -> str:
    ms, seq = parse_id(entry_id)
    return f"{ms}-{seq + 1}"


@dataclass(frozen=True, slots=True)
class ShardStatus:
    """One stream's state for the operators' view (``/metrics``, the ingest page)."""

    shard: int
    entries: int  # XLEN: un-flushed entries plus flushed ones not yet trimmed
    pending: (
        int  # delivered to a flusher, not yet acknowledged (being written, or its flusher died)
    )
    undelivered: int | None  # not yet read by any flusher (None: Redis < 7 cannot tell)
    oldest_unflushed_ms: int | None  # acknowledgement time of the oldest entry not yet flushed


@dataclass(frozen=True, slots=True)
class Entry:
    stream: bytes
    entry_id: bytes
    fields: dict[bytes, bytes]


class IngestStreams:
    """All Redis operations of the ingest path; one instance per process."""

    def __init__(self, client: aioredis.Redis, shards: int) -> None:
        self.client = client
        self.shards = shards
        self.streams = [stream_key(s) for s in range(shards)]
        self._append = client.register_script(_APPEND_LUA)
        self._forget = client.register_script(_FORGET_LUA)
        self._appender = GroupAppender(lambda: client.pipeline(transaction=False))

    async def aclose(self) -> None:
        await self._appender.aclose()

    async def ensure_groups(self) -> None:
        """Create each stream's consumer group (from id 0: entries added before it count too)."""
        for stream in self.streams:
            try:
                await self.client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    # ------------------------------------------------------------------ gateway side

    async def append(self, run_id: str, fields: dict[bytes, bytes]) -> bytes:
        shard = shard_of(run_id, self.shards)
        args: list[bytes | str] = [run_id]
        for name, value in fields.items():
            args.extend((name, value))
        keys = [self.streams[shard], lastid_key(shard), lastwrite_key(shard)]

        def append_to(pipe: Pipeline) -> None:
            pipe.evalsha(self._append.sha, 3, *keys, *args)

        try:
            entry_id = await self._appender.submit(append_to)
        except NoScriptError:
            # A restarted (or failed-over) Redis forgot the script: load it and try once more.
            await self.client.script_load(_APPEND_LUA)
            entry_id = await self._appender.submit(append_to)
        return entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()

    async def backlog_entries(self) -> int:
        """Entries not yet trimmed, across shards: un-flushed ones plus at most one trim interval
        of flushed ones. Cheap (XLEN is O(1)), so gateways can poll it."""
        async with self.client.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xlen(stream)
            lengths = await pipe.execute()
        return int(sum(lengths))

    async def shard_status(self) -> list[ShardStatus]:
        """Per shard: length, pending and undelivered entries, and the oldest un-flushed entry
        (its id is its acknowledgement time, which makes the flush lag). A handful of O(1)/O(log)
        calls per shard; meant for a status view refreshed every few seconds, not per request."""
        statuses = []
        for shard, stream in enumerate(self.streams):
            length = int(await self.client.xlen(stream))
            groups = await self.client.xinfo_groups(stream)
            group = next((g for g in groups if g["name"] == GROUP), None)
            if group is None:
                first = await self.client.xrange(stream, count=1)
                # An XRANGE id is never None; redis-py types it as XAUTOCLAIM's, which can be.
                first_id = first[0][0] if first else None
                oldest_ms = parse_id(first_id)[0] if first_id is not None else None
                statuses.append(ShardStatus(shard, length, 0, length, oldest_ms))
                continue
            summary = await self.client.xpending(stream, GROUP)
            oldest: bytes | str | None = summary["min"] if summary["pending"] else None
            # Entries past the last delivered id wait for a flusher; the first is the oldest.
            first_new = await self.client.xrange(
                stream, min="(" + _id_text(group["last-delivered-id"]), count=1
            )
            if oldest is None and first_new:
                oldest = first_new[0][0]
            # Redis 7 counts undelivered entries ("lag"); 6.2 does not (None: unknown).
            lag = group.get("lag")
            undelivered = 0 if not first_new else (int(lag) if lag is not None else None)
            oldest_ms = parse_id(oldest)[0] if oldest is not None else None
            statuses.append(
                ShardStatus(shard, length, int(summary["pending"]), undelivered, oldest_ms)
            )
        return statuses

    async def dead_letter_entries(self) -> int:
        return int(await self.client.xlen(DEAD_LETTER_STREAM))

    async def pending_id_of_run(self, run_id: str) -> tuple[int, bytes | None]:
        """(shard, id of the run's newest entry not yet known to be flushed, or None)."""
        return (await self.pending_ids_of_runs((run_id,)))[0]

    async def pending_ids_of_runs(self, run_ids: Sequence[str]) -> list[tuple[int, bytes | None]]:
        """``pending_id_of_run`` of many runs in one round trip."""
        shards = [shard_of(run_id, self.shards) for run_id in run_ids]
        async with self.client.pipeline(transaction=False) as pipe:
            for run_id, shard in zip(run_ids, shards, strict=True):
                pipe.hget(lastid_key(shard), run_id)
            ids = await pipe.execute()
        return list(zip(shards, ids, strict=True))

    async def is_flushed(self, shard: int, entry_id: bytes) -> bool:
        """True once ``entry_id`` of the shard was delivered and acknowledged (so committed)."""
        stream = self.streams[shard]
        groups = await self.client.xinfo_groups(stream)
        group = next((g for g in groups if g["name"] == GROUP), None)
        if group is None:
            return False
        if parse_id(group["last-delivered-id"]) < parse_id(entry_id):
            return False
        pending = await self.client.xpending_range(stream, GROUP, min="-", max=entry_id, count=1)
        return not pending

    async def last_ids(self) -> list[bytes | None]:
        """Newest entry id of every shard (None for an empty stream): a read that must see
        every write acknowledged before it waits until these are flushed."""
        async with self.client.pipeline(transaction=False) as pipe:
            for stream in self.streams:
                pipe.xrevrange(stream, count=1)
            results = await pipe.execute()
        return [r[0][0] if r else None for r in results]

    async def last_writes_ms(self, run_ids: list[str]) -> dict[str, int]:
        """When each run last had metrics acknowledged (runs never seen are absent)."""
        async with self.client.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hget(lastwrite_key(shard_of(run_id, self.shards)), run_id)
            values = await pipe.execute()
        return {run_id: int(v) for run_id, v in zip(run_ids, values, strict=True) if v is not None}

    async def forget_runs(self, run_ids: list[str]) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for run_id in run_ids:
                pipe.hdel(lastwrite_key(shard_of(run_id, self.shards)), run_id)
            await pipe.execute()

    # ------------------------------------------------------------------ flusher side

    async def read(
        self, consumer: str, count: int, block_ms: int | None, own_pending: bool = False
    ) -> list[Entry]:
        """New entries (``>``) or, for recovery, this consumer's own unacknowledged ones (``0``)."""
        start = b"0" if own_pending else b">"
        reply = await self.client.xreadgroup(
            _GROUP_NAME, consumer, {s: start for s in self.streams}, count=count, block=block_ms
        )
        # The RESP2 reply is a list; redis-py's type also allows RESP3's dict, never used here.
        return _entries(cast("list[Any] | None", reply))

    async def claim_orphans(self, consumer: str, min_idle_ms: int, count: int) -> list[Entry]:
        """Take over entries another (presumably dead) consumer has held for ``min_idle_ms``."""
        claimed: list[Entry] = []
        for stream in self.streams:
            reply = await self.client.xautoclaim(
                stream, GROUP, consumer, min_idle_ms, start_id="0-0", count=count
            )
            # Redis 6.2 answers [next, entries]; 7.x adds a list of deleted ids.
            for entry_id, fields in reply[1]:
                if fields is not None:  # None: trimmed while pending (already flushed)
                    claimed.append(Entry(stream, entry_id, fields))
        return claimed

    async def ack(self, entries: Sequence[Entry]) -> None:
        by_stream: dict[bytes, list[bytes]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry.entry_id)
        async with self.client.pipeline(transaction=False) as pipe:
            for stream, ids in by_stream.items():
                pipe.xack(stream, GROUP, *ids)
            await pipe.execute()

    async def forget_flushed(self, flushed: Iterable[tuple[str, bytes]]) -> None:
        """Drop run watermarks whose newest entry is now flushed."""
        by_shard: dict[int, list[bytes | str]] = {}
        for run_id, entry_id in flushed:
            by_shard.setdefault(shard_of(run_id, self.shards), []).extend((run_id, entry_id))
        for shard, args in by_shard.items():
            await self._forget(keys=[lastid_key(shard), self.streams[shard]], args=args)

    async def trim(self) -> None:
        """Delete entries every consumer is done with: below the oldest pending entry and never
        past the group's last delivered one (undelivered entries are still needed)."""
        for stream in self.streams:
            groups = await self.client.xinfo_groups(stream)
            group = next((g for g in groups if g["name"] == GROUP), None)
            if group is None:
                continue
            summary = await self.client.xpending(stream, GROUP)
            if summary["pending"]:
                min_id = summary["min"]
            else:
                min_id = next_id(group["last-delivered-id"])
            await self.client.xtrim(stream, minid=min_id, approximate=False)

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        """Park an entry no flush can ever apply, with the reason, instead of looping on it."""
        # Through items(): a dict's key type is invariant, and xadd types its keys wider.
        fields: dict[FieldT, EncodableT] = dict(entry.fields.items())
        fields[b"_stream"] = entry.stream
        fields[b"_id"] = entry.entry_id
        fields[b"_reason"] = reason.encode()[:1000]
        await self.client.xadd(DEAD_LETTER_STREAM, fields)


def _entries(reply: list[Any] | None) -> list[Entry]:
    """RESP2 XREADGROUP reply: [[stream, [[id, fields], ...]], ...]."""
    entries: list[Entry] = []
    for stream, messages in reply or []:
        for entry_id, fields in messages:
            if fields is not None:  # a pending entry that was trimmed meanwhile
                entries.append(Entry(stream, entry_id, fields))
    return entries


__all__ = ["Entry", "IngestStreams", "RedisError", "ShardStatus", "shard_of", "stream_key"]
