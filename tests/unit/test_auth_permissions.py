"""Grant resolution (MLflow's model, docs/design-auth.md A3), the token format and input rules."""

from __future__ import annotations

import pytest

from metricgate.domain.auth.permissions import (
    Grant,
    Permission,
    ResourceType,
    check_grant,
    decide,
    parse_permission,
    parse_resource_type,
)
from metricgate.domain.auth.rules import (
    check_password,
    check_role_name,
    check_username,
    looks_like_token,
    token_digest,
)
from metricgate.domain.errors import InvalidParameter

EXP = ResourceType.EXPERIMENT
MODEL = ResourceType.REGISTERED_MODEL
P = Permission


def g(kind: ResourceType, pattern: str, level: Permission) -> Grant:
    return Grant(kind, pattern, level)


@pytest.mark.parametrize(
    "grants, default, expected",
    [
        ([], P.READ, P.READ),
        ([], P.NO_PERMISSIONS, P.NO_PERMISSIONS),
        ([g(EXP, "7", P.EDIT)], P.READ, P.EDIT),
        ([g(EXP, "*", P.EDIT), g(EXP, "7", P.READ)], P.READ, P.EDIT),  # highest of id and *
        ([g(EXP, "*", P.MANAGE), g(EXP, "7", P.DENY)], P.READ, P.DENY),  # DENY wins
        ([g(EXP, "7", P.DENY)], P.MANAGE, P.DENY),  # a veto even over a generous default
        ([g(EXP, "7", P.READ)], P.EDIT, P.EDIT),  # positive grants floor at the default
        ([g(EXP, "8", P.MANAGE)], P.NO_PERMISSIONS, P.NO_PERMISSIONS),  # another experiment
        ([g(MODEL, "7", P.MANAGE)], P.NO_PERMISSIONS, P.NO_PERMISSIONS),  # another type
        ([g(ResourceType.WORKSPACE, "*", P.MANAGE), g(EXP, "7", P.DENY)], P.READ, P.MANAGE),
    ],
)
def test_decide_follows_mlflow(
    grants: list[Grant], default: Permission, expected: Permission
) -> None:
    assert decide(grants, EXP, "7", default) is expected


def test_admins_hold_everything_even_under_deny() -> None:
    assert decide([g(EXP, "7", P.DENY)], EXP, "7", P.NO_PERMISSIONS, is_admin=True) is P.MANAGE


def test_levels_and_what_they_allow() -> None:
    assert [p.name for p in sorted(Permission, key=lambda p: p.priority)] == [
        "DENY",
        "NO_PERMISSIONS",
        "READ",
        "USE",
        "EDIT",
        "MANAGE",
    ]
    assert P.EDIT.allows(P.READ) and P.EDIT.allows(P.EDIT) and not P.EDIT.allows(P.MANAGE)
    assert not P.DENY.allows(P.READ) and not P.NO_PERMISSIONS.allows(P.READ)
    assert (P.USE.can_read, P.USE.can_use, P.USE.can_update) == (True, True, False)
    assert P.MANAGE.can_delete and P.MANAGE.can_manage and not P.EDIT.can_delete


def test_parsing_levels_and_types() -> None:
    assert parse_permission("EDIT") is P.EDIT
    assert parse_permission("NO_PERMISSIONS", default_allowed=True) is P.NO_PERMISSIONS
    for bad in ("NO_PERMISSIONS", "edit", "", None, 3):
        with pytest.raises(InvalidParameter, match="Invalid permission"):
            parse_permission(bad)
    assert parse_resource_type("registered_model") is MODEL
    with pytest.raises(InvalidParameter, match="expected one of experiment, registered_model"):
        parse_resource_type("workspace")
    assert parse_resource_type("workspace", workspace_allowed=True) is ResourceType.WORKSPACE


def test_grant_shapes() -> None:
    check_grant(ResourceType.WORKSPACE, "*", P.MANAGE)
    with pytest.raises(InvalidParameter):
        check_grant(ResourceType.WORKSPACE, "7", P.MANAGE)
    with pytest.raises(InvalidParameter):
        check_grant(ResourceType.WORKSPACE, "*", P.EDIT)
    with pytest.raises(InvalidParameter):
        check_grant(EXP, "7", P.NO_PERMISSIONS)
    with pytest.raises(InvalidParameter):
        check_grant(EXP, "", P.READ)


def test_input_rules() -> None:
    assert check_username("alice") == "alice"
    for bad in ("", "  ", None, "a:b", "a\nb", "x" * 257):
        with pytest.raises(InvalidParameter):
            check_username(bad)
    assert check_password("twelve chars") == "twelve chars"
    with pytest.raises(InvalidParameter, match="at least 12 characters"):
        check_password("short")
    with pytest.raises(InvalidParameter, match="reserved"):
        check_role_name("__user_3__")


def test_token_format() -> None:
    token = "mgt_" + "A" * 43
    assert looks_like_token(token)
    assert not looks_like_token("mgt_" + "A" * 42) and not looks_like_token("Basic abc")
    assert len(token_digest(token)) == 32 and token_digest(token) != token_digest(token + "x")
