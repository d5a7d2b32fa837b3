"""Failed-login limits per client address and per username (docs/design-auth.md B7).

Counted in Redis, so every process of a deployment sees the same counts:
  mg:authfail:addr:<address>   failures from one client address (default 30 a minute)
  mg:authfail:user:<username>  failures against one username, known or not (10 in 15 minutes),
                               so a refusal tells nothing about which names exist
A key's window opens at its first failure (INCR, and EXPIRE when the key has no TTL yet: what
``EXPIRE NX`` does, written so that Redis 6.2 runs it too); once a key holds its limit, attempts
are refused, before any password is hashed, for the key's remaining TTL (``Retry-After``). A
successful login clears its username's count.

Each process also counts its own failures in memory (``FailureWindows``, bounded), and that
count is what it goes by while Redis is away: the outage is logged once, Redis is tried again
by one request a second (the others go by the memory count meanwhile), and logins stay
limited, per process instead of per deployment.

``failed`` says which keys that failure locked (``Lockout``): the one whose count reached the
limit, which with Redis is exactly one failure per key and window in the whole deployment
(INCR is atomic), and without it one per process. The login step audits that moment once
(``login.locked``) instead of every refused attempt after it (docs/design-auth.md B7).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from metricgate.config import AuthSettings
from metricgate.domain.auth.failure_windows import DEFAULT_MAX_KEYS, FailureWindows, Limit
from metricgate.domain.lru import Lru
from metricgate.health_log import OutageLog

log = logging.getLogger(__name__)

ADDRESS_KEY_PREFIX = "mg:authfail:addr:"
USER_KEY_PREFIX = "mg:authfail:user:"
REDIS_RETRY_S = 1.0  # while Redis is away, one request per process tries it this often
# A login waits at most this long for Redis before the in-process count answers (the shared
# client retries refused connections with backoff for seconds; a login should not).
REDIS_TIMEOUT_S = 1.0
SUSPECTS = 10_000  # usernames this process saw failures for (a success must clear them)

# Per key (ARGV: its window in seconds): the count after this failure and the window's
# remaining milliseconds.
_FAILED_LUA = """
local out = {}
for i = 1, #KEYS do
  out[2 * i - 1] = redis.call('INCR', KEYS[i])
  if redis.call('TTL', KEYS[i]) < 0 then
    redis.call('EXPIRE', KEYS[i], ARGV[i])
  end
  out[2 * i] = redis.call('PTTL', KEYS[i])
end
return out
"""

# Per key: its count and its remaining milliseconds (PTTL: -2 when absent), read at one instant.
_CHECK_LUA = """
local out = {}
for i = 1, #KEYS do
  out[2 * i - 1] = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
  out[2 * i] = redis.call('PTTL', KEYS[i])
