"""Failed-login limits, ``login.failed`` audit rows and same-process invalidation, in process
with auth on over real PostgreSQL and Redis (docs/design-auth.md B3, B7): wrong passwords past
the limit answer 429 ``REQUEST_LIMIT_EXCEEDED`` with ``Retry-After`` (the right password too,
until the window ends); a cached caller never asks the limiter; behind a trusted proxy the
client is the ``X-Forwarded-For`` hop; a revoked token, a changed password, a deleted user or
a revoked grant stop counting on this process at once, without waiting for the epoch poll."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.auth_support import ADMIN_PASSWORD, PASSWORD, auth_settings, basic, store_user
from tests.api.conftest import Api, Reply

from metricgate.api.keys import SERVICE
from metricgate.auth.authenticator import Authenticator
from metricgate.auth.limiter import LoginLimiter
from metricgate.config import Settings
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.observability import METRICS
from metricgate.stores.base import AuditEntry, AuthStore

V2 = "/api/2.0/mlflow"
V3 = "/api/3.0/mlflow"
OWN = "/api/2.0/metricgate"
SEARCH = "/api/2.0/mlflow/experiments/search"


@pytest.fixture
def settings(db_url: str, redis_client_url: str, tmp_path: Path) -> Settings:
    return auth_settings(
        db_url,
        redis_client_url,
        tmp_path / "artifacts",
        METRICGATE_AUTH_LOGIN_LIMIT_PER_USER="3",
        METRICGATE_AUTH_LOGIN_USER_WINDOW_S="1",
        METRICGATE_AUTH_LOGIN_LIMIT_PER_ADDRESS="5",
        METRICGATE_AUTH_LOGIN_ADDRESS_WINDOW_S="60",
        METRICGATE_TRUSTED_PROXIES="127.0.0.1,::1",
    )


@pytest.fixture
def store(client: TestClient[Any, Any]) -> AuthStore:
    auth = client.app[SERVICE].auth
    assert auth is not None
    return auth


@pytest.fixture
def authenticator(client: TestClient[Any, Any]) -> Authenticator:
    found = client.app[SERVICE].authenticator
    assert found is not None
    return found


@pytest.fixture
def limiter(client: TestClient[Any, Any]) -> LoginLimiter:
    found = client.app[SERVICE].login_limiter
    assert found is not None
    return found


async def search(
    api: Api, headers: dict[str, str], source: str = "10.1.1.1", request_id: str | None = None
) -> Reply:
    # Every request comes from 127.0.0.1, a trusted proxy here: the hop names the client, and
    # its X-Request-Id is the request's.
    more = {"X-Request-Id": request_id} if request_id else {}
    return await api.request(
        "GET",
        SEARCH,
        params={"max_results": "1"},
        headers={**headers, "X-Forwarded-For": source, **more},
    )


async def failed_logins(store: AuthStore, action: str = "login.failed") -> list[AuditEntry]:
    entries, _ = await store.list_audit(100, None, action=action)
    return sorted(entries, key=lambda e: e.id)


def refusals() -> float:
    return METRICS.registry.get_sample_value("metricgate_login_refusals_total") or 0.0


def limited(reply: Reply) -> int:
    reply.error(429, "REQUEST_LIMIT_EXCEEDED")
    return int(reply.headers["Retry-After"])


async def test_wrong_passwords_past_the_limit_answer_429_until_the_window_ends(
    client: TestClient[Any, Any], store: AuthStore
) -> None:
    api = Api(client, prefix="")
    await store_user(store, "alice")
    refused_before = refusals()
    for _ in range(3):
        (await search(api, basic("alice", "wrong-password-1"))).error(401, "UNAUTHENTICATED")
    assert limited(await search(api, basic("alice", "wrong-password-1"))) == 1
    # The right password too: the check comes before any password is verified.
    assert limited(await search(api, basic("alice", PASSWORD))) >= 1
    # The per-user count: the same name from another address is refused as well.
    limited(await search(api, basic("alice", PASSWORD), source="10.2.2.2"))
    await asyncio.sleep(1.1)
    (await search(api, basic("alice", PASSWORD))).ok()
    # A success cleared the count: three more failures before the next refusal.
    for _ in range(3):
        (await search(api, basic("alice", "wrong-password-1"), source="10.3.3.3")).error(401)
    limited(await search(api, basic("alice", "wrong-password-1"), source="10.3.3.3"))

    rows = await failed_logins(store)
    assert [r.details["reason"] for r in rows] == ["wrong password"] * 6
    # One row per lockout, written by the failure that filled the window; none per refusal.
    locked = await failed_logins(store, "login.locked")
    assert [(r.client_addr, r.details) for r in locked] == [
        ("10.1.1.1", {"scope": "user", "failures": 3, "retry_after_s": 1}),
        ("10.3.3.3", {"scope": "user", "failures": 3, "retry_after_s": 1}),
    ]
    assert refusals() - refused_before == 4
    rows += locked
    assert {r.actor for r in rows} == {"alice"}
    assert {r.actor_id for r in rows} == {None}
    assert {r.auth_method for r in rows} == {"basic"}
    assert [r.client_addr for r in rows[:6]] == ["10.1.1.1"] * 3 + ["10.3.3.3"] * 3
    assert not any(PASSWORD in repr(r) or "wrong-password" in repr(r) for r in rows)


async def test_the_address_limit_goes_by_the_forwarded_client_behind_a_trusted_proxy(
    client: TestClient[Any, Any], store: AuthStore
) -> None:
    api = Api(client, prefix="")
    await store_user(store, "bob")
    for i in range(5):  # unknown names: each its own user key, one address
        (await search(api, basic(f"nobody{i}", PASSWORD), source="10.9.9.9")).error(401)
    limited(await search(api, basic("bob", PASSWORD), source="10.9.9.9"))
    refused_before = refusals()
    for i in range(20):  # a flood while locked out: refused and counted, not audited each
        limited(await search(api, basic(f"flood{i}", PASSWORD), source="10.9.9.9"))
    assert refusals() - refused_before == 20
    # Another client behind the same proxy is not held back; a spoofed left-most hop is not
    # what counts either (the proxy appended the real one).
    (await search(api, basic("bob", PASSWORD), source="10.8.8.8")).ok()
    # (bob's password is cached now: a cached caller is never limited, so a wrong one shows it)
    spoofed = await search(api, basic("bob", "wrong-password-1"), source="10.8.8.8, 10.9.9.9")
    limited(spoofed)
    rows = await failed_logins(store)
    assert [r.details["reason"] for r in rows] == ["unknown user"] * 5
    assert {r.client_addr for r in rows} == {"10.9.9.9"}
    [locked] = await failed_logins(store, "login.locked")
    assert (locked.actor, locked.client_addr) == ("nobody4", "10.9.9.9")
    assert locked.details["scope"] == "address" and locked.details["failures"] == 5
    assert 58 <= locked.details["retry_after_s"] <= 60


async def test_a_cached_caller_makes_no_limiter_call(
    client: TestClient[Any, Any],
    store: AuthStore,
    limiter: LoginLimiter,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = Api(client, prefix="")
    await store_user(store, "carol")
    checks: list[tuple[str, str | None]] = []
    real_check = limiter.check

    async def counting_check(address: str, username: str | None) -> float | None:
        checks.append((address, username))
        return await real_check(address, username)

    monkeypatch.setattr(limiter, "check", counting_check)
    for _ in range(5):
        (await search(api, basic("carol", PASSWORD))).ok()
    assert checks == [("10.1.1.1", "carol")]  # the first request verified, the rest were cached
    wrong = await search(api, basic("carol", "wrong-password-1"), request_id="edge-42")
    wrong.error(401)
    assert wrong.headers["X-Request-Id"] == "edge-42"  # the proxy's id, kept end to end
    bearer = {"Authorization": "Bearer mgt_not-a-real-token"}
    malformed = await search(api, bearer, request_id="no spaces\tor tabs")
    malformed.error(401)
    (await search(api, {})).error(401)  # no header: no login attempt, nothing asked
    assert checks[1:] == [("10.1.1.1", "carol"), ("10.1.1.1", None)]
    rows = await failed_logins(store)
    assert [r.details["reason"] for r in rows] == ["wrong password", "unknown token"]
    # Not one that is no id: the server's own instead.
    assert [r.request_id for r in rows] == ["edge-42", malformed.headers["X-Request-Id"]]
    assert len(rows[1].request_id or "") == 32


async def test_dead_tokens_are_audited_with_their_reason(
    client: TestClient[Any, Any], store: AuthStore
) -> None:
    api = Api(client, prefix="")
    await store_user(store, "dave")
    created = await api.request(
        "POST", f"{OWN}/tokens/create", body={"name": "ci"}, headers=basic("dave", PASSWORD)
    )
    token = created.ok()["secret"]
    token_id = created.json["token"]["id"]
    (await search(api, {"Authorization": f"Bearer {token}"})).ok()
    revoked = await api.request(
        "POST", f"{OWN}/tokens/revoke", body={"token_id": token_id}, headers=basic("dave", PASSWORD)
    )
    revoked.ok()
    (await search(api, {"Authorization": f"Bearer {token}"})).error(401)
    (await search(api, basic("dave", token))).error(401)
    rows = await failed_logins(store)
    assert [(r.actor, r.auth_method, r.details["reason"]) for r in rows] == [
        (None, "token", "revoked token"),
        ("dave", "basic", "revoked token"),
    ]
    assert not any(token in repr(r) for r in rows)


# ------------------------------------------------------------------ same-process invalidation


@pytest.fixture
def no_epoch_poll(authenticator: Authenticator, monkeypatch: pytest.MonkeyPatch) -> Authenticator:
    """Only the handlers' own forget can take access away within these tests."""
    monkeypatch.setattr(authenticator, "_epoch_poll_s", 3600.0)
    return authenticator


