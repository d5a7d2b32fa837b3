"""The webhook REST endpoints: CRUD, the secret shown once, MLflow-format errors."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.webhooks.conftest import HOOKS, Hooks


def _assert_error(status: int, body: Any, expected_status: int, code: str) -> str:
    assert status == expected_status, body
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    return body["message"]  # type: ignore[no-any-return]


async def test_create_get_list_update_delete(hooks: Hooks) -> None:
    status, created = await hooks.call(
        "POST", "", {"url": "https://ci.example.com/hook", "events": ["model_version.*"], "model_name": "churn",
                     "description": "promotions to CI"},
    )  # fmt: skip
    assert status == 200, created
    webhook = created["webhook"]
    assert created["secret"].startswith("whsec_")
    assert webhook["url"] == "https://ci.example.com/hook" and webhook["events"] == [
        "model_version.*"
    ]
    assert webhook["active"] is True and webhook["model_name"] == "churn"
    assert webhook["description"] == "promotions to CI"
    assert isinstance(webhook["id"], str) and webhook["created_at"] > 0

    status, got = await hooks.call("GET", f"/{webhook['id']}")
    assert status == 200 and got == {"webhook": webhook}  # never the secret again
    status, listed = await hooks.call("GET")
    assert status == 200 and listed == {"webhooks": [webhook]}
    assert "secret" not in str(listed)

    status, updated = await hooks.call(
        "PATCH",
        f"/{webhook['id']}",
        {"url": "https://ci.example.com/v2", "events": ["alias.set"], "active": False},
    )
    assert status == 200, updated
    changed = updated["webhook"]
    assert (changed["url"], changed["events"], changed["active"]) == (
        "https://ci.example.com/v2",
        ["alias.set"],
        False,
    )
    assert changed["model_name"] == "churn" and changed["updated_at"] >= webhook["updated_at"]
    # An empty string clears the model filter; absent fields stay.
    status, cleared = await hooks.call("PATCH", f"/{webhook['id']}", {"model_name": ""})
    assert status == 200 and "model_name" not in cleared["webhook"]
    assert cleared["webhook"]["events"] == ["alias.set"]

    status, body = await hooks.call("DELETE", f"/{webhook['id']}")
    assert status == 200 and body == {}
    status, body = await hooks.call("GET", f"/{webhook['id']}")
    _assert_error(status, body, 404, "RESOURCE_DOES_NOT_EXIST")


async def test_list_filters_by_model(hooks: Hooks) -> None:
    everyone, _ = await hooks.create("https://a.example.com/", ["*"])
    churn, _ = await hooks.create("https://b.example.com/", ["*"], model_name="churn")
    await hooks.create("https://c.example.com/", ["*"], model_name="fraud")
    status, body = await hooks.call("GET", params={"model_name": "churn"})
    assert status == 200
    assert [w["id"] for w in body["webhooks"]] == [everyone, churn]


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"events": ["*"]}, "url"),
        ({"url": "ftp://example.com/", "events": ["*"]}, "http"),
        ({"url": "not a url", "events": ["*"]}, "URL"),
        ({"url": "https://example.com/", "events": []}, "at least one event"),
        ({"url": "https://example.com/", "events": ["model_version.promoted"]}, "Invalid event"),
        ({"url": "https://example.com/", "events": "model_version.*"}, "list"),
        ({"url": "https://example.com/", "events": ["*"], "active": "maybe"}, "boolean"),
        ({"url": "https://example.com/", "events": ["*"], "description": "x" * 1001}, "longer"),
    ],
)
async def test_create_refuses_bad_input(hooks: Hooks, body: dict[str, Any], fragment: str) -> None:
    status, reply = await hooks.call("POST", "", body)
    assert fragment in _assert_error(status, reply, 400, "INVALID_PARAMETER_VALUE")


async def test_update_refuses_bad_input_and_leaves_the_webhook_unchanged(hooks: Hooks) -> None:
    webhook_id, _ = await hooks.create("https://example.com/", ["alias.set"])
    for change in ({"url": "gopher://x/"}, {"events": ["nope"]}, {"events": []}):
        status, reply = await hooks.call("PATCH", f"/{webhook_id}", change)
        _assert_error(status, reply, 400, "INVALID_PARAMETER_VALUE")
    status, body = await hooks.call("GET", f"/{webhook_id}")
    assert body["webhook"]["url"] == "https://example.com/" and body["webhook"]["events"] == [
        "alias.set"
    ]


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/999999"), ("PATCH", "/999999"), ("DELETE", "/999999"), ("POST", "/999999/rotate-secret"),
        ("GET", "/999999/deliveries"), ("POST", "/999999/test"), ("GET", "/abc"), ("GET", "/99999999999999999999999"),
    ],
)  # fmt: skip
async def test_unknown_webhook_is_resource_does_not_exist(
    hooks: Hooks, method: str, path: str
) -> None:
    status, body = await hooks.call(method, path, {} if method != "GET" else None)
    _assert_error(status, body, 404, "RESOURCE_DOES_NOT_EXIST")


async def test_deliveries_query_validation(hooks: Hooks) -> None:
    webhook_id, _ = await hooks.create("https://example.com/", ["*"])
    for params in (
        {"max_results": "0"},
        {"max_results": "5000"},
        {"max_results": "x"},
        {"state": "lost"},
    ):
        status, body = await hooks.call("GET", f"/{webhook_id}/deliveries", params=params)
        _assert_error(status, body, 400, "INVALID_PARAMETER_VALUE")
    assert await hooks.deliveries(webhook_id, state="pending", max_results="10") == []


async def test_rotate_secret_returns_a_new_secret_once(hooks: Hooks) -> None:
    webhook_id, first = await hooks.create("https://example.com/", ["*"])
    status, body = await hooks.call("POST", f"/{webhook_id}/rotate-secret", {})
    assert status == 200 and body["secret"] != first and body["webhook"]["id"] == webhook_id


async def test_json_content_type_is_required(hook_client: TestClient[Any, Any]) -> None:
    async with hook_client.post(
        HOOKS, data="url=https://example.com/", headers={"Content-Type": "text/plain"}
    ) as resp:
        body = await resp.json()
    _assert_error(resp.status, body, 400, "INVALID_PARAMETER_VALUE")
