"""Shared helpers for API tests with auth on: credentials headers, cheap password hashes,
settings that turn auth on, users made straight in the store, and a client that calls as one."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import argon2
from aiohttp.test_utils import TestClient
from tests.api.conftest import Api, Reply

from metricgate.config import Settings
from metricgate.domain.auth.entities import User
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.stores.base import AuthStore

ADMIN = "admin"
ADMIN_PASSWORD = "admin-password-0123"
PASSWORD = "user-password-0123"
# Users made straight in the store get cheap KDF parameters (the hash carries them, so checking
# them is cheap too); the admin is made by the server at start with the real ones.
FAST = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
# The same cost for the server's own hashes (the admin's, passwords set through the API): with
# the production cost a store-made FAST hash would be re-hashed at its first login, and every
# later uncached check of it (a wrong password, a login after a credentials change) would cost
# tens of milliseconds of CPU.
FAST_COST_ENV = {
    "METRICGATE_AUTH_PASSWORD_TIME_COST": str(FAST.time_cost),
    "METRICGATE_AUTH_PASSWORD_MEMORY_KIB": str(FAST.memory_cost),
    "METRICGATE_AUTH_PASSWORD_PARALLELISM": str(FAST.parallelism),
}


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    raw = f"{username}:{password}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def auth_settings(db_url: str, redis_url: str, artifacts: Path, **env: str) -> Settings:
    """Auth on, the admin's password set; ``env`` adds METRICGATE_* variables."""
    return Settings.from_env(
        {
            "METRICGATE_AUTH": "on",
            "METRICGATE_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            **FAST_COST_ENV,
            **env,
        },
        database_url=db_url,
        redis_url=redis_url,
        artifacts_uri="file://" + str(artifacts),
    )


async def store_user(
    store: AuthStore,
    name: str,
    grants: tuple[tuple[ResourceType, str, Permission], ...] = (),
) -> User:
    """A user with PASSWORD (hashed with FAST) and ``grants``, made straight in the store."""
    made = await store.create_user(name, FAST.hash(PASSWORD), False)
    for resource_type, resource_id, permission in grants:
        await store.grant_user(name, resource_type, resource_id, permission, replace=False)
    return made


class As(Api):
    """MLflow REST calls with one user's credentials on every request."""

    def __init__(self, client: TestClient[Any, Any], headers: dict[str, str]) -> None:
        super().__init__(client)
        self.auth_headers = headers

    async def request(self, method: str, path: str, **kw: Any) -> Reply:
        kw["headers"] = {**self.auth_headers, **(kw.get("headers") or {})}
        return await super().request(method, path, **kw)


async def user(client: TestClient[Any, Any], store: AuthStore, name: str) -> As:
    """A new user made in the store, and a client that calls as them."""
    await store_user(store, name)
    return As(client, basic(name, PASSWORD))