async def test_a_change_holds_at_once_on_the_process_that_made_it(
    client: TestClient[Any, Any], store: AuthStore, no_epoch_poll: Authenticator
) -> None:
    api = Api(client, prefix="")
    admin = basic("admin", ADMIN_PASSWORD)
    for name in ("erin", "frank", "gina"):
        await store_user(store, name)
    (await search(api, admin)).ok()  # the first request reads the epochs
    token = (
        await api.request(
            "POST", f"{OWN}/tokens/create", body={"name": "t"}, headers=basic("erin", PASSWORD)
        )
    ).ok()
    (await search(api, {"Authorization": f"Bearer {token['secret']}"})).ok()
    (await search(api, basic("frank", PASSWORD))).ok()
    (await search(api, basic("gina", PASSWORD))).ok()

    (
        await api.request(
            "POST", f"{OWN}/tokens/revoke", body={"token_id": token["token"]["id"]}, headers=admin
        )
    ).ok()
    (await search(api, {"Authorization": f"Bearer {token['secret']}"})).error(401)

    new_password = "another-password-1"
    (
        await api.request(
            "PATCH",
            f"{V2}/users/update-password",
            body={"username": "frank", "password": new_password},
            headers=admin,
        )
    ).ok()
    (await search(api, basic("frank", PASSWORD))).error(401)
    (await search(api, basic("frank", new_password))).ok()

    (
        await api.request("DELETE", f"{V2}/users/delete", body={"username": "gina"}, headers=admin)
    ).ok()
    (await search(api, basic("gina", PASSWORD))).error(401)


