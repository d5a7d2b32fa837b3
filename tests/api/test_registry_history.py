"""Registry audit history over HTTP: every change type records actor, before/after and comment."""

from __future__ import annotations

import base64
from typing import Any

from tests.api.conftest import Api

HISTORY = "/api/2.0/metricgate/registry/history"


def _basic(user: str, password: str = "secret") -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _history(api: Api, name: str, **params: Any) -> list[dict[str, Any]]:
    """All events, following page tokens (small pages to exercise paging)."""
    events: list[dict[str, Any]] = []
    token = None
    for _ in range(100):
        query = {"name": name, "max_results": "3", **params}
        if token:
            query["page_token"] = token
        body = (await api.get(HISTORY, query, absolute=True)).ok()
        events.extend(body["events"])
        token = body.get("next_page_token")
        if not token:
            return events
    raise AssertionError("history never stopped paging")


async def _model_with_versions(api: Api, name: str, count: int, **headers: str) -> None:
    (await api.post("/registered-models/create", {"name": name}, headers=headers)).ok()
    for _ in range(count):
        (
            await api.post(
                "/model-versions/create", {"name": name, "source": "s3://bucket/m"}, headers=headers
            )
        ).ok()


async def test_every_change_type_is_recorded_with_actor_before_after_and_comment(api: Api) -> None:
    alice = _basic("alice")
    bob = {"X-Metricgate-User": "bob", "X-Metricgate-Comment": "weekly promotion"}
    (
        await api.post(
            "/registered-models/create",
            {"name": "m", "description": "d0", "tags": [{"key": "team", "value": "a"}]},
            headers=alice,
        )
    ).ok()
    (
        await api.post(
            "/model-versions/create",
            {"name": "m", "source": "s3://b/1", "comment": "first cut"},
            headers=alice,
        )
    ).ok()
    (
        await api.post("/model-versions/create", {"name": "m", "source": "s3://b/2"})
    ).ok()  # anonymous
    (
        await api.patch(
            "/registered-models/update", {"name": "m", "description": "d1"}, headers=alice
        )
    ).ok()
    (
        await api.post(
            "/registered-models/set-tag", {"name": "m", "key": "team", "value": "b"}, headers=alice
        )
    ).ok()
    (
        await api.delete(
            "/registered-models/delete-tag", {"name": "m", "key": "team"}, headers=alice
        )
    ).ok()
    (
        await api.patch(
            "/model-versions/update",
            {"name": "m", "version": "1", "description": "v1"},
            headers=alice,
        )
    ).ok()
    (
        await api.post(
            "/model-versions/set-tag",
            {"name": "m", "version": "1", "key": "k", "value": "v"},
            headers=alice,
        )
    ).ok()
    (
        await api.delete(
            "/model-versions/delete-tag", {"name": "m", "version": "1", "key": "k"}, headers=alice
        )
    ).ok()
    body = {"name": "m", "version": "1", "stage": "production", "archive_existing_versions": False}
    (await api.post("/model-versions/transition-stage", body, headers=bob)).ok()
    body = {"name": "m", "version": "2", "stage": "Production", "archive_existing_versions": True}
    (await api.post("/model-versions/transition-stage", body, headers=bob)).ok()
    (
        await api.post(
            "/registered-models/alias",
            {"name": "m", "alias": "champion", "version": "1"},
            headers=alice,
        )
    ).ok()
    (
        await api.post(
            "/registered-models/alias",
            {"name": "m", "alias": "champion", "version": "2"},
            headers=alice,
        )
    ).ok()
    (
        await api.delete(
            "/registered-models/alias", {"name": "m", "alias": "champion"}, headers=alice
        )
    ).ok()
    (
        await api.post(
            "/registered-models/alias", {"name": "m", "alias": "old", "version": "1"}, headers=alice
        )
    ).ok()
    (await api.delete("/model-versions/delete", {"name": "m", "version": "1"}, headers=alice)).ok()
    (
        await api.post("/registered-models/rename", {"name": "m", "new_name": "m2"}, headers=alice)
    ).ok()
    (await api.delete("/registered-models/delete", {"name": "m2"}, headers=alice)).ok()

    events = list(reversed(await _history(api, "m2")))  # oldest first for reading
    summary = [(e["event_type"], e["version"], e["actor"]) for e in events]
    assert summary == [
        ("registered_model.created", None, "alice"),
        ("model_version.created", "1", "alice"),
        ("model_version.created", "2", None),
        ("registered_model.updated", None, "alice"),
        ("registered_model.tag_set", None, "alice"),
        ("registered_model.tag_deleted", None, "alice"),
        ("model_version.updated", "1", "alice"),
        ("model_version.tag_set", "1", "alice"),
        ("model_version.tag_deleted", "1", "alice"),
        ("model_version.stage_changed", "1", "bob"),
        ("model_version.stage_changed", "2", "bob"),
        ("model_version.stage_changed", "1", "bob"),  # archived by version 2's promotion
        ("alias.set", "1", "alice"),
        ("alias.set", "2", "alice"),
        ("alias.deleted", "2", "alice"),
        ("alias.set", "1", "alice"),
        ("alias.deleted", "1", "alice"),  # deleting version 1 drops its alias
        ("model_version.deleted", "1", "alice"),
        ("registered_model.renamed", None, "alice"),
        ("registered_model.deleted", None, "alice"),
    ]
    assert all(e["actor_verified"] is False for e in events)
    ids = [e["id"] for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    by = {i: e for i, e in enumerate(events)}
    assert by[0]["before"] is None
    assert by[0]["after"] == {"name": "m", "description": "d0", "tags": {"team": "a"}}
    assert by[1]["comment"] == "first cut"  # a body field wins
    assert by[1]["after"]["source"] == "s3://b/1" and by[1]["after"]["current_stage"] == "None"
    assert (by[3]["before"], by[3]["after"]) == ({"description": "d0"}, {"description": "d1"})
    assert (by[4]["before"], by[4]["after"]) == (
        {"key": "team", "value": "a"},
        {"key": "team", "value": "b"},
    )
    assert (by[5]["before"], by[5]["after"]) == ({"key": "team", "value": "b"}, None)
    assert (by[6]["before"], by[6]["after"]) == ({"description": None}, {"description": "v1"})
    assert (by[7]["before"], by[7]["after"]) == (None, {"key": "k", "value": "v"})
    assert (by[9]["before"], by[9]["after"]) == (
        {"current_stage": "None"},
        {"current_stage": "Production"},
    )
    assert by[9]["comment"] == "weekly promotion"  # the header
    assert by[11]["before"] == {"current_stage": "Production"}
    assert by[11]["after"] == {"current_stage": "Archived", "archived_by_version": 2}
    assert (by[12]["before"], by[12]["after"]) == (None, {"alias": "champion", "version": 1})
    assert (by[13]["before"], by[13]["after"]) == (
        {"alias": "champion", "version": 1},
        {"alias": "champion", "version": 2},
    )
    assert (by[14]["before"], by[14]["after"]) == ({"alias": "champion", "version": 2}, None)
    assert by[17]["before"]["aliases"] == ["old"] and by[17]["after"] is None
    assert by[18]["model_name"] == "m2" and (by[18]["before"], by[18]["after"]) == (
        {"name": "m"},
        {"name": "m2"},
    )
    assert by[19]["before"]["versions"] == [2] and by[19]["after"] is None
    assert all(e["model_name"] == "m" for e in events[:18])
    assert all(e["occurred_at"] and e["timestamp_ms"] > 0 for e in events)

    # The old name's history ends with the rename; the per-version view filters.
    old = await _history(api, "m")
    assert old[0]["event_type"] == "registered_model.renamed" and len(old) == 19
    v1 = await _history(api, "m2", version="1")
    assert [e["event_type"] for e in v1][:2] == ["model_version.deleted", "alias.deleted"]
    assert {e["version"] for e in v1} == {"1"} and len(v1) == 10


async def test_a_failed_change_records_nothing(api: Api) -> None:
    await _model_with_versions(api, "m", 1)
    (
        await api.post(
            "/model-versions/transition-stage",
            {"name": "m", "version": "1", "stage": "Bogus", "archive_existing_versions": False},
        )
    ).error(400, "INVALID_PARAMETER_VALUE")
    (
        await api.post(
            "/model-versions/create",
            {"name": "m", "source": "runs:/0123456789abcdef0123456789abcdef/model"},
        )
    ).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await api.post("/registered-models/create", {"name": "m"})).error(
        400, "RESOURCE_ALREADY_EXISTS"
    )
    events = await _history(api, "m")
    assert [e["event_type"] for e in events] == [
        "model_version.created",
        "registered_model.created",
    ]
    # The failed registration rolled its number back: the next version is 2.
    created = (await api.post("/model-versions/create", {"name": "m", "source": "s3://b/2"})).ok()
    assert created["model_version"]["version"] == "2"


