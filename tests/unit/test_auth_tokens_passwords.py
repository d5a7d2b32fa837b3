"""The authenticator without a database: token format, header parsing, password verification off
the loop and its bound, the verified-credential cache (keys, hits, failures, expiry, epoch
invalidation: credentials vs grants) and the first admin. The store is an in-memory fake of ``AuthStore``'s methods the
authenticator calls; tests/integration/test_authenticator.py runs the same against PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import threading
from dataclasses import dataclass, field
from typing import cast

import argon2
import pytest
from tests.fake_clock import FakeClock

from metricgate.auth.authenticator import (
    Authenticator,
    BasicLogin,
    BearerToken,
    parse_authorization,
)
from metricgate.auth.bootstrap import AdminRequired, ensure_admin
from metricgate.auth.passwords import Passwords
from metricgate.auth.tokens import new_token
from metricgate.config import AuthSettings
from metricgate.domain.auth.entities import ApiToken, User
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.auth.rules import looks_like_token, token_digest, token_hint
from metricgate.domain.errors import AlreadyExists, Unavailable
from metricgate.stores.base import (
    AuditContext,
    AuthEpochs,
    AuthStore,
    TokenCredentials,
    UserCredentials,
)

# Cheap parameters: the unit tier verifies dozens of passwords.
FAST = argon2.PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
PASSWORD = "s3cret-password-1"
EXP = ResourceType.EXPERIMENT


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


@dataclass
class FakeAuthStore:
    """The part of AuthStore the authenticator and ensure_admin use, counting calls."""

    users: dict[str, tuple[User, str | None, int]] = field(default_factory=dict)
    tokens: dict[bytes, tuple[int, ApiToken]] = field(default_factory=dict)
    grants: dict[int, list[Grant]] = field(default_factory=dict)
    epochs: AuthEpochs = field(default_factory=lambda: AuthEpochs(credentials=1, grants=1))
    calls: dict[str, int] = field(default_factory=dict)
    now_ms: int = 1_000_000
    during_lookup: object = None  # a callable run inside user_credentials
    admin_audit: list[tuple[AuditContext | None, dict[str, object] | None]] = field(
        default_factory=list
    )

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def add_user(self, username: str, password_hash: str | None, *, admin: bool = False) -> User:
        user = User(len(self.users) + 1, username, admin)
        self.users[username] = (user, password_hash, 1)
        return user

    def add_token(self, user: User, token: str, *, expires_at_ms: int | None = None) -> ApiToken:
        record = ApiToken(
            len(self.tokens) + 1, user.id, "t", token_hint(token), 0, expires_at_ms, None, None
        )
        self.tokens[token_digest(token)] = (user.id, record)
        return record

    def bump(self, username: str | None = None) -> None:
        """A credential change (password, admin flag, token revoke)."""
        self.epochs = self.epochs._replace(credentials=self.epochs.credentials + 1)
        if username is not None:
            user, password_hash, version = self.users[username]
            self.users[username] = (user, password_hash, version + 1)

    async def user_credentials(self, username: str) -> UserCredentials | None:
        self._count("user_credentials")
        if callable(self.during_lookup):
            self.during_lookup()
        if username not in self.users:
            return None
        return UserCredentials(*self.users[username])

    async def token_credentials(self, digest: bytes) -> TokenCredentials | None:
        self._count("token_credentials")
        if digest not in self.tokens:
            return None
        user_id, token = self.tokens[digest]
        if token.revoked_at_ms is not None:
            return None
        if token.expires_at_ms is not None and token.expires_at_ms <= self.now_ms:
            return None
        user, _, version = next(u for u in self.users.values() if u[0].id == user_id)
        return TokenCredentials(user, token, version)

    async def user_grants(self, user_id: int) -> list[Grant]:
        self._count("user_grants")
        return list(self.grants.get(user_id, []))

    def bump_grants(self) -> None:
        """A grant, role or assignment change."""
        self.epochs = self.epochs._replace(grants=self.epochs.grants + 1)

    async def auth_epochs(self) -> AuthEpochs:
        self._count("auth_epochs")
        return self.epochs

    async def touch_token(self, token_id: int) -> None:
        self._count("touch_token")

    async def any_admin(self) -> bool:
        return any(u.is_admin for u, _, _ in self.users.values())

    async def create_admin_if_none(
        self,
        username: str,
        password_hash: str,
        *,
        audit: AuditContext | None = None,
        details: dict[str, object] | None = None,
    ) -> bool:
        if await self.any_admin():
            return False
        if username in self.users:
            raise AlreadyExists(f"User {username!r} exists")
        self.add_user(username, password_hash, admin=True)
        self.admin_audit.append((audit, details))
        return True


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords(FAST)


@pytest.fixture(scope="module")
def password_hash() -> str:
    return FAST.hash(PASSWORD)


def make(
    store: FakeAuthStore,
    passwords: Passwords,
    clock: FakeClock | None = None,
    **settings: object,
) -> Authenticator:
    return Authenticator(
        cast(AuthStore, store),  # the fake has the methods the authenticator calls
        AuthSettings(mode="on", **settings),  # type: ignore[arg-type]  # str/int keywords
        passwords=passwords,
        clock=clock or FakeClock(),
        wall_clock_ms=lambda: store.now_ms,
    )


# ---------------------------------------------------------------- tokens and headers


def test_new_token_format() -> None:
    tokens = {new_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert len(token) == 47
        assert token.startswith("mgt_")
        assert "=" not in token
        assert looks_like_token(token)
        assert len(base64.urlsafe_b64decode(token[4:] + "=")) == 32


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        (basic("alice", "pw:with:colons"), BasicLogin("alice", "pw:with:colons")),
        ("basic " + base64.b64encode(b"alice:x").decode(), BasicLogin("alice", "x")),
        ("Bearer mgt_abc", BearerToken("mgt_abc")),
        ("bearer  mgt_abc ", BearerToken("mgt_abc")),
        ("Bearer", None),
        ("Basic not-base64!", None),
        ("Basic " + base64.b64encode(b"alice").decode(), None),  # no colon
        ("Basic " + base64.b64encode(b":pw").decode(), None),
        ("Basic " + base64.b64encode(b"alice:").decode(), None),
        ("Basic " + base64.b64encode(b"\xff\xfe:pw").decode(), None),
        ("Digest username=alice", None),
        (basic("alice", "x" * 1025), None),
    ],
)
def test_parse_authorization(header: str | None, expected: object) -> None:
    assert parse_authorization(header) == expected


def test_parsed_credentials_do_not_print_secrets() -> None:
    assert "hunter2" not in repr(BasicLogin("alice", "hunter2"))
    assert "mgt_" not in repr(BearerToken("mgt_secret"))


# ---------------------------------------------------------------- passwords


async def test_hash_and_verify(passwords: Passwords) -> None:
    hashed = await passwords.hash(PASSWORD)
    assert hashed.startswith("$argon2id$")
    assert await passwords.verify(hashed, PASSWORD)
    assert not await passwords.verify(hashed, PASSWORD + "x")
    assert not await passwords.verify("scrypt:32768:8:1$salt$abc", PASSWORD)  # unreadable: False
    assert not await passwords.verify(None, PASSWORD)
    assert passwords.pending == 0


def test_needs_rehash(password_hash: str) -> None:
    assert not Passwords(FAST).needs_rehash(password_hash)
    assert Passwords().needs_rehash(password_hash)  # the defaults are stronger than FAST
    assert Passwords(FAST).needs_rehash("pbkdf2:sha256:600000$salt$abc")


class BlockingHasher(argon2.PasswordHasher):
    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.release = threading.Event()

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.release.wait(10)
        return False


async def test_verifications_past_the_bound_answer_unavailable() -> None:
    hasher = BlockingHasher()
    bounded = Passwords(hasher, threads=1, max_waiting=2)
    try:
        held = [asyncio.ensure_future(bounded.verify("$argon2id$x", "pw")) for _ in range(3)]
        await asyncio.sleep(0)
        assert bounded.pending == 3
        with pytest.raises(Unavailable) as excinfo:
            await bounded.verify("$argon2id$x", "pw")
        assert excinfo.value.retry_after_s == 1
        hasher.release.set()
        assert await asyncio.gather(*held) == [False, False, False]
        await asyncio.sleep(0.01)
        assert bounded.pending == 0
    finally:
        hasher.release.set()
        bounded.close()


async def test_verification_runs_off_the_event_loop(passwords: Passwords) -> None:
    loop_thread = threading.get_ident()
    seen: list[int] = []

    class Spy(argon2.PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            seen.append(threading.get_ident())
            return True

    spied = Passwords(Spy(time_cost=1, memory_cost=8, parallelism=1))
    try:
        assert await spied.verify("$argon2id$x", "pw")
    finally:
        spied.close()
    assert seen and loop_thread not in seen


# ---------------------------------------------------------------- Basic and the cache


async def test_basic_password_and_cache_hit(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    alice = store.add_user("alice", password_hash)
    auth = make(store, passwords)
    credential = await auth.authenticate(basic("alice", PASSWORD))
    assert credential is not None
    assert (credential.user_id, credential.username, credential.method) == (
        alice.id,
        "alice",
        "basic",
    )
    assert credential.is_admin is False
    assert store.calls["user_credentials"] == 1
    assert await auth.authenticate(basic("alice", PASSWORD)) == credential
    assert store.calls["user_credentials"] == 1  # the hit asked nobody
    assert store.calls["auth_epochs"] == 1  # within the poll interval: one look


async def test_wrong_password_is_never_cached(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    store.add_user("alice", password_hash)
    auth = make(store, passwords)
    assert await auth.authenticate(basic("alice", PASSWORD)) is not None
    for _ in range(2):
        assert await auth.authenticate(basic("alice", PASSWORD + "!")) is None
    assert await auth.authenticate(basic("ALICE", PASSWORD)) is None
    assert store.calls["user_credentials"] == 4  # each failure asked again


async def test_unknown_user_costs_a_verification(password_hash: str) -> None:
    store = FakeAuthStore()
    counted = Passwords(FAST)
    calls: list[str | None] = []
    real = counted.verify

    async def spy(h: str | None, p: str) -> bool:
        calls.append(h)
        return await real(h, p)

    counted.verify = spy  # type: ignore[method-assign]  # a spy on the instance
    auth = make(store, counted)
    assert await auth.authenticate(basic("nobody", PASSWORD)) is None
    assert calls == [None]  # the dummy verification ran
    counted.close()


async def test_cache_keys_hold_no_secret_and_differ_per_process(
    passwords: Passwords, password_hash: str
) -> None:
    store = FakeAuthStore()
    store.add_user("alice", password_hash)
    one, two = make(store, passwords), make(store, passwords)
    await one.authenticate(basic("alice", PASSWORD))
    (key,) = one._credentials._entries
    assert PASSWORD.encode() not in key and b"alice" not in key
    assert one._mac("alice", PASSWORD) != two._mac("alice", PASSWORD)
    # The separator keeps ("ab", "c...") and ("a", "bc...") apart.
    assert one._mac("ab", "cdefghijklmn") != one._mac("a", "bcdefghijklmn")


async def test_cache_size_zero_verifies_every_time(
    passwords: Passwords, password_hash: str
) -> None:
    store = FakeAuthStore()
    store.add_user("alice", password_hash)
    auth = make(store, passwords, cache_entries=0)
    for _ in range(3):
        assert await auth.authenticate(basic("alice", PASSWORD)) is not None
    assert store.calls["user_credentials"] == 3


async def test_cache_is_bounded(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    for name in ("a", "b", "c"):
        store.add_user(name, password_hash)
    auth = make(store, passwords, cache_entries=2)
    for name in ("a", "b", "c"):
        await auth.authenticate(basic(name, PASSWORD))
    assert len(auth._credentials) == 2
    await auth.authenticate(basic("a", PASSWORD))  # evicted first: a miss
    assert store.calls["user_credentials"] == 4


async def test_epoch_move_drops_the_cache_within_the_poll_interval(
    passwords: Passwords, password_hash: str
) -> None:
    store = FakeAuthStore()
    store.add_user("alice", password_hash)
    clock = FakeClock()
    auth = make(store, passwords, clock)
    assert await auth.authenticate(basic("alice", PASSWORD)) is not None
    store.users["alice"] = (store.users["alice"][0], FAST.hash("another-password"), 2)
    store.bump()
    clock.t += 0.5
    assert await auth.authenticate(basic("alice", PASSWORD)) is not None  # not looked yet
    clock.t += 0.6
    assert await auth.authenticate(basic("alice", PASSWORD)) is None  # looked, dropped
    assert await auth.authenticate(basic("alice", "another-password")) is not None
    assert store.calls["auth_epochs"] == 2


async def test_a_miss_racing_a_drop_is_not_stored(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    store.add_user("alice", password_hash)
    auth = make(store, passwords)
    store.during_lookup = auth.forget_all  # a drop while the password is being verified
    assert await auth.authenticate(basic("alice", PASSWORD)) is not None
    assert len(auth._credentials) == 0
    store.during_lookup = None
    await auth.authenticate(basic("alice", PASSWORD))
    assert len(auth._credentials) == 1


async def test_epoch_outage_keeps_the_cache(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    store.add_user("alice", password_hash)
    clock = FakeClock()
    auth = make(store, passwords, clock)
    await auth.authenticate(basic("alice", PASSWORD))

    async def down() -> AuthEpochs:
        raise Unavailable("database down")

    store.auth_epochs = down  # type: ignore[method-assign]  # the database goes away
    clock.t += 5
    assert await auth.authenticate(basic("alice", PASSWORD)) is not None
    assert store.calls["user_credentials"] == 1


# ---------------------------------------------------------------- tokens


async def test_bearer_token(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    alice = store.add_user("alice", password_hash)
    token = new_token()
    store.add_token(alice, token)
    auth = make(store, passwords)
    credential = await auth.authenticate(f"Bearer {token}")
    assert credential is not None
    assert (credential.username, credential.method) == ("alice", "token")
    assert await auth.authenticate(f"Bearer {token}") == credential
    assert store.calls["token_credentials"] == 1
    assert await auth.authenticate(f"Bearer {new_token()}") is None  # unknown
    assert await auth.authenticate("Bearer not-a-token") is None  # never reaches the store
    assert store.calls["token_credentials"] == 2
    await asyncio.sleep(0)
    assert store.calls["touch_token"] == 1  # once a minute, not once a request


async def test_cached_token_stops_at_its_expiry(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    alice = store.add_user("alice", password_hash)
    token = new_token()
    store.add_token(alice, token, expires_at_ms=store.now_ms + 1000)
    auth = make(store, passwords)
    assert await auth.authenticate(f"Bearer {token}") is not None
    store.now_ms += 1000
    assert await auth.authenticate(f"Bearer {token}") is None


async def test_token_as_basic_password(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    alice = store.add_user("alice", password_hash)
    store.add_user("bob", password_hash)
    token = new_token()
    store.add_token(alice, token)
    auth = make(store, passwords)
    credential = await auth.authenticate(basic("alice", token))
    assert credential is not None and credential.method == "token"
    assert await auth.authenticate(basic("bob", token)) is None  # someone else's token


async def test_a_password_shaped_like_a_token_still_works(passwords: Passwords) -> None:
    store = FakeAuthStore()
    odd = new_token()
    store.add_user("carol", FAST.hash(odd))
    auth = make(store, passwords)
    credential = await auth.authenticate(basic("carol", odd))
    assert credential is not None and credential.method == "basic"


# ---------------------------------------------------------------- grants and decisions


async def test_grants_and_decisions(passwords: Passwords, password_hash: str) -> None:
    store = FakeAuthStore()
    alice = store.add_user("alice", password_hash)
    store.add_user("root", password_hash, admin=True)
    store.grants[alice.id] = [
        Grant(EXP, "1", Permission.EDIT),
        Grant(EXP, "2", Permission.DENY),
    ]
    auth = make(store, passwords, default_permission="NO_PERMISSIONS")
    credential = await auth.authenticate(basic("alice", PASSWORD))
    assert credential is not None
    assert store.calls["user_grants"] == 1  # loaded with the credential
    assert await auth.grants_for(credential) == store.grants[alice.id]
    assert await auth.decide_for(credential, EXP, "1") is Permission.EDIT
    assert await auth.decide_for(credential, EXP, "2") is Permission.DENY
    assert await auth.decide_for(credential, EXP, "3") is Permission.NO_PERMISSIONS
    assert store.calls["user_grants"] == 1
    admin = await auth.authenticate(basic("root", PASSWORD))
    assert admin is not None
    assert await auth.decide_for(admin, EXP, "2") is Permission.MANAGE
    reader = make(store, passwords)
    assert reader.default_permission is Permission.READ
    assert await reader.decide_for(credential, EXP, "3") is Permission.READ


async def test_grants_reload_for_a_newer_cred_version(
    passwords: Passwords, password_hash: str
) -> None:
    store = FakeAuthStore()
    alice = store.add_user("alice", password_hash)
    auth = make(store, passwords)
    credential = await auth.authenticate(basic("alice", PASSWORD))
    assert credential is not None
    newer = type(credential)(alice.id, "alice", False, credential.cred_version + 1, "basic")
    await auth.grants_for(newer)
    assert store.calls["user_grants"] == 2


async def test_a_grant_change_drops_grants_but_no_verified_password(
    password_hash: str,
) -> None:
    store = FakeAuthStore()
    alice = store.add_user("alice", password_hash)
    counted = Passwords(FAST)
    verified: list[str | None] = []
    real = counted.verify

    async def spy(password_hash: str | None, password: str) -> bool:
        verified.append(password_hash)
        return await real(password_hash, password)

    counted.verify = spy  # type: ignore[method-assign]  # a spy on the instance
    clock = FakeClock()
    auth = make(store, counted, clock, default_permission="NO_PERMISSIONS")
    credential = await auth.authenticate(basic("alice", PASSWORD))
    assert credential is not None and len(verified) == 1
    assert await auth.decide_for(credential, EXP, "1") is Permission.NO_PERMISSIONS

    store.grants[alice.id] = [Grant(EXP, "1", Permission.EDIT)]
    store.bump_grants()
    clock.t += 1.1
    again = await auth.authenticate(basic("alice", PASSWORD))
    assert again == credential  # still cached: the password was not verified again
    assert len(verified) == 1 and store.calls["user_credentials"] == 1
    assert await auth.decide_for(credential, EXP, "1") is Permission.EDIT  # grants re-read
    assert store.calls["user_grants"] == 2

    # A credential change still drops the verified password.
    store.bump("alice")
    clock.t += 1.1
    assert await auth.authenticate(basic("alice", PASSWORD)) is not None
    assert len(verified) == 2
    counted.close()


async def test_a_denial_rereads_grants_and_keeps_them(
    passwords: Passwords, password_hash: str
) -> None:
    store = FakeAuthStore()
    alice = store.add_user("alice", password_hash)
    clock = FakeClock()
    auth = make(store, passwords, clock, default_permission="NO_PERMISSIONS")
    credential = await auth.authenticate(basic("alice", PASSWORD))
    assert credential is not None
    # The creator's MANAGE moves no epoch: the cache does not know it yet.
    store.grants[alice.id] = [Grant(EXP, "7", Permission.MANAGE)]
    assert await auth.decide_for(credential, EXP, "7") is Permission.NO_PERMISSIONS
    clock.t += 0.5  # a later request: what the cache holds was read before it began
    assert await auth.access_for(credential).allows(EXP, "7", Permission.MANAGE)
    calls = store.calls["user_grants"]
    assert await auth.decide_for(credential, EXP, "7") is Permission.MANAGE
    assert store.calls["user_grants"] == calls  # kept: the next request asks nobody


async def test_a_grant_read_racing_a_grant_drop_is_not_stored(
    passwords: Passwords, password_hash: str
) -> None:
    store = FakeAuthStore()
    store.add_user("alice", password_hash)
    auth = make(store, passwords)
    credential = await auth.authenticate(basic("alice", PASSWORD))
    assert credential is not None
    real = store.user_grants

    async def racing(user_id: int) -> list[Grant]:
        found = await real(user_id)
        auth.forget_grants()  # the grants epoch moved while the store answered
        return found

    store.user_grants = racing  # type: ignore[method-assign]  # a drop during the read
    await auth._reload_grants(credential)
    assert len(auth._grants) == 0
    assert len(auth._credentials) == 1  # a grant drop keeps the verified credential


# ---------------------------------------------------------------- the first admin


async def test_ensure_admin(passwords: Passwords) -> None:
    store = FakeAuthStore()
    off = AuthSettings()
    assert await ensure_admin(cast(AuthStore, store), off, passwords) is False
    missing = AuthSettings(mode="on")
    with pytest.raises(AdminRequired, match="METRICGATE_AUTH_ADMIN_PASSWORD"):
        await ensure_admin(cast(AuthStore, store), missing, passwords)
    on = AuthSettings(mode="on", admin_password=PASSWORD)
    assert await ensure_admin(cast(AuthStore, store), on, passwords) is True
    user, stored_hash, _ = store.users["admin"]
    assert (
        user.is_admin and stored_hash is not None and await passwords.verify(stored_hash, PASSWORD)
    )
    assert await ensure_admin(cast(AuthStore, store), on, passwords) is False
    assert await ensure_admin(cast(AuthStore, store), missing, passwords) is False
    # The bootstrap admin is audited, by the system, with the process that made it.
    [(audit, details)] = store.admin_audit
    assert audit == AuditContext(None, None, "system", None)
    assert details is not None and details["via"] == "bootstrap"
    assert isinstance(details["pid"], int) and details["host"]


async def test_ensure_admin_refuses_a_name_held_by_a_non_admin(passwords: Passwords) -> None:
    store = FakeAuthStore()
    store.add_user("admin", None)
    on = AuthSettings(mode="on", admin_password=PASSWORD)
    with pytest.raises(AdminRequired, match="not one") as excinfo:
        await ensure_admin(cast(AuthStore, store), on, passwords)
    assert PASSWORD not in str(excinfo.value)