end
return out
"""


@dataclass(frozen=True, slots=True)
class Lockout:
    """A failure filled a window: ``scope`` ("address" or "user") is refused from now on for
    ``retry_after_s``, after ``failures`` failures."""

    scope: str
    failures: int
    retry_after_s: float


def address_key(address: str) -> bytes:
    return (ADDRESS_KEY_PREFIX + address).encode("utf-8")


def user_key(username: str) -> bytes:
    return (USER_KEY_PREFIX + username).encode("utf-8")


class LoginLimiter:
    """One per process. ``username`` is None where the credential names none (a Bearer token):
    then only the address counts. Not thread-safe: one event loop owns it."""

    def __init__(
        self,
        redis: aioredis.Redis | None,
        settings: AuthSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
        redis_retry_s: float = REDIS_RETRY_S,
        redis_timeout_s: float = REDIS_TIMEOUT_S,
    ) -> None:
        self._redis = redis
        self._address_limit = Limit(
            settings.login_limit_per_address, settings.login_address_window_s
        )
        self._user_limit = Limit(settings.login_limit_per_user, settings.login_user_window_s)
        self._addresses = FailureWindows(self._address_limit, max_keys)
        self._users = FailureWindows(self._user_limit, max_keys)
        # Usernames with a count somewhere: only their successes cost a Redis DEL.
        self._suspects: Lru[str, bool] = Lru(SUSPECTS)
        self._clock = clock
        self._redis_retry_s = redis_retry_s
        self._redis_timeout_s = redis_timeout_s
        self._redis_skip_until = -float("inf")
        self._outage = OutageLog(log, "Redis (failed-login counts; each process counts its own)")
        if redis is not None:
            self._failed_script = redis.register_script(_FAILED_LUA)
            self._check_script = redis.register_script(_CHECK_LUA)

    async def check(self, address: str, username: str | None) -> float | None:
        """Seconds to wait before this address or username may try to log in again (the longer
        of the two when both are over); None when it may try now."""
        keys, limits = self._keys(address, username)
        if not keys:
            return None
        if self._redis_usable():
            try:
                async with asyncio.timeout(self._redis_timeout_s):
                    reply = await self._check_script(keys=keys)
            except (RedisError, TimeoutError) as exc:
                self._redis_failed(exc)
            else:
                self._outage.ok()
                return self._wait_from(reply, keys, limits, username)
        return self._local_wait(address, username)

    async def failed(self, address: str, username: str | None) -> list[Lockout]:
        """Count one failed login (wrong password, unknown user or token, malformed header);
        the lockouts this very failure started (none while under the limits, and none for a
        failure past them: only the one that reached a limit)."""
        now = self._clock()
        scopes: list[tuple[str, FailureWindows, str]] = []
        if self._address_limit.enabled:
            scopes.append(("address", self._addresses, address))
        if username is not None and self._user_limit.enabled:
            scopes.append(("user", self._users, username))
            self._suspects.put(username, True)
        # Per key, in _keys' order: (scope, count, seconds left in its window). Counted in
        # memory always (what goes while Redis is away), in Redis when it answers.
        counted = [
            (scope, windows.fail(key, now), windows.wait_s(key, now) or 0.0)
            for scope, windows, key in scopes
        ]
        keys, limits = self._keys(address, username)
        if keys and self._redis_usable():
            try:
                async with asyncio.timeout(self._redis_timeout_s):
                    windows_s = [int(limit.window_s) for limit in limits]
                    reply = await self._failed_script(keys=keys, args=windows_s)
            except (RedisError, TimeoutError) as exc:
                self._redis_failed(exc)
            else:
                self._outage.ok()
                counted = [
                    (scope, int(reply[2 * i]), max(0, int(reply[2 * i + 1])) / 1000)
                    for i, (scope, _, _) in enumerate(counted)
                ]
        return [
            Lockout(scope, count, remaining)
            for (scope, count, remaining), limit in zip(counted, limits, strict=True)
            if count == limit.failures
        ]

    async def succeeded(self, username: str) -> None:
        """A login with ``username`` succeeded: its count starts again. Costs a Redis call only
        for a username this process has seen failures for."""
        self._users.clear(username)
        if self._suspects.get(username) is None:
            return
        if self._redis is None:
            self._suspects.pop(username)
            return
        if not self._redis_usable():
            return  # still a suspect: the next success after Redis is back clears it there
        try:
            async with asyncio.timeout(self._redis_timeout_s):
                await self._redis.delete(user_key(username))
        except (RedisError, TimeoutError) as exc:
            self._redis_failed(exc)
        else:
            self._outage.ok()
            self._suspects.pop(username)

    # ------------------------------------------------------------------ internals

    def _keys(self, address: str, username: str | None) -> tuple[list[bytes], list[Limit]]:
        keys, limits = [], []
        if self._address_limit.enabled:
            keys.append(address_key(address))
            limits.append(self._address_limit)
        if username is not None and self._user_limit.enabled:
            keys.append(user_key(username))
            limits.append(self._user_limit)
        return keys, limits

    def _redis_usable(self) -> bool:
        if self._redis is None:
            return False
        if not self._outage.down:
            return True
        now = self._clock()
        if now < self._redis_skip_until:
            return False
        # This request probes; the ones arriving while it waits go by the memory count.
        self._redis_skip_until = now + self._redis_retry_s
        return True

    def _redis_failed(self, exc: BaseException) -> None:
        self._outage.failed(exc if str(exc) else f"no answer within {self._redis_timeout_s:g} s")
        self._redis_skip_until = self._clock() + self._redis_retry_s

    def _wait_from(
        self,
        reply: Sequence[int],
        keys: Sequence[bytes],
        limits: Sequence[Limit],
        username: str | None,
    ) -> float | None:
        wait: float | None = None
        for i, (key, limit) in enumerate(zip(keys, limits, strict=True)):
            count, pttl_ms = int(reply[2 * i]), int(reply[2 * i + 1])
            if username is not None and count > 0 and key.startswith(USER_KEY_PREFIX.encode()):
                self._suspects.put(username, True)
            if count < limit.failures or pttl_ms == -2:
                continue
            # -1 (no TTL) cannot come from _FAILED_LUA; should one appear, a full window.
            seconds = limit.window_s if pttl_ms < 0 else pttl_ms / 1000
            wait = seconds if wait is None else max(wait, seconds)
        return wait

    def _local_wait(self, address: str, username: str | None) -> float | None:
        now = self._clock()
        waits = [self._addresses.wait_s(address, now)]
        if username is not None:
            waits.append(self._users.wait_s(username, now))
        found = [w for w in waits if w is not None]
        return max(found) if found else None
