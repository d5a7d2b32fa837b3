"""Search visibility (docs/design-auth.md B5): the mode a caller's grants fold into lets an id
through exactly when decide() gives READ on it."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from metricgate.domain.auth.permissions import Grant, Permission, ResourceType, decide
from metricgate.domain.auth.visibility import (
    NOTHING,
    UNRESTRICTED,
    Mode,
    Visibility,
    visibility,
)

EXP = ResourceType.EXPERIMENT
MODEL = ResourceType.REGISTERED_MODEL
WORKSPACE = ResourceType.WORKSPACE
P = Permission
IDS = ["1", "2", "3", "7", "42"]
UNNAMED = ["5", "999"]  # ids no grant in the strategies names

_resource_grants = st.builds(
    Grant,
    st.sampled_from([EXP, MODEL]),
    st.sampled_from([*IDS, "*"]),
    st.sampled_from([P.READ, P.USE, P.EDIT, P.MANAGE, P.DENY]),
)
_workspace_grants = st.builds(
    Grant, st.just(WORKSPACE), st.just("*"), st.sampled_from([P.USE, P.MANAGE])
)
_grant_lists = st.lists(
    st.one_of(_resource_grants, _resource_grants, _workspace_grants), max_size=8
)


@settings(max_examples=400, deadline=None)
@given(
    grants=_grant_lists,
    resource_type=st.sampled_from([EXP, MODEL]),
    default=st.sampled_from(list(Permission)),
    is_admin=st.booleans(),
)
def test_an_id_is_visible_exactly_when_decide_allows_read(
    grants: list[Grant], resource_type: ResourceType, default: Permission, is_admin: bool
) -> None:
    seen = visibility(grants, resource_type, default, is_admin=is_admin)
    for resource_id in IDS + UNNAMED:
        held = decide(grants, resource_type, resource_id, default, is_admin=is_admin)
        assert seen.allows(resource_id) == held.allows(P.READ), (resource_id, seen, held)
    # The listed ids are always some of the caller's own per-id patterns.
    assert seen.ids <= {g.pattern for g in grants if g.resource_type is resource_type}


@pytest.mark.parametrize(
    "grants, default, expected",
    [
        ([], P.READ, UNRESTRICTED),
        ([], P.NO_PERMISSIONS, NOTHING),
        ([Grant(WORKSPACE, "*", P.MANAGE)], P.NO_PERMISSIONS, UNRESTRICTED),
        ([Grant(WORKSPACE, "*", P.USE)], P.NO_PERMISSIONS, NOTHING),
        ([Grant(EXP, "*", P.DENY), Grant(EXP, "7", P.MANAGE)], P.READ, NOTHING),
        ([Grant(EXP, "7", P.DENY)], P.READ, Visibility(Mode.ALL_EXCEPT, frozenset({"7"}))),
        ([Grant(EXP, "*", P.READ), Grant(EXP, "7", P.DENY)], P.NO_PERMISSIONS,
         Visibility(Mode.ALL_EXCEPT, frozenset({"7"}))),
        ([Grant(EXP, "7", P.READ), Grant(EXP, "8", P.EDIT)], P.NO_PERMISSIONS,
         Visibility(Mode.ONLY, frozenset({"7", "8"}))),
        ([Grant(EXP, "7", P.READ), Grant(EXP, "7", P.DENY)], P.NO_PERMISSIONS, NOTHING),
        ([Grant(EXP, "7", P.READ)], P.READ, UNRESTRICTED),  # the id reads like any other
        ([Grant(MODEL, "m", P.READ)], P.NO_PERMISSIONS, NOTHING),  # another type's grant
    ],
)  # fmt: skip
def test_modes(grants: list[Grant], default: Permission, expected: Visibility) -> None:
    assert visibility(grants, EXP, default) == expected


def test_admin_sees_everything_despite_a_deny() -> None:
    grants = [Grant(EXP, "*", P.DENY)]
    assert visibility(grants, EXP, P.NO_PERMISSIONS, is_admin=True) == UNRESTRICTED


def test_experiment_ids_keep_only_canonical_int64_spellings() -> None:
    ids = frozenset({"7", "007", "x", "-3", "", "9223372036854775808", "12", "+4", "٣"})
    assert Visibility(Mode.ONLY, ids).experiment_ids() == [-3, 7, 12]


def test_names_are_sorted() -> None:
    assert Visibility(Mode.ONLY, frozenset({"b", "a"})).names() == ["a", "b"]
