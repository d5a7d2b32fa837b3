"""The authenticator over PgAuthStore and real PostgreSQL: Basic with a password or a token,
Bearer tokens (live, revoked, expired), the cache answering without the store, invalidation
through auth_state's two epochs within about a second (a grant change verifies no password
again), grants, the notices on Redis pub/sub that carry changes between processes (and what
happens without Redis), and the first admin under concurrent starts."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

import argon2
import pytest
import redis.asyncio as aioredis
from tests.integration.conftest import open_database

from metricgate.auth.authenticator import Authenticator
from metricgate.auth.bootstrap import ensure_admin
from metricgate.auth.notices import AuthNotices
from metricgate.auth.passwords import Passwords
from metricgate.auth.tokens import new_token
from metricgate.config import AuthSettings
from metricgate.domain.auth.entities import User
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.auth.rules import token_digest, token_hint
from metricgate.stores.base import AuthStore
from metricgate.stores.postgres.auth import PgAuthStore
from metricgate.stores.postgres.pool import Database

PASSWORD = "s3cret-password-1"
EXP = ResourceType.EXPERIMENT
# Cheaper than the defaults so the module stays quick; the code path is the same.
FAST = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


class Counting:
    """Every AuthStore call passes through, counted by method name."""

    def __init__(self, inner: PgAuthStore) -> None:
        self.inner = inner
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self.inner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return await method(*args, **kwargs)

        return counted

    def total(self, *names: str) -> int:
        return sum(self.calls.get(n, 0) for n in names)


@pytest.fixture
async def passwords() -> AsyncIterator[Passwords]:
    pool = Passwords(FAST)
    yield pool
    pool.close()


@pytest.fixture
async def store(db: Database) -> Counting:
    return Counting(PgAuthStore(db))


@pytest.fixture
async def alice(store: Counting, passwords: Passwords) -> User:
    user: User = await store.inner.create_user("alice", await passwords.hash(PASSWORD), False)
    return user


def _authenticator(store: Counting, passwords: Passwords, **settings: Any) -> Authenticator:
    return Authenticator(
        cast(AuthStore, store), AuthSettings(mode="on", **settings), passwords=passwords
    )


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


async def _make_token(store: Counting, user: User, expires_at_ms: int | None = None) -> str:
    token = new_token()
    await store.inner.create_token(
        user.id, f"t{token[-6:]}", token_digest(token), token_hint(token), expires_at_ms
    )
    return token


async def _until_refused(auth: Authenticator, header: str, limit_s: float) -> float:
    """Seconds until ``header`` stops authenticating; fails past ``limit_s``."""
    start = time.monotonic()
    while await auth.authenticate(header) is not None:
        assert time.monotonic() - start < limit_s, "still accepted"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_basic_password(store: Counting, passwords: Passwords, alice: User) -> None:
    auth = _authenticator(store, passwords)
    credential = await auth.authenticate(basic("alice", PASSWORD))
    assert credential is not None
    assert (credential.user_id, credential.username, credential.is_admin) == (
        alice.id,
        "alice",
        False,
    )
    assert credential.method == "basic"
    assert await auth.authenticate(basic("alice", "wrong-password-1")) is None
    assert await auth.authenticate(basic("nobody", PASSWORD)) is None
    assert await auth.authenticate(None) is None


async def test_cache_hit_does_not_query_the_store(
    store: Counting, passwords: Passwords, alice: User
) -> None:
    auth = _authenticator(store, passwords)
    token = await _make_token(store, alice)
    assert await auth.authenticate(basic("alice", PASSWORD)) is not None
    assert await auth.authenticate(f"Bearer {token}") is not None
    await asyncio.sleep(0.05)  # the token's last-use write, at most once a minute
    before = dict(store.calls)
    for _ in range(50):
        assert await auth.authenticate(basic("alice", PASSWORD)) is not None
        assert await auth.authenticate(f"Bearer {token}") is not None
    await asyncio.sleep(0.05)
    lookups = ("user_credentials", "token_credentials", "user_grants", "touch_token")
    assert {n: store.calls.get(n, 0) for n in lookups} == {n: before.get(n, 0) for n in lookups}
    # Only the epoch look, at most once a second, while the loop ran.
    assert store.calls.get("auth_epochs", 0) - before.get("auth_epochs", 0) <= 2


async def test_tokens_live_revoked_expired(
    store: Counting, passwords: Passwords, alice: User
) -> None:
    auth = _authenticator(store, passwords)
    live = await _make_token(store, alice)
    credential = await auth.authenticate(f"Bearer {live}")
    assert credential is not None and credential.username == "alice"
    assert credential.method == "token"

    past = int(time.time() * 1000) - 1000
    expired = await _make_token(store, alice, expires_at_ms=past)
    assert await auth.authenticate(f"Bearer {expired}") is None
    assert await auth.authenticate(f"Bearer {new_token()}") is None

    soon = await _make_token(store, alice, expires_at_ms=int(time.time() * 1000) + 700)
    assert await auth.authenticate(f"Bearer {soon}") is not None
    await asyncio.sleep(0.8)
    assert await auth.authenticate(f"Bearer {soon}") is None  # the cached entry expires too

    tokens = await store.inner.list_tokens(alice.id)
    live_id = next(t.id for t in tokens if t.hint == token_hint(live))
    await store.inner.revoke_token(alice.id, live_id)
    assert await _until_refused(auth, f"Bearer {live}", 2.5) <= 1.5
    fresh = _authenticator(store, passwords)
    assert await fresh.authenticate(f"Bearer {live}") is None


async def test_basic_with_a_token_as_password(
    store: Counting, passwords: Passwords, alice: User
) -> None:
    await store.inner.create_user("bob", await passwords.hash(PASSWORD), False)
    auth = _authenticator(store, passwords)
    token = await _make_token(store, alice)
    credential = await auth.authenticate(basic("alice", token))
    assert credential is not None
    assert (credential.username, credential.method) == ("alice", "token")
    assert await auth.authenticate(basic("bob", token)) is None


async def test_password_change_lands_within_a_second(
    store: Counting, passwords: Passwords, alice: User
) -> None:
    auth = _authenticator(store, passwords)
    old, new = basic("alice", PASSWORD), basic("alice", "another-password-2")
    assert await auth.authenticate(old) is not None
    await store.inner.set_password("alice", await passwords.hash("another-password-2"))
    assert await _until_refused(auth, old, 2.5) <= 1.5
    assert await auth.authenticate(new) is not None


def _counting_verify(passwords: Passwords) -> list[str | None]:
    """Every password verification from now on, by the hash it was checked against."""
    verified: list[str | None] = []
    real = passwords.verify

    async def spy(password_hash: str | None, password: str) -> bool:
        verified.append(password_hash)
        return await real(password_hash, password)

    passwords.verify = spy  # type: ignore[method-assign]  # a spy on this test's pool
    return verified


async def _until_level(
    auth: Authenticator, header: str, resource_id: str, level: Permission, limit_s: float
) -> float:
    """Seconds until the caller of ``header`` holds ``level`` on experiment ``resource_id``."""
    start = time.monotonic()
    while True:
        credential = await auth.authenticate(header)
        assert credential is not None
        if await auth.decide_for(credential, EXP, resource_id) is level:
            return time.monotonic() - start
        assert time.monotonic() - start < limit_s, "not yet"
        await asyncio.sleep(0.05)


async def test_grants_and_their_change(store: Counting, passwords: Passwords, alice: User) -> None:
    auth = _authenticator(store, passwords, default_permission="NO_PERMISSIONS")
    verified = _counting_verify(passwords)
    header = basic("alice", PASSWORD)
    credential = await auth.authenticate(header)
    assert credential is not None
    assert await auth.decide_for(credential, EXP, "1") is Permission.NO_PERMISSIONS
    # A grant, its change and its removal move the grants epoch: each lands within about a
    # second, and none of them makes the authenticator verify alice's password again.
    await store.inner.grant_user("alice", EXP, "1", Permission.EDIT, replace=False)
    assert await _until_level(auth, header, "1", Permission.EDIT, 2.5) <= 1.5
    assert [g.pattern for g in await auth.grants_for(credential)] == ["1"]
    await store.inner.grant_user("alice", EXP, "1", Permission.READ, replace=True)
    assert await _until_level(auth, header, "1", Permission.READ, 2.5) <= 1.5
    await store.inner.revoke_user("alice", EXP, "1")
    assert await _until_level(auth, header, "1", Permission.NO_PERMISSIONS, 2.5) <= 1.5
    role = await store.inner.create_role("readers", "default", None)
    await store.inner.add_role_permission(role.id, EXP, "*", Permission.READ)
    await store.inner.assign_role("alice", role.id)
    assert await _until_level(auth, header, "2", Permission.READ, 2.5) <= 1.5
    await store.inner.unassign_role("alice", role.id)
    assert await _until_level(auth, header, "2", Permission.NO_PERMISSIONS, 2.5) <= 1.5
    assert len(verified) == 1
    assert store.calls["user_credentials"] == 1


async def test_a_creators_grant_moves_no_epoch(
    store: Counting, passwords: Passwords, alice: User
) -> None:
    auth = _authenticator(store, passwords, default_permission="NO_PERMISSIONS")
    verified = _counting_verify(passwords)
    credential = await auth.authenticate(basic("alice", PASSWORD))
    assert credential is not None
    epochs = await store.inner.auth_epochs()
    await store.inner.grant_creator_manage(alice.id, EXP, "5")
    assert await store.inner.auth_epochs() == epochs
    # Nothing told this process: its cached grants lack it until a request's denial re-reads
    # them (CallerAccess), and then keep it.
    assert await auth.decide_for(credential, EXP, "5") is Permission.NO_PERMISSIONS
    assert await auth.access_for(credential).allows(EXP, "5", Permission.MANAGE)
    reads = store.calls["user_grants"]
    assert await auth.decide_for(credential, EXP, "5") is Permission.MANAGE
    assert store.calls["user_grants"] == reads
    assert len(verified) == 1


async def test_first_admin_created_once_under_concurrent_starts(
    db_url: str, passwords: Passwords
) -> None:
    settings = AuthSettings(mode="on", admin_username="root", admin_password=PASSWORD)
    gateways = [await open_database(db_url, max_size=5) for _ in range(3)]
    try:
        stores = [PgAuthStore(g) for g in gateways]
        created = await asyncio.gather(*(ensure_admin(s, settings, passwords) for s in stores))
        assert sorted(created) == [False, False, True]
        assert await ensure_admin(stores[0], settings, passwords) is False
        users = await stores[0].list_users()
        assert [(u.username, u.is_admin) for u in users] == [("root", True)]
        auth = Authenticator(stores[0], settings, passwords=passwords)
        admin = await auth.authenticate(basic("root", PASSWORD))
        assert admin is not None and admin.is_admin
        assert await auth.decide_for(admin, EXP, "42") is Permission.MANAGE
    finally:
        for g in gateways:
            await g.aclose()


# ---------------------------------------------------------------- notices between processes


def _process(store: Counting, passwords: Passwords) -> Authenticator:
    """One process's authenticator whose epoch poll would take an hour: only a notice can
    tell it of a change in time."""
    settings = AuthSettings(mode="on", default_permission="NO_PERMISSIONS")
    return Authenticator(cast(AuthStore, store), settings, passwords=passwords, epoch_poll_s=3600)


@contextlib.asynccontextmanager
async def _notices(auth: Authenticator, url: str, **options: Any) -> AsyncIterator[AuthNotices]:
    publisher = aioredis.Redis.from_url(url)
    notices = AuthNotices(auth, publisher, url, **options)
    task = asyncio.create_task(notices.run())
    try:
        yield notices
    finally:
        notices.stop()
        await asyncio.wait_for(task, 5)
        await publisher.aclose()


async def _within(limit_s: float, check: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + limit_s
    while not await check():
        assert time.monotonic() < deadline, "not within the limit"
        await asyncio.sleep(0.02)


async def test_a_notice_reaches_the_other_process_before_its_poll(
    store: Counting, passwords: Passwords, alice: User, redis_client_url: str
) -> None:
    one, two = _process(store, passwords), _process(store, passwords)
    old, new = basic("alice", PASSWORD), basic("alice", "another-password-2")
    async with _notices(one, redis_client_url), _notices(two, redis_client_url) as heard:
        await asyncio.wait_for(heard.subscribed.wait(), 5)
        assert await one.authenticate(old) is not None
        credential = await two.authenticate(old)
        assert credential is not None
        assert await two.decide_for(credential, EXP, "5") is Permission.NO_PERMISSIONS

        async def holds(resource_id: str, level: Permission) -> bool:
            return await two.decide_for(credential, EXP, resource_id) is level

        # The creator's MANAGE, given through process one: process two's cached list (asked
        # without any re-read) drops it on the notice.
        await store.inner.grant_creator_manage(alice.id, EXP, "5")
        one.user_grants_changed(alice.id)
        await _within(2.0, lambda: holds("5", Permission.MANAGE))
        await store.inner.grant_user("alice", EXP, "6", Permission.READ, replace=False)
        await one.changed(credentials=False)
        await _within(2.0, lambda: holds("6", Permission.READ))
        await store.inner.set_password("alice", await passwords.hash("another-password-2"))
        await one.changed(credentials=True)
        await _within(2.0, lambda: _refused(two, old))
        assert await two.authenticate(new) is not None


async def _refused(auth: Authenticator, header: str) -> bool:
    return await auth.authenticate(header) is None


async def test_the_subscription_comes_back_after_its_connection_drops(
    store: Counting, passwords: Passwords, alice: User, redis_client_url: str
) -> None:
    one, two = _process(store, passwords), _process(store, passwords)
    options = {"retry_min_s": 0.05}
    async with _notices(one, redis_client_url), _notices(two, redis_client_url, **options) as n:
        await asyncio.wait_for(n.subscribed.wait(), 5)
        credential = await two.authenticate(basic("alice", PASSWORD))
        assert credential is not None
        killer = aioredis.Redis.from_url(redis_client_url)
        try:
            assert await killer.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
        finally:
            await killer.aclose()
        await store.inner.grant_creator_manage(alice.id, EXP, "5")

        async def told() -> bool:
            # Notices sent while the subscription is down are lost (at most once): send again.
            one.user_grants_changed(alice.id)
            await asyncio.sleep(0.05)
            return await two.decide_for(credential, EXP, "5") is Permission.MANAGE

        await _within(3.0, told)


async def test_without_redis_authentication_and_changes_go_on(
    store: Counting, passwords: Passwords, alice: User, caplog: pytest.LogCaptureFixture
) -> None:
    auth = _authenticator(store, passwords, default_permission="NO_PERMISSIONS")
    away = "redis://127.0.0.1:1/0"  # nothing listens on port 1: refused at once
    caplog.set_level(logging.WARNING, logger="metricgate.auth.notices")
    async with _notices(auth, away, retry_min_s=0.02, retry_max_s=0.05, publish_timeout_s=0.2):
        header = basic("alice", PASSWORD)
        credential = await auth.authenticate(header)
        assert credential is not None
        await store.inner.grant_creator_manage(alice.id, EXP, "5")
        start = time.monotonic()
        auth.user_grants_changed(alice.id)
        await auth.changed(credentials=False)
        assert time.monotonic() - start < 0.5  # nobody waits for the notice
        assert await auth.decide_for(credential, EXP, "5") is Permission.MANAGE
        await asyncio.sleep(0.4)  # the subscription fails and retries meanwhile
        assert await auth.authenticate(header) == credential
    outages = [r for r in caplog.records if "access-change notices" in r.getMessage()]
    assert len(outages) == 1  # logged once, however many attempts failed
