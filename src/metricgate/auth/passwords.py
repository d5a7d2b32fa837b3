"""Password hashing with argon2id (argon2-cffi's default ``PasswordHasher``; docs/design-auth.md B3).

The KDF costs tens to hundreds of milliseconds of CPU and 64 MiB per call by design, so it never
runs on the event loop: a pool of two threads does it, and past 64 calls waiting for a thread
the caller gets 503 + ``Retry-After`` instead of a queue that grows without bound (a burst of
logins must not take every request's latency with it). A user who does not exist is verified
against a dummy hash all the same, so the answer's timing does not say who exists.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from metricgate.domain.errors import Unavailable

T = TypeVar("T")

KDF_THREADS = 2
MAX_WAITING = 64


class Passwords:
    """Hash and verify passwords off the event loop, bounded. ``hasher`` is for tests (cheaper
    parameters); production uses argon2-cffi's defaults, which follow RFC 9106's advice."""

    def __init__(
        self,
        hasher: argon2.PasswordHasher | None = None,
        *,
        threads: int = KDF_THREADS,
        max_waiting: int = MAX_WAITING,
    ) -> None:
        self._hasher = hasher or argon2.PasswordHasher()
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="metricgate-kdf")
        self._limit = threads + max_waiting  # running + waiting
        self._pending = 0
        self._lock = threading.Lock()  # the count drops on the pool's threads
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; a None hash (no such user, or no password set) costs
        one verification all the same and is False. A hash argon2 cannot read is False."""
        if password_hash is None:
            await self._run(self._verify_dummy, password)
            return False
        return await self._run(self._verify, password_hash, password)

    def needs_rehash(self, password_hash: str) -> bool:
        """True when the hash was made with other parameters than today's, or is not argon2id
        (an imported hash): it should be replaced at the next good login."""
        try:
            return self._hasher.check_needs_rehash(password_hash)
        except InvalidHashError:
            return True

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ on the pool's threads

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            # VerifyMismatchError is a VerificationError.
            return False

    def _verify_dummy(self, password: str) -> bool:
        # Made with the live parameters (so it costs what a real one does), once per process.
        if self._dummy_hash is None:
            self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(24))
        self._verify(self._dummy_hash, password)
        return False

    # ------------------------------------------------------------------ the bound

    async def _run(self, fn: Callable[..., T], *args: str) -> T:
        with self._lock:
            if self._pending >= self._limit:
                raise Unavailable("Too many password verifications in progress; retry shortly")
            self._pending += 1
        try:
            future: Future[T] = self._pool.submit(fn, *args)
        except BaseException:
            self._release()
            raise
        # The count drops when the thread is done (or the job is cancelled before it ran), not
        # when the awaiting request gives up: an abandoned verification still holds a thread.
        future.add_done_callback(lambda _: self._release())
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        with self._lock:
            self._pending -= 1

    @property
    def pending(self) -> int:
        """Calls running or waiting for a thread."""
        return self._pending
