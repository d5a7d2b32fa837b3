"""The failed-login limiter (auth/limiter.py) against a real Redis: limits per address and per
username shared by every process, Retry-After from the key's TTL, a success clearing the user's
key, and the in-process fallback when Redis cannot be reached."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from tests.fake_clock import FakeClock

from metricgate.auth.limiter import LoginLimiter, address_key, user_key
from metricgate.config import AuthSettings
from scripts import devservices


async def stored_count(redis: aioredis.Redis, key: bytes) -> int:
    value = await redis.get(key)
    assert value is not None
    return int(value)


def settings(address: int = 5, user: int = 3) -> AuthSettings:
    return AuthSettings(
        login_limit_per_address=address,
        login_address_window_s=60,
        login_limit_per_user=user,
        login_user_window_s=900,
    )


async def test_per_address_limit_counts_every_name(redis: aioredis.Redis) -> None:
    limiter = LoginLimiter(redis, settings(address=5, user=100))
    for i in range(5):
        assert await limiter.check("198.51.100.1", f"user{i}") is None
        await limiter.failed("198.51.100.1", f"user{i}")  # unknown names count too
    assert await stored_count(redis, address_key("198.51.100.1")) == 5
    wait = await limiter.check("198.51.100.1", "another")
    assert wait is not None and 58 < wait <= 60
    assert await limiter.check("198.51.100.1", None) == pytest.approx(wait, abs=1)
    assert await limiter.check("198.51.100.2", "another") is None


async def test_per_user_limit_from_any_address_in_every_process(redis: aioredis.Redis) -> None:
    one, two = LoginLimiter(redis, settings()), LoginLimiter(redis, settings())
    for i in range(3):
        await one.failed(f"203.0.113.{i}", "alice")
    wait = await two.check("203.0.113.99", "alice")  # another process, another address
    assert wait is not None and 898 < wait <= 900
    assert await two.check("203.0.113.99", "bob") is None
    assert await two.check("203.0.113.99", None) is None


async def test_retry_after_is_the_keys_ttl_and_the_window_does_not_slide(
    redis: aioredis.Redis,
) -> None:
    limiter = LoginLimiter(redis, settings())
    for _ in range(3):
        await limiter.failed("192.0.2.1", "carol")
    assert 898_000 < await redis.pttl(user_key("carol")) <= 900_000
    await redis.pexpire(user_key("carol"), 5_000)
    wait = await limiter.check("192.0.2.2", "carol")
    assert wait is not None and 4 < wait <= 5
    await limiter.failed("192.0.2.2", "carol")  # more failures leave the window's end alone
    assert await redis.pttl(user_key("carol")) <= 5_000
    await redis.pexpire(user_key("carol"), 1)
    await asyncio.sleep(0.01)
    assert await limiter.check("192.0.2.2", "carol") is None  # the window closed
    await limiter.failed("192.0.2.2", "carol")
    assert await stored_count(redis, user_key("carol")) == 1
    assert 898_000 < await redis.pttl(user_key("carol")) <= 900_000


async def test_success_clears_the_user_key_in_every_process(redis: aioredis.Redis) -> None:
    one, two = LoginLimiter(redis, settings()), LoginLimiter(redis, settings())
    for _ in range(3):
        await one.failed("192.0.2.1", "dave")
    assert await two.check("192.0.2.9", "dave") is not None
    await two.succeeded("dave")  # two saw dave's count in its check
    assert await redis.exists(user_key("dave")) == 0
    assert await one.check("192.0.2.9", "dave") is None
    assert await redis.exists(address_key("192.0.2.1")) == 1  # the address's count stays
    await one.failed("192.0.2.1", "dave")
    await one.succeeded("dave")  # one counted that failure itself
    assert await redis.exists(user_key("dave")) == 0


async def test_success_without_failures_costs_no_redis_write(redis: aioredis.Redis) -> None:
    limiter = LoginLimiter(redis, settings())
    await redis.set(user_key("erin"), 2)  # written behind the limiter's back after its check
    assert await limiter.check("192.0.2.1", "frank") is None
    await limiter.succeeded("frank")
    await limiter.succeeded("erin")  # never seen failing here: left alone (it expires)
    assert await redis.exists(user_key("erin")) == 1


async def refused(port: int) -> None:
    """Nothing answers on ``port`` (asked once, without the client's retries)."""
    probe = aioredis.Redis(host="127.0.0.1", port=port, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(RedisConnectionError):
            await probe.ping()
    finally:
        await probe.aclose()


@pytest.fixture
async def unreachable_redis() -> AsyncIterator[aioredis.Redis]:
    port = devservices.find_free_port()
    await refused(port)
    client = aioredis.Redis(host="127.0.0.1", port=port)  # the default retries, as service.py's
    try:
        yield client
    finally:
        await client.aclose()


async def test_redis_away_limits_in_process_and_logs_once(
    unreachable_redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    limiter = LoginLimiter(unreachable_redis, settings(), clock=clock, redis_timeout_s=0.2)
    with caplog.at_level(logging.INFO, logger="metricgate.auth.limiter"):
        for i in range(3):
            clock.t += 2  # past the retry interval: each call probes Redis again
            started = time.monotonic()
            assert await limiter.check(f"192.0.2.{i}", "grace") is None
            assert time.monotonic() - started < 1  # bounded, whatever the client's retries
            await limiter.failed(f"192.0.2.{i}", "grace")
        assert (
            await limiter.check("192.0.2.77", "grace") == 1002 + 900 - 1006
        )  # the first failure at 1002
        await limiter.succeeded("grace")
        assert await limiter.check("192.0.2.77", "grace") is None
        for _ in range(5):
            await limiter.failed("192.0.2.5", None)
        assert await limiter.check("192.0.2.5", "heidi") == 60
    records = [r for r in caplog.records if r.name == "metricgate.auth.limiter"]
    assert [r.levelno for r in records] == [logging.WARNING]
    assert "Redis (failed-login counts" in records[0].getMessage()


class Forwarder:
    """A TCP port in front of the real Redis that can be closed and opened again: Redis
    "stopping" for one client without stopping the server the other tests share."""

    def __init__(self, redis_url: str) -> None:
        client = aioredis.Redis.from_url(redis_url)
        kwargs = client.connection_pool.connection_kwargs
        self.target = (str(kwargs.get("host", "127.0.0.1")), int(kwargs.get("port", 6379)))
        self.db = int(kwargs.get("db", 0))
        self.port = devservices.find_free_port()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_redis_stops_and_comes_back(
    redis: aioredis.Redis, redis_client_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each process counts alongside Redis, so an outage starts from its counts, not from 0;
    once Redis answers again it is the shared count that decides, and the outage is over."""
    forwarder = Forwarder(redis_client_url)
    await forwarder.start()
    client = aioredis.Redis(host="127.0.0.1", port=forwarder.port, db=forwarder.db)
    clock = FakeClock()
    # Not tighter: on a loaded machine (the suite runs test modules in parallel) a healthy Redis
    # round trip through the forwarder has taken over 0.2 s and counted as an outage.
    limiter = LoginLimiter(client, settings(), clock=clock, redis_timeout_s=1.0)
    try:
        with caplog.at_level(logging.INFO, logger="metricgate.auth.limiter"):
            for _ in range(3):
                await limiter.failed("192.0.2.1", "ivan")
            assert await stored_count(redis, user_key("ivan")) == 3  # through the forwarder
            await forwarder.stop()
            await refused(forwarder.port)
            assert await limiter.check("192.0.2.9", "ivan") == 900
            await redis.delete(user_key("ivan"))  # (an admin's reset, say) while away
            await forwarder.start()
            clock.t += 2
            assert await limiter.check("192.0.2.9", "ivan") is None  # Redis decides again
        levels = [r.levelno for r in caplog.records if r.name == "metricgate.auth.limiter"]
        assert levels == [logging.WARNING, logging.INFO]
    finally:
        await client.aclose()
        await forwarder.stop()


async def test_the_failure_that_fills_a_window_reports_the_lockout_once(
    redis: aioredis.Redis,
) -> None:
    one, two = (LoginLimiter(redis, settings(address=100, user=3)) for _ in range(2))
    reported = []
    for i in range(6):  # two processes, one count: only the third failure locks alice
        limiter = one if i % 2 else two
        reported.append(await limiter.failed(f"198.51.100.{i}", "alice"))
    assert [len(r) for r in reported] == [0, 0, 1, 0, 0, 0]
    [lockout] = reported[2]
    assert (lockout.scope, lockout.failures) == ("user", 3) and 899 < lockout.retry_after_s <= 900


async def test_without_redis_each_process_reports_its_own_lockout(
    unreachable_redis: aioredis.Redis,
) -> None:
    limiter = LoginLimiter(unreachable_redis, settings(address=2, user=100), redis_timeout_s=0.1)
    assert await limiter.failed("198.51.100.9", "carl") == []
    [lockout] = await limiter.failed("198.51.100.9", "dina")
    assert (lockout.scope, lockout.failures) == ("address", 2)
    assert 59 < lockout.retry_after_s <= 60
    assert await limiter.failed("198.51.100.9", "erik") == []  # past the limit: no new lockout
