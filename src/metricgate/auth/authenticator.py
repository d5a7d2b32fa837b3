"""Who is calling: the ``Authorization`` header to a verified ``Credential``, and that user's
grants and level on a resource, behind a per-process cache (docs/design-auth.md B3).

Accepted: ``Basic base64(username:password)``, where the password may also be one of that
user's API tokens (so tools that only speak Basic can use a token), and ``Bearer <token>`` (the
mlflow client's ``MLFLOW_TRACKING_TOKEN``). A token is found by its digest, so it costs one
indexed lookup; a password costs an argon2id verification, which is why verified credentials are
remembered: keyed by ``HMAC-SHA256(per-process random key, username NUL password)`` (the cache
holds no secret and no usable digest of one) or by the token's digest. Failures are never
remembered (the login limiter deals with them). ``login`` also says why one failed (the audit
log's ``login.failed`` reason) and runs a hook, the login limiter's check, only when the
credential is not cached: before any password is verified, and never for a cached caller.

Invalidation: ``auth_state`` holds two epochs (stores.base.AuthEpochs), each bumped in the
changing transaction. A request finding the last look older than a second reads them (one query
per second per process, the requests meanwhile waiting for it). A moved credentials epoch
(password, admin flag, user delete, token revoke) drops everything; a moved grants epoch (grants,
roles, assignments) drops only the grant lists, so nobody's password is verified again for it.
Either reaches every process within about a second; the process that made the change calls
``changed`` after its commit, so there it holds at once. The creator's MANAGE grant moves neither:
the access check calls ``reload_grants`` on a denial, which finds it and keeps it. An entry
read from the store before a drop is never stored after it: each miss notes its cache's
generation and stores its result only if no drop happened meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from metricgate.auth.passwords import Passwords
from metricgate.config import AuthSettings
from metricgate.domain.auth.entities import Credential
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType, decide
from metricgate.domain.auth.rules import (
    MAX_PASSWORD_LENGTH,
    MAX_USERNAME_LENGTH,
    looks_like_token,
    token_digest,
)
from metricgate.domain.errors import Unavailable
from metricgate.domain.lru import Lru
from metricgate.health_log import OutageLog
from metricgate.stores.base import AuthEpochs, AuthStore, TokenCredentials

log = logging.getLogger(__name__)

EPOCH_POLL_S = 1.0
TOUCH_INTERVAL_S = 60.0  # last_used_at is written at most this often per token and process


@dataclass(frozen=True, slots=True)
class BasicLogin:
    username: str
    password: str  # a password or one of the user's tokens

    def __repr__(self) -> str:  # never print the secret
        return f"BasicLogin(username={self.username!r})"


@dataclass(frozen=True, slots=True)
class BearerToken:
    token: str

    def __repr__(self) -> str:
        return "BearerToken(...)"


def parse_authorization(header: str | None) -> BasicLogin | BearerToken | None:
    """The credential an ``Authorization`` header carries; None when there is none or it is
    malformed (both answer 401). The login limiter reads the username from here before any
    password is verified."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    scheme = scheme.lower()
    if scheme == "bearer":
        return BearerToken(value) if value else None
    if scheme != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon or not username or not password:
        return None
    if len(username) > MAX_USERNAME_LENGTH or len(password) > MAX_PASSWORD_LENGTH:
        return None
    return BasicLogin(username, password)


# Why a credential failed (the audit log's reason); the caller sees the same 401 for each.
UNKNOWN_USER = "unknown user"
WRONG_PASSWORD = "wrong password"
UNKNOWN_TOKEN = "unknown token"
REVOKED_TOKEN = "revoked token"
EXPIRED_TOKEN = "expired token"
MALFORMED = "malformed credentials"
_DEAD_TOKEN_REASONS = {"revoked": REVOKED_TOKEN, "expired": EXPIRED_TOKEN}


@dataclass(frozen=True, slots=True)
class Refused:
    """A presented credential that proves nothing, and why."""

    reason: str


@dataclass(frozen=True, slots=True)
class _Failed:
    reason: str
    token_digest: bytes | None = None  # a token was tried: the store can say why it is dead


@dataclass(frozen=True, slots=True)
class _Entry:
    credential: Credential
    token_id: int | None  # the token that proved it, if one did
    expires_at_ms: int | None  # the token's expiry: a cached token must not outlive it


