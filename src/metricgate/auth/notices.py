"""Access changes told to every process over Redis pub/sub (docs/design-auth.md B3).

The process that commits a change to credentials, grants or one user's grants publishes a
notice on ``mg:auth:changed``: ``{"kind": "credentials"|"grants"|"user_grants", "user": <id or
null>, "from": <this process's random id>}``, never a secret. Every process subscribes and
drops the cache entries the notice names (``Authenticator.notice``), its own notices excepted
(it dropped them when it committed), so a change reaches the other processes in milliseconds
instead of at their next epoch poll.

Pub/sub delivers at most once, and Redis may be away: the epoch poll (once a second) and the
authenticator's re-reads stay the fallback, so nothing here may fail or hold up a request. A
publish runs beside the request that committed the change, bounded by ``PUBLISH_TIMEOUT_S``. The
subscription reconnects with a doubling wait, pings the server when it has heard nothing for a
while (a connection that stops answering is replaced), and logs an outage once when it starts
and once when it ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from metricgate.auth.authenticator import AuthChange, Authenticator
from metricgate.health_log import OutageLog
from metricgate.lifecycle import sleep_unless_set

log = logging.getLogger(__name__)

CHANNEL = "mg:auth:changed"
PUBLISH_TIMEOUT_S = 1.0  # a notice not sent by then is left to the epoch poll
PING_S = 10.0  # silence after which the subscription pings; twice that unanswered: reconnect
RETRY_MIN_S = 0.5  # the first wait before subscribing again; doubles up to RETRY_MAX_S
RETRY_MAX_S = 30.0
CONNECT_TIMEOUT_S = 5.0


def encode_notice(change: AuthChange, user_id: int | None, origin: str) -> bytes:
    return json.dumps({"kind": change.value, "user": user_id, "from": origin}).encode()


def decode_notice(data: bytes | str) -> tuple[AuthChange, int | None, str] | None:
    """The notice's (change, user id, origin); None for anything malformed (ignored)."""
    try:
        body = json.loads(data)
        change = AuthChange(body["kind"])
        user_id = body.get("user")
        origin = body.get("from")
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    if user_id is not None and (isinstance(user_id, bool) or not isinstance(user_id, int)):
        return None
    if change is AuthChange.USER_GRANTS and user_id is None:
        return None
    return change, user_id, origin if isinstance(origin, str) else ""


class AuthNotices:
    """Publishes this process's access changes and, run as a background worker, applies the
    other processes'. ``publisher`` is the process's shared Redis client; the subscription
    holds a connection of its own (to ``url``), so it takes none from the shared pool."""

    def __init__(
        self,
        authenticator: Authenticator,
        publisher: aioredis.Redis,
        url: str,
        *,
        ping_s: float = PING_S,
        retry_min_s: float = RETRY_MIN_S,
        retry_max_s: float = RETRY_MAX_S,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._authenticator = authenticator
        self._publisher = publisher
        self._url = url
        self._ping_s = ping_s
        self._retry_min_s = retry_min_s
        self._retry_max_s = retry_max_s
        self._publish_timeout_s = publish_timeout_s
        self._clock = clock
        self.origin = secrets.token_hex(8)
        self._stopping = asyncio.Event()
        self._outage = OutageLog(log, "Redis (access-change notices; the epoch poll stands in)")
        self._publishing: set[asyncio.Task[None]] = set()
        self.subscribed = asyncio.Event()  # set while the subscription is up (tests wait on it)
        authenticator.announce_with(self.publish)

    # ------------------------------------------------------------------ publishing

    def publish(self, change: AuthChange, user_id: int | None) -> None:
        """Send a notice beside the caller, which does not wait for it."""
        task = asyncio.get_running_loop().create_task(self._publish(change, user_id))
        self._publishing.add(task)
        task.add_done_callback(self._publishing.discard)

    async def _publish(self, change: AuthChange, user_id: int | None) -> None:
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                await self._publisher.publish(CHANNEL, encode_notice(change, user_id, self.origin))
        except (RedisError, OSError, TimeoutError) as exc:
            self._failed(exc, f"no answer within {self._publish_timeout_s:g} s")
        else:
            self._outage.ok()

    # ------------------------------------------------------------------ subscribing

    async def run(self) -> None:
        delay_s = self._retry_min_s
        while not self._stopping.is_set():
            client = aioredis.Redis.from_url(
                self._url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=CONNECT_TIMEOUT_S,
                socket_keepalive=True,
                retry=Retry(NoBackoff(), 0),  # this loop retries, with its own backoff
            )
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                self._outage.ok()
                self.subscribed.set()
                delay_s = self._retry_min_s
                await self._listen(pubsub)
            except (RedisError, OSError, TimeoutError) as exc:
                self._failed(exc, "it stopped answering")
            finally:
                self.subscribed.clear()
                await _close_quietly(pubsub, client)
            if await sleep_unless_set(self._stopping, delay_s):
                break
            delay_s = min(delay_s * 2, self._retry_max_s)
        if self._publishing:  # the notices of the last changes, each bounded by its timeout
            await asyncio.wait(self._publishing, timeout=self._publish_timeout_s)

    async def _listen(self, pubsub: Any) -> None:
        heard = self._clock()
        pinged: float | None = None
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                # A stop request ends the wait at once (the connection is closed next anyway).
                reading = asyncio.ensure_future(pubsub.get_message(timeout=self._ping_s))
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    reading.cancel()
                    await asyncio.wait({reading})
                    return
                heard, pinged = await self._heard(pubsub, reading.result(), heard, pinged)
        finally:
            stopping.cancel()

    async def _heard(
        self, pubsub: Any, message: Any, heard: float, pinged: float | None
    ) -> tuple[float, float | None]:
        """Apply a message; ping after a silence, and give up on a connection whose ping is
        not answered: (when last heard, when pinged and not yet answered)."""
        now = self._clock()
        if message is not None:
            if message.get("type") == "message":
                self._apply(message.get("data", b""))
            return now, None
        if pinged is not None:
            if now - pinged > self._ping_s:
                raise TimeoutError(f"no answer to PING within {self._ping_s:g} s")
            return heard, pinged
        if now - heard >= self._ping_s:
            await pubsub.ping()
            return heard, now
        return heard, pinged

    def _apply(self, data: bytes | str) -> None:
        notice = decode_notice(data)
        if notice is None:
            log.debug("ignored a malformed notice on %s", CHANNEL)
            return
        change, user_id, origin = notice
        if origin != self.origin:
            self._authenticator.notice(change, user_id)

    def stop(self) -> None:
        self._stopping.set()
        self._authenticator.announce_with(None)

    def _failed(self, exc: BaseException, silent: str) -> None:
        self._outage.failed(exc if str(exc) else silent)


async def _close_quietly(pubsub: Any, client: aioredis.Redis) -> None:
    """Close the subscription's connection, giving up after a moment (Redis may be frozen)."""
    try:
        async with asyncio.timeout(1.0):
            await pubsub.aclose()
            await client.aclose()
    except (RedisError, OSError, TimeoutError):
        pass
