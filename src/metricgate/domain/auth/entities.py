"""Users, roles, grants on roles, role assignments and API tokens, as the auth store keeps them.
Field names follow MLflow's auth entities (mlflow/server/auth/entities.py), whose JSON the
auth API returns."""

from __future__ import annotations

from dataclasses import dataclass

from metricgate.domain.auth.permissions import Permission, ResourceType

DEFAULT_WORKSPACE = "default"
# A per-user grant sits on a hidden role of this name (MLflow's synthetic user role); the web UI
# recognises such roles by the same pattern, and no other role may start with the prefix.
USER_ROLE_PREFIX = "__user_"


def user_role_name(user_id: int) -> str:
    return f"{USER_ROLE_PREFIX}{user_id}__"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class RolePermission:
    id: int
    role_id: int
    resource_type: ResourceType
    resource_pattern: str
    permission: Permission


@dataclass(frozen=True, slots=True)
class Role:
    id: int
    name: str
    workspace: str
    description: str | None
    permissions: tuple[RolePermission, ...] = ()


@dataclass(frozen=True, slots=True)
class Assignment:
    id: int
    user_id: int
    role_id: int


@dataclass(frozen=True, slots=True)
class Credential:
    """What a verified password or token says about its holder, cached per process.
    ``cred_version`` moves whenever what the credential proves changes (password, admin flag,
    token revoke), which is how a cached entry learns it is stale (grants: the grants epoch)."""

    user_id: int
    username: str
    is_admin: bool
    cred_version: int
    method: str  # "basic" or "token"


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    user_id: int
    name: str
    hint: str  # the token's first characters, for listings
    created_at_ms: int
    expires_at_ms: int | None
    last_used_at_ms: int | None
    revoked_at_ms: int | None
