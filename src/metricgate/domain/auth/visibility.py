"""Which resources of one type a caller may READ, as one predicate a search can put in its SQL
(docs/design-auth.md B5).

The caller's grants of one type fold into a mode, so that an id is visible exactly when
``decide(grants, type, id, default, is_admin=...)`` allows READ:

- ALL: an admin, a workspace MANAGE, or every id readable (no predicate at all);
- NONE: a ``*`` DENY, or nothing readable (an empty page, no query);
- ALL_EXCEPT(ids): ``*`` or the default reads, so every id does but those whose own grants
  fold to something that does not (a per-id DENY);
- ONLY(ids): neither ``*`` nor the default reads, so only the ids whose own grants do.

Only per-id grants can make one id differ from any other, so the ids listed are a subset of the
caller's per-id patterns: typically a few hundred, whatever the number of rows searched.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from metricgate.domain.auth.permissions import (
    WILDCARD,
    Grant,
    Permission,
    ResourceType,
    decide,
    is_workspace_admin,
)

_INT64_MAX = 2**63 - 1


class Mode(enum.Enum):
    ALL = "all"
    NONE = "none"
    ALL_EXCEPT = "all_except"
    ONLY = "only"


@dataclass(frozen=True, slots=True)
class Visibility:
    """The ids of one resource type a caller may read: ``ids`` are the exceptions
    (ALL_EXCEPT) or the only readable ones (ONLY); empty for ALL and NONE."""

    mode: Mode
    ids: frozenset[str] = frozenset()

    def allows(self, resource_id: str) -> bool:
        if self.mode is Mode.ALL:
            return True
        if self.mode is Mode.NONE:
            return False
        if self.mode is Mode.ALL_EXCEPT:
            return resource_id not in self.ids
        return resource_id in self.ids

    def experiment_ids(self) -> list[int]:
        """``ids`` as experiment ids, sorted. A pattern that is not the canonical spelling of an
        int64 (``007``, ``x``) names no experiment: decide() compares the id's own spelling,
        ``str(experiment_id)``, so such a grant never applies and is left out."""
        found = []
        for pattern in self.ids:
            digits = pattern.removeprefix("-")
            if digits.isascii() and digits.isdigit():
                value = int(pattern)
                if str(value) == pattern and -_INT64_MAX <= value <= _INT64_MAX:
                    found.append(value)
        return sorted(found)

    def names(self) -> list[str]:
        """``ids`` as registered-model names, sorted (deterministic SQL parameters)."""
        return sorted(self.ids)


UNRESTRICTED = Visibility(Mode.ALL)
NOTHING = Visibility(Mode.NONE)


def visibility(
    grants: Iterable[Grant],
    resource_type: ResourceType,
    default: Permission,
    *,
    is_admin: bool = False,
) -> Visibility:
    """Fold the caller's grants of ``resource_type`` and the server's default into a mode (this
    module's docstring)."""
    if is_admin:
        return UNRESTRICTED
    grants = tuple(grants)
    if is_workspace_admin(grants):
        return UNRESTRICTED
    relevant = tuple(g for g in grants if g.resource_type is resource_type)
    wildcard = tuple(g for g in relevant if g.pattern == WILDCARD)
    if any(g.permission is Permission.DENY for g in wildcard):
        return NOTHING  # a ``*`` DENY folds into every id's grants and wins
    # Whether an id no per-id grant names is readable: through ``*`` or the default.
    base_reads = _reads(decide(wildcard, resource_type, WILDCARD, default))
    patterns = {g.pattern for g in relevant if g.pattern != WILDCARD}
    # Each named id decided exactly as a request for it would be.
    differing = frozenset(
        p for p in patterns if _reads(decide(relevant, resource_type, p, default)) != base_reads
    )
    if base_reads:
        return Visibility(Mode.ALL_EXCEPT, differing) if differing else UNRESTRICTED
    return Visibility(Mode.ONLY, differing) if differing else NOTHING


def _reads(level: Permission) -> bool:
    return level.allows(Permission.READ)
