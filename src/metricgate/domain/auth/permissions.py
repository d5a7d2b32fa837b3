"""Permission levels, resource types and grant resolution, as MLflow 3.17.2's auth app defines
them (mlflow/server/auth/permissions.py and requirements.py; docs/design-auth.md A3).

Resolution for one resource, in order:
1. an admin holds everything (DENY included: it is a veto on users, not on admins);
2. a workspace-wide MANAGE grant (``workspace``, ``*``) is MANAGE everywhere;
3. the caller's grants on the resource's id and on ``*`` fold together: any DENY wins, otherwise
   the highest level (``*`` EDIT with an id READ is EDIT);
4. a positive result is never lower than the server's default permission;
5. no grant at all: the default.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from metricgate.domain.errors import InvalidParameter

WILDCARD = "*"


class Permission(enum.Enum):
    # value: (priority, can_read, can_use, can_update, can_delete, can_manage)
    DENY = (-1, False, False, False, False, False)
    NO_PERMISSIONS = (0, False, False, False, False, False)
    READ = (1, True, False, False, False, False)
    USE = (2, True, True, False, False, False)
    EDIT = (3, True, True, True, False, False)
    MANAGE = (4, True, True, True, True, True)

    def __init__(self, priority: int, *flags: bool) -> None:
        # A plain attribute: every access check compares these, and an enum member's ``value``
        # is a Python-level call in 3.11.
        self.priority = priority

    @property
    def can_read(self) -> bool:
        return self.value[1]

    @property
    def can_use(self) -> bool:
        return self.value[2]

    @property
    def can_update(self) -> bool:
        return self.value[3]

    @property
    def can_delete(self) -> bool:
        return self.value[4]

    @property
    def can_manage(self) -> bool:
        return self.value[5]

    def allows(self, needed: Permission) -> bool:
        """Whether holding ``self`` satisfies a route that needs ``needed`` (READ..MANAGE).
        DENY ranks below every level a route needs."""
        return self.priority >= needed.priority > 0


# Levels a grant may carry (MLflow's RESOURCE_GRANTABLE_PERMISSIONS); NO_PERMISSIONS is only a
# default. The workspace type takes only USE and MANAGE.
GRANTABLE = (
    Permission.READ,
    Permission.USE,
    Permission.EDIT,
    Permission.MANAGE,
    Permission.DENY,
)


class ResourceType(enum.Enum):
    EXPERIMENT = "experiment"
    REGISTERED_MODEL = "registered_model"
    WORKSPACE = "workspace"


@dataclass(frozen=True, slots=True)
class Grant:
    """One permission on one resource pattern (an id, a model name, or ``*``), from any of the
    caller's roles (a per-user grant sits on the user's hidden role)."""

    resource_type: ResourceType
    pattern: str
    permission: Permission


def parse_permission(value: object, *, default_allowed: bool = False) -> Permission:
    """A level named by a client; NO_PERMISSIONS only where a default is being set."""
    allowed = GRANTABLE + ((Permission.NO_PERMISSIONS,) if default_allowed else ())
    if isinstance(value, str) and value in Permission.__members__:
        level = Permission[value]
        if level in allowed:
            return level
    names = ", ".join(level.name for level in allowed)
    raise InvalidParameter(f"Invalid permission {value!r}: expected one of {names}")


def parse_resource_type(value: object, *, workspace_allowed: bool = False) -> ResourceType:
    allowed = [ResourceType.EXPERIMENT, ResourceType.REGISTERED_MODEL]
    if workspace_allowed:
        allowed.append(ResourceType.WORKSPACE)
    for kind in allowed:
        if value == kind.value:
            return kind
    names = ", ".join(kind.value for kind in allowed)
    raise InvalidParameter(f"Invalid resource_type {value!r}: expected one of {names}")


def check_grant(resource_type: ResourceType, pattern: str, permission: Permission) -> None:
    """A grant's shape: workspace grants are ``*`` with USE or MANAGE; none is NO_PERMISSIONS."""
    if permission not in GRANTABLE:
        raise InvalidParameter(f"Permission {permission.name} cannot be granted")
    if resource_type is ResourceType.WORKSPACE:
        if pattern != WILDCARD:
            raise InvalidParameter("A workspace grant applies to '*' only")
        if permission not in (Permission.USE, Permission.MANAGE):
            raise InvalidParameter("A workspace grant is USE or MANAGE")
    if not pattern:
        raise InvalidParameter("resource_id must not be empty")


def is_workspace_admin(grants: Iterable[Grant]) -> bool:
    return any(
        g.resource_type is ResourceType.WORKSPACE
        and g.pattern == WILDCARD
        and g.permission is Permission.MANAGE
        for g in grants
    )


def fold(levels: Iterable[Permission]) -> Permission | None:
    """Several grants on one key: DENY wins, otherwise the highest; None when there are none."""
    best: Permission | None = None
    for level in levels:
        if level is Permission.DENY:
            return Permission.DENY
        if best is None or level.priority > best.priority:
            best = level
    return best


def decide(
    grants: Iterable[Grant],
    resource_type: ResourceType,
    resource_id: str,
    default: Permission,
    *,
    is_admin: bool = False,
) -> Permission:
    """The caller's level on one resource (this module's docstring gives the order)."""
    if is_admin:
        return Permission.MANAGE
    grants = tuple(grants)
    if is_workspace_admin(grants):
        return Permission.MANAGE
    found = fold(
        g.permission
        for g in grants
        if g.resource_type is resource_type and g.pattern in (resource_id, WILDCARD)
    )
    if found is None:
        return default
    if found is Permission.DENY:
        return found
    return found if found.priority >= default.priority else default
