"""The authenticator's grant cache owns its staleness (docs/design-auth.md B3): a per-user drop
after a creator's grant, the notices that tell other processes, and CallerAccess's bounded
re-reads (a denial once per request unless the grants were read during it; a search that only
per-id grants open when they are older than the recheck interval). The store is a fake with the
methods these paths call.

Also the synchronous cache answers on every authenticated request (design B4):
``Authenticator.cached`` (a verified, live credential, no epoch look due) and
``CallerAccess.cached_allows`` (a level the cached grants decide), and the levels remembered per
grant list. Each answers only what the full (awaiting) path would answer, and says None where
that path has to run: a poll due, an expired token, a dropped cache, a denial from grants older
than the request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest
from tests.fake_clock import FakeClock

from metricgate.auth import authenticator as authenticator_module
from metricgate.auth.authenticator import LEVELS_PER_USER, AuthChange, Authenticator, BearerToken
from metricgate.auth.notices import decode_notice, encode_notice
from metricgate.auth.passwords import Passwords
from metricgate.config import AuthSettings
from metricgate.domain.auth.entities import ApiToken, Credential, User
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.auth.rules import token_digest
from metricgate.domain.auth.visibility import UNRESTRICTED, Mode
from metricgate.stores.base import AuthEpochs, AuthStore, TokenCredentials

EXP = ResourceType.EXPERIMENT
ALICE = Credential(1, "alice", False, 1, "basic")
BOB = Credential(2, "bob", False, 1, "basic")
ROOT = Credential(3, "root", True, 1, "basic")
TOKEN = "mgt_" + "A" * 43
OTHER_TOKEN = "mgt_" + "B" * 43
ALICE_USER = User(1, "alice", False)


@dataclass
class Store:
    grants: dict[int, list[Grant]] = field(default_factory=dict)
    reads: list[int] = field(default_factory=list)  # user ids whose grants were read
    epoch_reads: int = 0
    expires_at_ms: int | None = None  # TOKEN's
    token_reads: int = 0

    async def token_credentials(self, digest: bytes) -> TokenCredentials | None:
        self.token_reads += 1
        if digest != token_digest(TOKEN):
            return None
        token = ApiToken(7, ALICE_USER.id, "ci", TOKEN[:10], 0, self.expires_at_ms, None, None)
        return TokenCredentials(ALICE_USER, token, 1)

    async def dead_token_reason(self, digest: bytes) -> str | None:
        return None

    async def touch_token(self, token_id: int) -> None:
        return None

    async def user_grants(self, user_id: int) -> list[Grant]:
        self.reads.append(user_id)
        return list(self.grants.get(user_id, []))

    async def auth_epochs(self) -> AuthEpochs:
        self.epoch_reads += 1
        return AuthEpochs(credentials=1, grants=1)


@pytest.fixture(scope="module")
def passwords() -> Passwords:
    return Passwords()  # never used to hash here


def make(
    store: Store, clock: FakeClock, passwords: Passwords, default: str = "NO_PERMISSIONS"
) -> Authenticator:
    return Authenticator(
        cast(AuthStore, store),
        AuthSettings(mode="on", default_permission=default),
        passwords=passwords,
        epoch_poll_s=3600.0,  # the epochs play no part here
        clock=clock,
    )


async def test_a_denial_rereads_once_per_request(passwords: Passwords) -> None:
    store, clock = Store(), FakeClock()
    auth = make(store, clock, passwords)
    assert await auth.grants_for(ALICE) == []  # cached, as a previous request left it
    store.grants[1] = [Grant(EXP, "7", Permission.MANAGE)]  # the creator's, elsewhere
    clock.t += 5
    request = auth.access_for(ALICE)
    assert await request.allows(EXP, "7", Permission.MANAGE)  # re-read on the denial
    assert not await request.allows(EXP, "8", Permission.READ)
    assert not await request.allows(EXP, "9", Permission.READ)
    assert store.reads == [1, 1]  # one re-read for the request, however many denials
    assert await auth.access_for(ALICE).allows(EXP, "7", Permission.READ)
    assert store.reads == [1, 1]  # kept for the next request
    clock.t += 1
    assert not await auth.access_for(ALICE).allows(EXP, "8", Permission.READ)
    assert store.reads == [1, 1, 1]  # a later request's denial reads again


async def test_no_reread_for_grants_read_during_the_request(passwords: Passwords) -> None:
    store, clock = Store(), FakeClock()
    auth = make(store, clock, passwords)
    request = auth.access_for(ALICE)
    clock.t += 0.01
    assert not await request.allows(EXP, "7", Permission.READ)  # a miss: read now
    assert store.reads == [1]  # already holds everything committed before the request


async def test_a_restricted_search_rereads_only_grants_older_than_the_recheck(
    passwords: Passwords,
) -> None:
    store, clock = Store(), FakeClock()
    auth = make(store, clock, passwords)
    assert (await auth.access_for(ALICE).visibility(EXP)).mode is Mode.NONE
    assert store.reads == [1]
    store.grants[1] = [Grant(EXP, "7", Permission.MANAGE)]  # the creator's, elsewhere
    clock.t += 0.5
    assert (await auth.access_for(ALICE).visibility(EXP)).mode is Mode.NONE
    assert store.reads == [1]  # younger than a second: the cache answers
    clock.t += 0.6
    request = auth.access_for(ALICE)
    seen = await request.visibility(EXP)
    assert (seen.mode, seen.ids) == (Mode.ONLY, frozenset({"7"}))
    assert await request.visibility(EXP) is seen
    assert store.reads == [1, 1]
    # Where the default reads, a new row shows without its grant: no re-read.
    reader = make(store, clock, passwords, default="READ")
    assert (await reader.access_for(BOB).visibility(EXP)).mode is Mode.ALL
    clock.t += 5
    assert (await reader.access_for(BOB).visibility(EXP)).mode is Mode.ALL
    assert store.reads == [1, 1, 2]


async def test_admins_read_nothing(passwords: Passwords) -> None:
    store, clock = Store(), FakeClock()
    request = make(store, clock, passwords).access_for(ROOT)
    assert await request.allows(EXP, "1", Permission.MANAGE)
    assert await request.visibility(EXP) is UNRESTRICTED
    assert store.reads == []


async def test_a_creators_grant_drops_that_user_and_is_announced(passwords: Passwords) -> None:
    store, clock = Store(), FakeClock()
    auth = make(store, clock, passwords)
    told: list[tuple[AuthChange, int | None]] = []
    auth.announce_with(lambda change, user_id: told.append((change, user_id)))
    await auth.grants_for(ALICE)
    await auth.grants_for(BOB)
    epoch_reads = store.epoch_reads
    store.grants[1] = [Grant(EXP, "7", Permission.MANAGE)]
    auth.user_grants_changed(ALICE.user_id)
    assert told == [(AuthChange.USER_GRANTS, 1)]
    # The same process sees it at once, a search included (no re-read needed for that).
    assert (await auth.access_for(ALICE).visibility(EXP)).ids == {"7"}
    await auth.grants_for(BOB)
    assert store.reads == [1, 2, 1]  # bob's list stayed
    assert store.epoch_reads == epoch_reads  # no epoch moved, none read


async def test_changes_are_announced_and_notices_drop_what_they_name(
    passwords: Passwords,
) -> None:
    store, clock = Store(), FakeClock()
    auth = make(store, clock, passwords)
    told: list[tuple[AuthChange, int | None]] = []
    auth.announce_with(lambda change, user_id: told.append((change, user_id)))
    await auth.changed(credentials=True)
    await auth.changed(credentials=False)
    assert told == [(AuthChange.CREDENTIALS, None), (AuthChange.GRANTS, None)]

    await auth.grants_for(ALICE)
    epoch_reads = store.epoch_reads
    auth.notice(AuthChange.USER_GRANTS, BOB.user_id)  # someone else's: alice's stays
    await auth.grants_for(ALICE)
    assert store.reads == [1]
    auth.notice(AuthChange.GRANTS)  # another process's grant change
    await auth.grants_for(ALICE)
    assert store.reads == [1, 1]
    assert store.epoch_reads == epoch_reads + 1  # and the epochs are read again at once


async def test_a_failing_announcer_does_not_fail_the_change(passwords: Passwords) -> None:
    store, clock = Store(), FakeClock()
    auth = make(store, clock, passwords)

    def broken(change: AuthChange, user_id: int | None) -> None:
        raise RuntimeError("no loop")

    auth.announce_with(broken)
    await auth.grants_for(ALICE)
    auth.user_grants_changed(ALICE.user_id)
    await auth.changed(credentials=False)
    await auth.grants_for(ALICE)
    assert store.reads == [1, 1]


def test_notice_wire_format() -> None:
    data = encode_notice(AuthChange.USER_GRANTS, 12, "abc")
    assert decode_notice(data) == (AuthChange.USER_GRANTS, 12, "abc")
    assert decode_notice(encode_notice(AuthChange.CREDENTIALS, None, "x")) == (
        AuthChange.CREDENTIALS,
        None,
        "x",
    )
    for bad in (
        b"",
        b"not json",
        b"[]",
        b'{"kind": "everything"}',
        b'{"kind": "user_grants"}',  # names no user
        b'{"kind": "grants", "user": "12"}',
        b'{"kind": "grants", "user": true}',
    ):
        assert decode_notice(bad) is None, bad


# ---------------------------------------------------------------- the synchronous answers


@dataclass
class Setup:
    store: Store
    clock: FakeClock
    wall_ms: list[int]
    auth: Authenticator


@pytest.fixture
def fast(passwords: Passwords) -> Setup:
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


async def test_cached_answers_a_verified_caller_without_the_store(fast: Setup) -> None:
    s = fast
    assert s.auth.cached(BearerToken(TOKEN)) is None  # never verified: the full path runs
    credential = await logged_in(s)
    reads = (s.store.token_reads, s.store.epoch_reads)
    for _ in range(3):
        assert s.auth.cached(BearerToken(TOKEN)) == credential
    assert (s.store.token_reads, s.store.epoch_reads) == reads
    assert s.auth.cached(BearerToken(OTHER_TOKEN)) is None  # another secret: not this entry
    assert s.auth.cached(BearerToken("not-a-token")) is None


async def test_cached_steps_aside_when_the_epochs_are_due(fast: Setup) -> None:
    s = fast
    await logged_in(s)
    s.clock.t += 1.0  # the poll is due: only the awaiting path may look (and drop)
    assert s.auth.cached(BearerToken(TOKEN)) is None
    epoch_reads = s.store.epoch_reads
    await logged_in(s)
    assert s.store.epoch_reads == epoch_reads + 1
    assert s.auth.cached(BearerToken(TOKEN)) is not None


async def test_cached_refuses_an_expired_token_and_a_dropped_cache(fast: Setup) -> None:
    s = fast
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


async def test_cached_allows_answers_only_what_the_cache_decides(fast: Setup) -> None:
    s = fast
    s.store.grants[ALICE_USER.id] = [Grant(EXP, "7", Permission.EDIT)]
    credential = await logged_in(s)  # the grants are read with the login
    s.clock.t += 0.01  # a later request
    request = s.auth.access_for(credential)
    assert request.cached_allows(EXP, "7", Permission.EDIT) is True
    assert request.cached_allows(EXP, "7", Permission.MANAGE) is None  # older than the request
    assert await request.allows(EXP, "7", Permission.MANAGE) is False  # re-read: still no
    assert request.cached_allows(EXP, "7", Permission.MANAGE) is False  # now read during it
    assert request.cached_allows(EXP, "8", Permission.READ) is False

    s.auth.notice(AuthChange.USER_GRANTS, ALICE_USER.id)  # a creator's grant: dropped
    assert s.auth.access_for(credential).cached_allows(EXP, "7", Permission.READ) is None
    assert await s.auth.access_for(credential).allows(EXP, "7", Permission.READ)
    s.clock.t += 1.0  # the poll is due
    assert s.auth.access_for(credential).cached_allows(EXP, "7", Permission.READ) is None
    admin = Credential(9, "root", True, 1, "basic")
    assert s.auth.access_for(admin).cached_allows(EXP, "7", Permission.MANAGE) is True


async def test_remembered_levels_are_bounded_and_die_with_their_grants(
    fast: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = fast
    monkeypatch.setattr(authenticator_module, "LEVELS_PER_USER", 8)
    assert LEVELS_PER_USER > 8
    s.store.grants[ALICE_USER.id] = [Grant(EXP, "*", Permission.READ)]
    credential = await logged_in(s)
    request = s.auth.access_for(credential)
    for experiment in range(20):
        assert request.cached_allows(EXP, str(experiment), Permission.READ) is True
    cached = s.auth._grants.get(ALICE_USER.id)
    assert cached is not None and 0 < len(cached.levels) <= 8

    # A changed grant list is a new list: nothing remembered from the old one answers.
    s.store.grants[ALICE_USER.id] = [
        Grant(EXP, "*", Permission.READ),
        Grant(EXP, "3", Permission.DENY),
    ]
    s.auth.notice(AuthChange.GRANTS)
    s.clock.t += 1.0
    request = s.auth.access_for(credential)
    assert await request.allows(EXP, "3", Permission.READ) is False
    assert request.cached_allows(EXP, "3", Permission.READ) is False
    assert request.cached_allows(EXP, "4", Permission.READ) is True