async def test_history_paging_and_errors(api: Api) -> None:
    await _model_with_versions(api, "p", 7)
    page1 = (await api.get(HISTORY, {"name": "p", "max_results": "5"}, absolute=True)).ok()
    assert [e["version"] for e in page1["events"]] == ["7", "6", "5", "4", "3"]
    # A change between pages does not shift the next page (keyset tokens).
    (await api.post("/model-versions/create", {"name": "p", "source": "s3://b/8"})).ok()
    page2 = (
        await api.get(
            HISTORY,
            {"name": "p", "max_results": "5", "page_token": page1["next_page_token"]},
            absolute=True,
        )
    ).ok()
    assert [e["version"] for e in page2["events"]] == ["2", "1", None]
    assert "next_page_token" not in page2
    (await api.get(HISTORY, {"name": "nope"}, absolute=True)).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await api.get(HISTORY, {"name": "p", "page_token": "junk"}, absolute=True)).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await api.get(HISTORY, {"name": "p", "max_results": "0"}, absolute=True)).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await api.get(HISTORY, {"name": "p", "version": "x"}, absolute=True)).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await api.get(HISTORY, {}, absolute=True)).error(400, "INVALID_PARAMETER_VALUE")
    # The UI prefix serves it too.
    (await api.get("/ajax-api/2.0/metricgate/registry/history", {"name": "p"}, absolute=True)).ok()