async def test_a_revoked_grant_holds_at_once_on_the_process_that_made_it(
    client: TestClient[Any, Any], store: AuthStore, no_epoch_poll: Authenticator
) -> None:
    api = Api(client, prefix="")
    admin = basic("admin", ADMIN_PASSWORD)
    experiment = await api.request(
        "POST", f"{V2}/experiments/create", body={"name": "inv"}, headers=admin
    )
    experiment_id = experiment.ok()["experiment_id"]
    await store_user(store, "hank")
    await store.grant_user(
        "hank", ResourceType.EXPERIMENT, experiment_id, Permission.EDIT, replace=False
    )
    hank = basic("hank", PASSWORD)
    rename = {"experiment_id": experiment_id, "new_name": "inv-2"}
    (await api.request("POST", f"{V2}/experiments/update", body=rename, headers=hank)).ok()

    revoke = {"username": "hank", "resource_type": "experiment", "resource_id": experiment_id}
    (await api.request("POST", f"{V3}/users/permissions/revoke", body=revoke, headers=admin)).ok()
    rename = {"experiment_id": experiment_id, "new_name": "inv-3"}
    (await api.request("POST", f"{V2}/experiments/update", body=rename, headers=hank)).error(403)


async def test_the_web_uis_logout_is_a_401_that_counts_nothing(
    client: TestClient[Any, Any], store: AuthStore
) -> None:
    # MLflow's UI logs out with a throwaway ``mlflow-logged-out-<random>`` as username and
    # password (main.js): an office behind one address must not lock itself out by logging out.
    api = Api(client, prefix="")
    await store_user(store, "carol")
    refused_before = refusals()
    for i in range(8):  # past the per-address limit of 5
        name = f"mlflow-logged-out-{i:04x}"
        reply = await api.request(
            "GET", "/ajax-api/2.0/mlflow/users/current", headers=basic(name, name)
        )
        reply.error(401, "UNAUTHENTICATED")
        assert reply.headers["WWW-Authenticate"] == 'Basic realm="mlflow"'
    assert await failed_logins(store) == [] and await failed_logins(store, "login.locked") == []
    assert refusals() == refused_before
    # The address was not locked: a real user behind it still logs in.
    (await search(api, basic("carol", PASSWORD), source="127.0.0.1")).ok()
    # A name of that shape with another password is an ordinary failed login.
    name = "mlflow-logged-out-x"
    (await search(api, basic(name, "other-password-1"))).error(401)
    assert [r.actor for r in await failed_logins(store)] == [name]
    # And nobody can take such a name.
    created = await api.post(
        f"{V2}/users/create",
        {"username": "mlflow-logged-out-me", "password": PASSWORD},
        headers=basic("admin", ADMIN_PASSWORD),
    )
    created.error(400, "INVALID_PARAMETER_VALUE")
