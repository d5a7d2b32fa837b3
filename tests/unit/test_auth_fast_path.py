"""The synchronous cache answers on every authenticated request (docs/design-auth.md B4):
``Authenticator.cached`` (a verified, live credential, no epoch look due) and
``CallerAccess.cached_allows`` (a level the cached grants decide), and the levels remembered per
grant list. Each answers only what the full (awaiting) path would answer, and says None where
that path has to run: a poll due, an expired token, a dropped cache, a denial from grants older
than the request. The store is a fake with the methods these paths call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest
from tests.fake_clock import FakeClock

from metricgate.auth import authenticator as authenticator_module
from metricgate.auth.authenticator import (
    LEVELS_PER_USER,
    AuthChange,
    Authenticator,
    BearerToken,
)
from metricgate.auth.passwords import Passwords
from metricgate.config import AuthSettings
from metricgate.domain.auth.entities import ApiToken, Credential, User
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.auth.rules import token_digest
from metricgate.stores.base import AuthEpochs, AuthStore, TokenCredentials

EXP = ResourceType.EXPERIMENT
TOKEN = "mgt_" + "A" * 43
OTHER_TOKEN = "mgt_" + "B" * 43
ALICE = User(1, "alice", False)


@dataclass
class Store:
    grants: dict[int, list[Grant]] = field(default_factory=dict)
    expires_at_ms: int | None = None
    token_reads: int = 0
    grant_reads: int = 0
    epoch_reads: int = 0

    async def token_credentials(self, digest: bytes) -> TokenCredentials | None:
        self.token_reads += 1
        if digest != token_digest(TOKEN):
            return None
        token = ApiToken(7, ALICE.id, "ci", TOKEN[:10], 0, self.expires_at_ms, None, None)
        return TokenCredentials(ALICE, token, 1)

    async def dead_token_reason(self, digest: bytes) -> str | None:
        return None

    async def touch_token(self, token_id: int) -> None:
        return None

    async def user_grants(self, user_id: int) -> list[Grant]:
        self.grant_reads += 1
        return list(self.grants.get(user_id, []))

    async def auth_epochs(self) -> AuthEpochs:
        self.epoch_reads += 1
        return AuthEpochs(credentials=1, grants=1)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords()  # tokens only: never used to hash here


@dataclass
class Setup:
    store: Store
    clock: FakeClock
    wall_ms: list[int]
    auth: Authenticator


@pytest.fixture
def setup(passwords: Passwords) -> Setup:
    store, clock, wall_ms = Store(), FakeClock(), [1_000_000]
    auth = Authenticator(
        cast(AuthStore, store),
        AuthSettings(mode="on", default_permission="NO_PERMISSIONS"),
        passwords=passwords,
        epoch_poll_s=1.0,
        clock=clock,
        wall_clock_ms=lambda: wall_ms[0],
    )
    return Setup(store, clock, wall_ms, auth)


async def logged_in(s: Setup) -> Credential:
    found = await s.auth.authenticate(f"Bearer {TOKEN}")
    assert found is not None
    return found


async def test_cached_answers_a_verified_caller_without_the_store(setup: Setup) -> None:
    s = setup
    assert s.auth.cached(BearerToken(TOKEN)) is None  # never verified: the full path runs
    credential = await logged_in(s)
    reads = (s.store.token_reads, s.store.epoch_reads)
    for _ in range(3):
        assert s.auth.cached(BearerToken(TOKEN)) == credential
    assert (s.store.token_reads, s.store.epoch_reads) == reads
    assert s.auth.cached(BearerToken(OTHER_TOKEN)) is None  # another secret: not this entry
    assert s.auth.cached(BearerToken("not-a-token")) is None


async def test_cached_steps_aside_when_the_epochs_are_due(setup: Setup) -> None:
    s = setup
    await logged_in(s)
    s.clock.t += 1.0  # the poll is due: only the awaiting path may look (and drop)
    assert s.auth.cached(BearerToken(TOKEN)) is None
    epoch_reads = s.store.epoch_reads
    await logged_in(s)
    assert s.store.epoch_reads == epoch_reads + 1
    assert s.auth.cached(BearerToken(TOKEN)) is not None


async def test_cached_refuses_an_expired_token_and_a_dropped_cache(setup: Setup) -> None:
    s = setup
    s.store.expires_at_ms = s.wall_ms[0] + 5_000
    await logged_in(s)
    assert s.auth.cached(BearerToken(TOKEN)) is not None
    s.wall_ms[0] += 5_000  # expired now: the cache must not outlive the token
    assert s.auth.cached(BearerToken(TOKEN)) is None

    s.store.expires_at_ms = None
    s.wall_ms[0] += 1
    await logged_in(s)
    assert s.auth.cached(BearerToken(TOKEN)) is not None
    s.auth.notice(AuthChange.CREDENTIALS)  # a password change, a revocation elsewhere
    assert s.auth.cached(BearerToken(TOKEN)) is None


async def test_cached_allows_answers_only_what_the_cache_decides(setup: Setup) -> None:
    s = setup
    s.store.grants[ALICE.id] = [Grant(EXP, "7", Permission.EDIT)]
    credential = await logged_in(s)  # the grants are read with the login
    s.clock.t += 0.01  # a later request
    request = s.auth.access_for(credential)
    assert request.cached_allows(EXP, "7", Permission.EDIT) is True
    assert request.cached_allows(EXP, "7", Permission.MANAGE) is None  # older than the request
    assert await request.allows(EXP, "7", Permission.MANAGE) is False  # re-read: still no
    assert request.cached_allows(EXP, "7", Permission.MANAGE) is False  # now read during it
    assert request.cached_allows(EXP, "8", Permission.READ) is False

    s.auth.notice(AuthChange.USER_GRANTS, ALICE.id)  # a creator's grant: dropped
    assert s.auth.access_for(credential).cached_allows(EXP, "7", Permission.READ) is None
    assert await s.auth.access_for(credential).allows(EXP, "7", Permission.READ)
    s.clock.t += 1.0  # the poll is due
    assert s.auth.access_for(credential).cached_allows(EXP, "7", Permission.READ) is None
    admin = Credential(9, "root", True, 1, "basic")
    assert s.auth.access_for(admin).cached_allows(EXP, "7", Permission.MANAGE) is True


async def test_remembered_levels_are_bounded_and_die_with_their_grants(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = setup
    monkeypatch.setattr(authenticator_module, "LEVELS_PER_USER", 8)
    assert LEVELS_PER_USER > 8
    s.store.grants[ALICE.id] = [Grant(EXP, "*", Permission.READ)]
    credential = await logged_in(s)
    request = s.auth.access_for(credential)
    for experiment in range(20):
        assert request.cached_allows(EXP, str(experiment), Permission.READ) is True
    cached = s.auth._grants.get(ALICE.id)
    assert cached is not None and 0 < len(cached.levels) <= 8

    # A changed grant list is a new list: nothing remembered from the old one answers.
    s.store.grants[ALICE.id] = [Grant(EXP, "*", Permission.READ), Grant(EXP, "3", Permission.DENY)]
    s.auth.notice(AuthChange.GRANTS)
    s.clock.t += 1.0
    request = s.auth.access_for(credential)
    assert await request.allows(EXP, "3", Permission.READ) is False
    assert request.cached_allows(EXP, "3", Permission.READ) is False
    assert request.cached_allows(EXP, "4", Permission.READ) is True
