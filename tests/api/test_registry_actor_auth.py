"""With access control on, the registry's audit actor is the authenticated caller, recorded as
verified: neither the Basic user name alone nor ``X-Metricgate-User`` can claim another name.
(With it off, tests/api/test_registry_history.py: what the client claims, unverified.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.auth_support import ADMIN_PASSWORD, PASSWORD, auth_settings, basic, store_user
from tests.api.conftest import Api

from metricgate.api.keys import SERVICE
from metricgate.api.registry_codec import USER_HEADER
from metricgate.auth.tokens import new_token
from metricgate.config import Settings
from metricgate.domain.auth.rules import token_digest, token_hint
from metricgate.stores.base import AuthStore

HISTORY = "/api/2.0/metricgate/registry/history"


@pytest.fixture
def settings(db_url: str, redis_client_url: str, tmp_path: Path) -> Settings:
    return auth_settings(db_url, redis_client_url, tmp_path / "artifacts")


async def _events(api: Api, name: str) -> list[dict[str, Any]]:
    query = {"name": name, "max_results": "100"}
    reply = await api.get(HISTORY, query, absolute=True, headers=basic("admin", ADMIN_PASSWORD))
    events: list[dict[str, Any]] = reply.ok()["events"]
    return list(reversed(events))  # oldest first


async def test_the_actor_is_the_authenticated_caller(
    client: TestClient[Any, Any], api: Api
) -> None:
    store: AuthStore | None = client.app[SERVICE].auth
    assert store is not None
    alice = await store_user(store, "alice")
    token = new_token()
    await store.create_token(alice.id, "ci", token_digest(token), token_hint(token), None)
    claims = {USER_HEADER: "mallory"}  # a header anyone can send

    reply = await api.post(
        "/registered-models/create", {"name": "m"}, headers={**basic("alice", PASSWORD), **claims}
    )
    assert reply.ok()["registered_model"].get("user_id") == "alice"
    (
        await api.post(
            "/model-versions/create",
            {"name": "m", "source": "s3://bucket/m"},
            headers={"Authorization": f"Bearer {token}", **claims},
        )
    ).ok()
    (
        await api.patch(
            "/registered-models/update",
            {"name": "m", "description": "d"},
            headers=basic("admin", ADMIN_PASSWORD),
        )
    ).ok()

    events = await _events(api, "m")
    assert [(e["actor"], e["actor_verified"]) for e in events] == [
        ("alice", True),
        ("alice", True),
        ("admin", True),
    ]
