"""The authenticator's grant cache owns its staleness (docs/design-auth.md B3): a per-user drop
after a creator's grant, the notices that tell other processes, and CallerAccess's bounded
re-reads (a denial once per request unless the grants were read during it; a search that only
per-id grants open when they are older than the recheck interval). The store is a fake with the
two methods these paths call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

import pytest
from tests.fake_clock import FakeClock

from metricgate.auth.authenticator import AuthChange, Authenticator
from metricgate.auth.notices import decode_notice, encode_notice
from metricgate.auth.passwords import Passwords
from metricgate.config import AuthSettings
from metricgate.domain.auth.entities import Credential
from metricgate.domain.auth.permissions import Grant, Permission, ResourceType
from metricgate.domain.auth.visibility import UNRESTRICTED, Mode
from metricgate.stores.base import AuthEpochs, AuthStore

EXP = ResourceType.EXPERIMENT
ALICE = Credential(1, "alice", False, 1, "basic")
BOB = Credential(2, "bob", False, 1, "basic")
ROOT = Credential(3, "root", True, 1, "basic")


@dataclass
class Store:
    grants: dict[int, list[Grant]] = field(default_factory=dict)
    reads: list[int] = field(default_factory=list)  # user ids whose grants were read
    epoch_reads: int = 0

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
