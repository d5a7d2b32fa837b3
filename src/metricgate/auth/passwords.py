"""Password hashing with argon2id (argon2-cffi's default ``PasswordHasher``; docs/design-auth.md B3).

The KDF costs tens to hundreds of milliseconds of CPU and 64 MiB per call by design, so it never
runs on the event loop: a pool of two threads does it, and past 64 calls waiting for a thread
the caller gets 503 + ``Retry-After`` instead of a queue that grows without bound (a burst of
logins must not take every request's latency with it). A user who does not exist is verified
against a dummy hash all the same, so the answer's timing does not say who exists.

Hashes imported from MLflow's auth database (``metricgate users import-mlflow``) are werkzeug's
``scrypt:N:r:p$salt$hex`` or ``pbkdf2:HASH:ITERATIONS$salt$hex``. They are verified here with
``hashlib`` (werkzeug is not a runtime dependency; a test pins the two against werkzeug itself)
and replaced by argon2id at the first good login (``upgrade``), as is an argon2 hash made with
older parameters.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from metricgate.config import AuthSettings
from metricgate.domain.errors import Unavailable

if TYPE_CHECKING:
    from metricgate.stores.base import AuthStore

log = logging.getLogger(__name__)

T = TypeVar("T")

KDF_THREADS = 2
MAX_WAITING = 64

# An imported hash's cost comes from a file, not from us: beyond these it is refused (False)
# rather than allowed to take a KDF thread for minutes or gigabytes of memory. werkzeug's
# defaults (scrypt 2**15, 8, 1: 32 MiB; pbkdf2 1,000,000 iterations) are well inside.
MAX_SCRYPT_MEMORY = 1 << 30
MAX_PBKDF2_ITERATIONS = 10_000_000


def is_werkzeug_hash(password_hash: str) -> bool:
    """A hash in werkzeug's format (MLflow's auth app), which ``Passwords`` can verify."""
    return password_hash.startswith(("scrypt:", "pbkdf2:")) and password_hash.count("$") >= 2


def verify_werkzeug(password_hash: str, password: str) -> bool:
    """``password`` against a werkzeug ``scrypt:``/``pbkdf2:`` hash, as werkzeug's
    ``check_password_hash`` decides it; False for any other or malformed hash. CPU-bound."""
    method, _, rest = password_hash.partition("$")
    salt, _, expected = rest.partition("$")
    if not salt or not expected:
        return False
    name, *params = method.split(":")
    salt_bytes, secret = salt.encode("utf-8"), password.encode("utf-8")
    try:
        if name == "scrypt":
            n, r, p = (int(x) for x in params) if params else (1 << 15, 8, 1)
            # werkzeug allows 132 * n * r * p bytes (scrypt needs 128 * n * r plus some)
            memory = 132 * n * r * p
            if memory > MAX_SCRYPT_MEMORY:
                return False
            derived = hashlib.scrypt(secret, salt=salt_bytes, n=n, r=r, p=p, maxmem=memory)
        elif name == "pbkdf2":
            if len(params) > 2:
                return False
            digest = params[0] if params else "sha256"
            iterations = int(params[1]) if len(params) == 2 else 1_000_000
            if not 0 < iterations <= MAX_PBKDF2_ITERATIONS:
                return False
            derived = hashlib.pbkdf2_hmac(digest, secret, salt_bytes, iterations)
        else:
            return False
    except (ValueError, TypeError, OverflowError, MemoryError):
        # A malformed parameter count or value, an unknown digest, n not a power of two.
        return False
    return hmac.compare_digest(derived.hex().encode("ascii"), expected.encode("utf-8"))


class Passwords:
    """Hash and verify passwords off the event loop, bounded. ``hasher`` sets the cost
    (``from_settings``: the configured one); without it, argon2-cffi's defaults (RFC 9106)."""

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Passwords:
        """The pool with the configured argon2id cost (METRICGATE_AUTH_PASSWORD_*)."""
        return cls(
            argon2.PasswordHasher(
                time_cost=settings.password_time_cost,
                memory_cost=settings.password_memory_kib,
                parallelism=settings.password_parallelism,
            )
        )

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

    async def upgrade(
        self, store: AuthStore, user_id: int, password_hash: str, password: str
    ) -> bool:
        """After ``password`` was verified against ``password_hash``: when the hash is not
        today's argon2id, store a new one, only if the stored hash is still ``password_hash``
        (a password changed meanwhile is never overwritten). The same password, so no epoch or
        credential version moves. Never fails the login: any error is logged, without secrets,
        and the old hash stays. True when the new hash was stored."""
        if not self.needs_rehash(password_hash):
            return False
        try:
            new_hash = await self.hash(password)
            stored = await store.rehash_password(user_id, password_hash, new_hash)
        except Exception as exc:  # the login has succeeded; the next one tries again
            log.warning(
                "could not re-hash the password of user %d: %s", user_id, type(exc).__name__
            )
            return False
        if not stored:
            log.debug("password of user %d changed while it was re-hashed; kept that", user_id)
        return stored

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
        if is_werkzeug_hash(password_hash):
            return verify_werkzeug(password_hash, password)
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