class Authenticator:
    """One per process (the cache's HMAC key is random per instance). Owns its ``Passwords``
    pool unless one is passed in."""

    def __init__(
        self,
        store: AuthStore,
        settings: AuthSettings,
        *,
        passwords: Passwords | None = None,
        epoch_poll_s: float = EPOCH_POLL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self.default_permission = Permission[settings.default_permission]
        self._owns_passwords = passwords is None
        self.passwords = passwords or Passwords()
        self._key = secrets.token_bytes(32)
        self._credentials: Lru[bytes, _Entry] = Lru(settings.cache_entries)
        # user id -> (the cred_version the grants were read at, the grants)
        self._grants: Lru[int, tuple[int, tuple[Grant, ...]]] = Lru(settings.cache_entries)
        self._touched: Lru[int, float] = Lru(max(settings.cache_entries, 1024))
        self._epoch_poll_s = epoch_poll_s
        self._clock = clock
        self._now_ms = wall_clock_ms
        self._epochs: AuthEpochs | None = None
        self._checked_at = -float("inf")
        self._epoch_lock = asyncio.Lock()
        # Bumped by each drop of the credential (grant) cache: a miss racing one is not stored.
        self._cred_generation = 0
        self._grant_generation = 0
        self._epoch_outage = OutageLog(log, "PostgreSQL (auth epoch)")
        self._background: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------------ public

    async def authenticate(self, authorization_header: str | None) -> Credential | None:
        """The caller's verified credential; None for a missing, malformed, wrong, expired,
        revoked or unknown one (all answer the same 401)."""
        return await self.authenticate_parsed(parse_authorization(authorization_header))

    async def authenticate_parsed(
        self,
        presented: BasicLogin | BearerToken | None,
        *,
        before_verify: Callable[[], Awaitable[None]] | None = None,
    ) -> Credential | None:
        if presented is None:
            return None
        found = await self._authenticate(presented, before_verify)
        return found if isinstance(found, Credential) else None

    async def login(
        self,
        presented: BasicLogin | BearerToken,
        *,
        before_verify: Callable[[], Awaitable[None]] | None = None,
    ) -> Credential | Refused:
        """``authenticate_parsed`` saying why a credential failed. ``before_verify`` runs only
        when the credential is not cached, before the store or the password hash is asked; an
        exception it raises ends the login there. A failed token costs one more indexed read
        (revoked, expired or unknown)."""
        found = await self._authenticate(presented, before_verify)
        if isinstance(found, Credential):
            return found
        if found.token_digest is None:
            return Refused(found.reason)
        dead = await self._store.dead_token_reason(found.token_digest)
        return Refused(_DEAD_TOKEN_REASONS.get(dead or "", found.reason))

    async def _authenticate(
        self,
        presented: BasicLogin | BearerToken,
        before_verify: Callable[[], Awaitable[None]] | None,
    ) -> Credential | _Failed:
        if isinstance(presented, BearerToken):
            if not looks_like_token(presented.token):
                if before_verify is not None:
                    await before_verify()
                return _Failed(UNKNOWN_TOKEN)
            digest = token_digest(presented.token)
            return await self._cached_or(
                b"t" + digest, lambda: self._verify_token(digest), before_verify
            )
        key = b"b" + self._mac(presented.username, presented.password)
        return await self._cached_or(key, lambda: self._verify_basic(presented), before_verify)

    async def grants_for(self, credential: Credential) -> list[Grant]:
        """The user's grants from all its roles, cached with the credential."""
        await self._refresh()
        cached = self._grants.get(credential.user_id)
        if cached is not None and cached[0] == credential.cred_version:
            return list(cached[1])
        return await self.reload_grants(credential)

    async def reload_grants(self, credential: Credential) -> list[Grant]:
        """The user's grants read afresh and kept: for a denial that a grant no epoch announced
        (the creator's MANAGE, given in this or another process) may lift. Later requests then
        find it in the cache instead of asking the store each time."""
        generation = self._grant_generation
        grants = tuple(await self._store.user_grants(credential.user_id))
        if generation == self._grant_generation:
            self._grants.put(credential.user_id, (credential.cred_version, grants))
        return list(grants)

    async def decide_for(
        self, credential: Credential, resource_type: ResourceType, resource_id: str
    ) -> Permission:
        """The caller's level on one resource (domain.auth.permissions.decide)."""
        if credential.is_admin:
            return Permission.MANAGE
        grants = await self.grants_for(credential)
        return decide(grants, resource_type, resource_id, self.default_permission)

    async def changed(self, *, credentials: bool) -> None:
        """This process committed a change to credentials (password, admin flag, user delete,
        token revoke) or, with ``credentials`` False, to grants: it holds here at once instead
        of at the next epoch poll. The epochs are then read afresh, so that poll does not drop
        the cache a second time; should that read fail, the drop has happened all the same."""
        if credentials:
            self.forget_all()
        else:
            self.forget_grants()
        self._checked_at = -float("inf")
        await self._refresh()

    def forget_all(self) -> None:
        """Drop every cached credential and grant (a pub/sub notice, or a test)."""
        self._credentials.clear()
        self._cred_generation += 1
        self.forget_grants()

    def forget_grants(self) -> None:
        """Drop every cached grant list; verified credentials stay."""
        self._grants.clear()
        self._grant_generation += 1

    def close(self) -> None:
        for task in self._background:
            task.cancel()
        if self._owns_passwords:
            self.passwords.close()

    # ------------------------------------------------------------------ the cache

    def _mac(self, username: str, password: str) -> bytes:
        message = username.encode("utf-8") + b"\0" + password.encode("utf-8")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    async def _cached_or(
        self,
        key: bytes,
        verify: Callable[[], Awaitable[_Entry | _Failed]],
        before_verify: Callable[[], Awaitable[None]] | None,
    ) -> Credential | _Failed:
        await self._refresh()
        cached = self._credentials.get(key)
        if cached is not None and self._live(cached):
            self._touch(cached)
            return cached.credential
        if before_verify is not None:
            await before_verify()
        generation = self._cred_generation
        entry = await verify()
        if isinstance(entry, _Failed):
            return entry
        if generation == self._cred_generation:
            self._credentials.put(key, entry)
        self._touch(entry)
        return entry.credential

    def _live(self, entry: _Entry) -> bool:
        return entry.expires_at_ms is None or entry.expires_at_ms > self._now_ms()

    async def _refresh(self) -> None:
        """Drop what the store's epochs say is stale; looks at most once per poll interval."""
        if self._clock() - self._checked_at < self._epoch_poll_s:
            return
        async with self._epoch_lock:
            if self._clock() - self._checked_at < self._epoch_poll_s:
                return  # another request looked while this one waited
            try:
                epochs = await self._store.auth_epochs()
            except Unavailable as exc:
                # The cache stays: while the database is away no change can commit through it,
                # and cached callers (metric writes go to Redis) keep working. Misses still fail.
                self._epoch_outage.failed(exc)
                self._checked_at = self._clock()
                return
            self._epoch_outage.ok()
            self._checked_at = self._clock()
            last, self._epochs = self._epochs, epochs
            if last is None or epochs.credentials != last.credentials:
                self.forget_all()
            elif epochs.grants != last.grants:
                self.forget_grants()

    # ------------------------------------------------------------------ misses

    async def _verify_token(self, digest: bytes) -> _Entry | _Failed:
        found = await self._store.token_credentials(digest)
        return _Failed(UNKNOWN_TOKEN, digest) if found is None else await self._token_entry(found)

    async def _verify_basic(self, login: BasicLogin) -> _Entry | _Failed:
        tried: bytes | None = None
        if looks_like_token(login.password):
            tried = token_digest(login.password)
            found = await self._store.token_credentials(tried)
            # Another user's token fails like a wrong password. A password that merely looks
            # like a token is still tried as a password below.
            if found is not None and hmac.compare_digest(
                found.user.username.encode("utf-8"), login.username.encode("utf-8")
            ):
                return await self._token_entry(found)
        stored = await self._store.user_credentials(login.username)
        if stored is None or stored.password_hash is None:
            await self.passwords.verify(None, login.password)  # the same cost as a real one
            return _Failed(UNKNOWN_USER if stored is None else WRONG_PASSWORD)
        if not await self.passwords.verify(stored.password_hash, login.password):
            # A dead token of this user's as the password: ``login`` asks the store which.
            return _Failed(WRONG_PASSWORD, tried)
        user = stored.user
        # An imported or older-parameter hash becomes today's argon2id (never fails the login).
        await self.passwords.upgrade(self._store, user.id, stored.password_hash, login.password)
        credential = Credential(user.id, user.username, user.is_admin, stored.cred_version, "basic")
        await self.reload_grants(credential)  # most requests need them next
        return _Entry(credential, None, None)

    async def _token_entry(self, found: TokenCredentials) -> _Entry:
        # Bearer or as the Basic password: either way the audit log's method is "token".
        user = found.user
        credential = Credential(user.id, user.username, user.is_admin, found.cred_version, "token")
        await self.reload_grants(credential)  # most requests need them next
        return _Entry(credential, found.token.id, found.token.expires_at_ms)

    # ------------------------------------------------------------------ last use of tokens

    def _touch(self, entry: _Entry) -> None:
        if entry.token_id is None:
            return
        now = self._clock()
        last = self._touched.get(entry.token_id)
        if last is not None and now - last < TOUCH_INTERVAL_S:
            return
        self._touched.put(entry.token_id, now)
        task = asyncio.get_running_loop().create_task(self._write_touch(entry.token_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_touch(self, token_id: int) -> None:
        try:
            await self._store.touch_token(token_id)
        except Exception as exc:  # a bookkeeping write: the request it rides on has succeeded
            log.debug("could not record the use of token %d: %s", token_id, exc)
