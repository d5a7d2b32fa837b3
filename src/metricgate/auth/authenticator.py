"""Who is calling: the ``Authorization`` header to a verified ``Credential``, and that user's
grants and level on a resource, behind a per-process cache (docs/design-auth.md B3).

Accepted: ``Basic base64(username:password)``, where the password may also be one of that
user's API tokens (so tools that only speak Basic can use a token), and ``Bearer <token>`` (the
mlflow client's ``MLFLOW_TRACKING_TOKEN``). A token is found by its digest, so it costs one
indexed lookup; a password costs an argon2id verification, which is why verified credentials are
remembered, keyed by a keyed BLAKE2b (per-process random key) of ``username NUL password`` or
of the token: the cache holds no secret and no usable digest of one. Failures are never
remembered (the login limiter deals with them). ``login`` also says why one failed (the audit
log's ``login.failed`` reason) and runs a hook, the login limiter's check, only when the
credential is not cached: before any password is verified, and never for a cached caller.

Invalidation: ``auth_state`` holds two epochs (stores.base.AuthEpochs), each bumped in the
changing transaction. A moved credentials epoch (password, admin flag, user delete, token revoke)
drops everything; a moved grants epoch (grants, roles, assignments) drops only the grant lists,
so nobody's password is verified again for it. The process that commits a change calls
``changed`` after its commit: the drop holds there at once, and ``announce_with``'s announcer
(auth/notices.py) publishes the change on Redis (``mg:auth:changed``), so the other processes
drop the same entries (``notice``) within milliseconds. Pub/sub delivers at most once and
Redis may be away, so each process still reads the epochs when its last look is older than a
second (one query per second per process, the requests meanwhile waiting for it): a lost
notice costs at most that second. Between those looks a cached caller is answered without an
await (``cached``, ``CallerAccess.cached_allows``: the hot path of every request).

The creator's MANAGE on what they just made, written on every create, moves no epoch (else
every create would drop every process's grant lists): it only adds the top level, so no cached
list allows too much. The committing process calls ``user_grants_changed``, which drops that
user's list here and announces it; for another process whose notice is late or lost, the
access questions go through ``CallerAccess``, which reads the grants afresh where the missing
grant would make an answer wrong (a denial; a search only per-id grants open), at most once per
request. An entry read from the store before a drop is never stored after it: each miss notes
its cache's generation and stores its result only if no drop happened meanwhile.
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
from dataclasses import dataclass, field
from enum import Enum

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
from metricgate.domain.auth.visibility import UNRESTRICTED, Mode, Visibility, visibility
from metricgate.domain.errors import Unavailable
from metricgate.domain.lru import Lru
from metricgate.health_log import OutageLog
from metricgate.stores.base import AuthEpochs, AuthStore, TokenCredentials

log = logging.getLogger(__name__)

EPOCH_POLL_S = 1.0
# A search that only per-id grants open re-reads grants cached longer than this (CallerAccess).
GRANT_RECHECK_S = 1.0
# Remembered levels per cached grant list (_Grants.level).
LEVELS_PER_USER = 1024
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


@dataclass(frozen=True, slots=True)
class _Grants:
    cred_version: int  # of the credential they were read for: a newer one reads them again
    read_at: float  # the clock when the read began: it saw every grant committed before
    grants: tuple[Grant, ...]
    # decide()'s answers on these grants, per resource: a user logging metrics asks about the
    # same experiment on every request. Dropped with the grants (a new _Grants on each read).
    levels: dict[tuple[ResourceType, str], Permission] = field(default_factory=dict)

    def level(
        self, resource_type: ResourceType, resource_id: str, default: Permission
    ) -> Permission:
        key = (resource_type, resource_id)
        found = self.levels.get(key)
        if found is None:
            found = decide(self.grants, resource_type, resource_id, default)
            if len(self.levels) >= LEVELS_PER_USER:
                self.levels.clear()  # bounded: ids a client names cannot grow it
            self.levels[key] = found
        return found


class AuthChange(Enum):
    """What a committed change made stale: the ``kind`` of a notice on ``mg:auth:changed``."""

    CREDENTIALS = "credentials"  # every cached credential and grant list
    GRANTS = "grants"  # every cached grant list
    USER_GRANTS = "user_grants"  # one user's grant list (the creator's MANAGE)


# Called with each change this process commits, to tell the other processes (auth/notices.py).
Announcer = Callable[[AuthChange, int | None], None]


class Authenticator:
    """One per process (the cache's MAC key is random per instance). Owns its ``Passwords``
    pool unless one is passed in."""

    def __init__(
        self,
        store: AuthStore,
        settings: AuthSettings,
        *,
        passwords: Passwords | None = None,
        epoch_poll_s: float = EPOCH_POLL_S,
        grant_recheck_s: float = GRANT_RECHECK_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self._store = store
        self.default_permission = Permission[settings.default_permission]
        self._owns_passwords = passwords is None
        self.passwords = passwords or Passwords.from_settings(settings)
        self._key = secrets.token_bytes(32)
        self._credentials: Lru[bytes, _Entry] = Lru(settings.cache_entries)
        self._grants: Lru[int, _Grants] = Lru(settings.cache_entries)
        self._touched: Lru[int, float] = Lru(max(settings.cache_entries, 1024))
        self._epoch_poll_s = epoch_poll_s
        self._grant_recheck_s = grant_recheck_s
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
        self._announce: Announcer | None = None

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

    def cached(self, presented: BasicLogin | BearerToken) -> Credential | None:
        """The caller's credential when the cache answers it now: verified before, still live,
        and no look at the epochs due. None sends the caller to ``login``. Synchronous, so the
        common request (a cached caller) costs no coroutine and no await here."""
        if self._poll_due():
            return None
        key = self._cache_key(presented)
        return None if key is None else self._hit(key)

    async def _authenticate(
        self,
        presented: BasicLogin | BearerToken,
        before_verify: Callable[[], Awaitable[None]] | None,
    ) -> Credential | _Failed:
        key = self._cache_key(presented)
        if key is None:  # not even shaped like a token
            if before_verify is not None:
                await before_verify()
            return _Failed(UNKNOWN_TOKEN)
        if isinstance(presented, BearerToken):
            token = presented.token
            return await self._cached_or(
                key, lambda: self._verify_token(token_digest(token)), before_verify
            )
        return await self._cached_or(key, lambda: self._verify_basic(presented), before_verify)

    async def grants_for(self, credential: Credential) -> list[Grant]:
        """The user's grants from all its roles, as cached (with the credential)."""
        return list((await self._cached_grants(credential)).grants)

    async def decide_for(
        self, credential: Credential, resource_type: ResourceType, resource_id: str
    ) -> Permission:
        """The caller's level on one resource (domain.auth.permissions.decide), as cached."""
        if credential.is_admin:
            return Permission.MANAGE
        cached = await self._cached_grants(credential)
        return cached.level(resource_type, resource_id, self.default_permission)

    def access_for(self, credential: Credential) -> CallerAccess:
        """One request's view of the caller's grants: levels and search visibility that a
        creator's MANAGE not yet cached here cannot make wrong (see CallerAccess)."""
        return CallerAccess(self, credential)

    async def changed(self, *, credentials: bool) -> None:
        """This process committed a change to credentials (password, admin flag, user delete,
        token revoke) or, with ``credentials`` False, to grants: it holds here at once, and
        the other processes are told (pub/sub) instead of waiting for their epoch poll. The
        epochs are then read afresh, so that poll does not drop the cache a second time;
        should that read fail, the drop has happened all the same."""
        change = AuthChange.CREDENTIALS if credentials else AuthChange.GRANTS
        self.notice(change)
        self._tell(change, None)
        await self._refresh()

    def user_grants_changed(self, user_id: int) -> None:
        """This process committed a grant to one user that moves no epoch (the creator's MANAGE
        on what they just made): that user's cached grants go at once here, and the other
        processes are told."""
        self.notice(AuthChange.USER_GRANTS, user_id)
        self._tell(AuthChange.USER_GRANTS, user_id)

    def notice(self, change: AuthChange, user_id: int | None = None) -> None:
        """Drop what ``change`` made stale (this process's own change, or another's notice).
        After a credentials or grants change the next request reads the epochs at once: its
        poll finds them moved while the cache is still empty, rather than up to a second later
        when it would drop what was refilled meanwhile (and verify every password again)."""
        if change is AuthChange.USER_GRANTS:
            if user_id is not None:
                self._grants.pop(user_id)
                self._grant_generation += 1  # a read racing the drop is not kept
            return
        if change is AuthChange.CREDENTIALS:
            self.forget_all()
        else:
            self.forget_grants()
        self._checked_at = -float("inf")

    def announce_with(self, announcer: Announcer | None) -> None:
        """Tell ``announcer`` of every change this process commits (auth/notices.py)."""
        self._announce = announcer

    def forget_all(self) -> None:
        """Drop every cached credential and grant."""
        self._credentials.clear()
        self._cred_generation += 1
        self.forget_grants()

    def forget_grants(self) -> None:
        """Drop every cached grant list; verified credentials stay."""
        self._grants.clear()
        self._grant_generation += 1

    def _tell(self, change: AuthChange, user_id: int | None) -> None:
        if self._announce is None:
            return
        try:
            self._announce(change, user_id)
        except Exception:  # the change is committed and holds here; the poll tells the others
            log.exception("could not announce an access change (%s)", change.value)

    def close(self) -> None:
        for task in self._background:
            task.cancel()
        if self._owns_passwords:
            self.passwords.close()

    # ------------------------------------------------------------------ the cache

    def _cache_key(self, presented: BasicLogin | BearerToken) -> bytes | None:
        """The credential's cache key, a MAC of the secret; None for a bearer value not shaped
        like a token. A token is keyed like a password, not by its stored SHA-256 (computed
        only on a miss, for the store). Keyed BLAKE2b is a MAC by design (RFC 7693) and lives in
        CPython itself; HMAC or SHA-256 through OpenSSL 3 fetch their algorithm on every call:
        ~1.5 us in a tight loop, but measured at ~20 us per request in the server, where that
        code path is never warm."""
        if isinstance(presented, BearerToken):
            if not looks_like_token(presented.token):
                return None
            return b"t" + self._digest(presented.token.encode("ascii"))
        return b"b" + self._mac(presented.username, presented.password)

    def _mac(self, username: str, password: str) -> bytes:
        return self._digest(username.encode("utf-8") + b"\0" + password.encode("utf-8"))

    def _digest(self, message: bytes) -> bytes:
        return hashlib.blake2b(message, key=self._key, digest_size=32).digest()

    def _hit(self, key: bytes) -> Credential | None:
        """The cached credential under ``key`` if it is still live (its use noted)."""
        entry = self._credentials.get(key)
        if entry is None or not self._live(entry):
            return None
        self._touch(entry)
        return entry.credential

    def _poll_due(self) -> bool:
        """Whether the epochs are due a look (``_refresh``); until then the caches answer."""
        return self._clock() - self._checked_at >= self._epoch_poll_s

    async def _cached_or(
        self,
        key: bytes,
        verify: Callable[[], Awaitable[_Entry | _Failed]],
        before_verify: Callable[[], Awaitable[None]] | None,
    ) -> Credential | _Failed:
        await self._refresh()
        hit = self._hit(key)
        if hit is not None:
            return hit
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

    async def _cached_grants(self, credential: Credential) -> _Grants:
        await self._refresh()
        cached = self._grants.get(credential.user_id)
        if cached is not None and cached.cred_version == credential.cred_version:
            return cached
        return await self._reload_grants(credential)

    async def _reload_grants(self, credential: Credential) -> _Grants:
        """The user's grants read from the store, and kept unless a drop happened meanwhile."""
        generation = self._grant_generation
        read_at = self._clock()
        grants = tuple(await self._store.user_grants(credential.user_id))
        found = _Grants(credential.cred_version, read_at, grants)
        if generation == self._grant_generation:
            self._grants.put(credential.user_id, found)
        return found

    def _live(self, entry: _Entry) -> bool:
        return entry.expires_at_ms is None or entry.expires_at_ms > self._now_ms()

    async def _refresh(self) -> None:
        """Drop what the store's epochs say is stale; looks at most once per poll interval."""
        if not self._poll_due():
            return
        async with self._epoch_lock:
            if not self._poll_due():
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
        await self._reload_grants(credential)  # most requests need them next
        return _Entry(credential, None, None)

    async def _token_entry(self, found: TokenCredentials) -> _Entry:
        # Bearer or as the Basic password: either way the audit log's method is "token".
        user = found.user
        credential = Credential(user.id, user.username, user.is_admin, found.cred_version, "token")
        await self._reload_grants(credential)  # most requests need them next
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


# Search modes in which only per-id grants make rows visible.
_ONLY_GRANTED = frozenset({Mode.ONLY, Mode.NONE})


class CallerAccess:
    """One request's questions about one caller's grants, answered from the authenticator's
    cache. What that cache can lack is the creator's MANAGE written by another process (it
    moves no epoch, and its pub/sub notice may be late or lost); the answers it could make
    wrong read the grants afresh, at most once per request:

    - a level not held (``allows``), unless the cached grants were read after this request
      began: they then already hold every grant committed before it, the creator's included,
      so the creator's first request after a create, on any process, is never wrongly denied;
    - a search that only per-id grants open (ONLY or NONE; ``visibility``), when the cached
      grants are older than ``grant_recheck_s``: what the caller just made shows in their
      searches at once in the process that made it (``user_grants_changed``), on the others
      as soon as the notice arrives and within about a second if it is lost. Where ``*`` or
      the default reads (ALL_EXCEPT) the new row shows anyway and the cache is enough.

    Admins hold everything; nothing is read for them."""

    def __init__(self, authenticator: Authenticator, credential: Credential) -> None:
        self._auth = authenticator
        self.credential = credential
        self._began = authenticator._clock()
        self._reread = False
        self._seen: dict[ResourceType, Visibility] = {}

    async def grants(self) -> list[Grant]:
        """The caller's grants, as cached (workspace-admin checks: such grants move the epoch)."""
        return await self._auth.grants_for(self.credential)

    async def allows(
        self, resource_type: ResourceType, resource_id: str, level: Permission
    ) -> bool:
        if self.credential.is_admin:
            return True
        cached = await self._auth._cached_grants(self.credential)
        verdict = self._verdict(cached, resource_type, resource_id, level)
        if verdict is not None:
            return verdict
        fresh = await self._reread_grants()
        return fresh.level(resource_type, resource_id, self._auth.default_permission).allows(level)

    def cached_allows(
        self, resource_type: ResourceType, resource_id: str, level: Permission
    ) -> bool | None:
        """``allows`` when the cache answers it now (the grants are cached for this credential
        and no look at the epochs is due); None sends the caller to ``allows``. Synchronous:
        the common check costs no coroutine."""
        if self.credential.is_admin:
            return True
        auth = self._auth
        if auth._poll_due():
            return None
        cached = auth._grants.get(self.credential.user_id)
        if cached is None or cached.cred_version != self.credential.cred_version:
            return None
        return self._verdict(cached, resource_type, resource_id, level)

    def _verdict(
        self, cached: _Grants, resource_type: ResourceType, resource_id: str, level: Permission
    ) -> bool | None:
        """What ``cached`` says; None for a denial by grants read before this request began
        (they may lack a creator's MANAGE) that has not been re-read yet."""
        if cached.level(resource_type, resource_id, self._auth.default_permission).allows(level):
            return True
        if self._reread or cached.read_at >= self._began:
            return False
        return None

    async def visibility(self, resource_type: ResourceType) -> Visibility:
        """What a search of ``resource_type`` may return (domain.auth.visibility), folded once
        per request and type."""
        if self.credential.is_admin:
            return UNRESTRICTED
        known = self._seen.get(resource_type)
        if known is not None:
            return known
        default = self._auth.default_permission
        cached = await self._auth._cached_grants(self.credential)
        seen = visibility(cached.grants, resource_type, default)
        age = self._auth._clock() - cached.read_at
        if seen.mode in _ONLY_GRANTED and not self._reread and age > self._auth._grant_recheck_s:
            seen = visibility((await self._reread_grants()).grants, resource_type, default)
        self._seen[resource_type] = seen
        return seen

    async def _reread_grants(self) -> _Grants:
        self._reread = True
        return await self._auth._reload_grants(self.credential)
