"""runs/get and runs/search build their JSON straight from the store's rows (``RunRows``,
``encode_run_rows``), not through entities. These tests hold that fast path to the entity path
(``PgRunStore.get`` + ``encode_run``, what create, update and GraphQL still use) byte for byte,
on runs that exercise every field, and check paging, deleted runs and the order within a run.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from aiohttp.test_utils import TestClient

from metricgate.api.codec import encode_run
from metricgate.api.keys import SERVICE
from metricgate.stores.postgres.runs import fetch_run_rows

# ``api`` comes from tests/api/conftest.py.
Api = Any

# Keys whose code point order differs from a case-insensitive or locale order.
ODD_KEYS = ["b", "B", "a", "_x", "Z10", "Z9", "é", "e", "z", "ß", "日本"]


def now_ms() -> int:
    return int(time.time() * 1000)


async def entity_json(client: TestClient[Any, Any], run_id: str) -> bytes:
    """The run as the entity path encodes it (the reference for the fast path)."""
    run = await client.app[SERVICE].runs.get(run_id)
    return orjson.dumps({"run": encode_run(run)})


async def run_with_every_field(api: Api) -> tuple[str, str]:
    """(experiment id, run id) of a finished run holding every kind of data a run can hold."""
    exp_id = await api.create_experiment()
    run = await api.create_run(
        exp_id, run_name="everything", tags=[{"key": "origin", "value": "test"}]
    )
    run_id = run["info"]["run_id"]
    ts = now_ms()
    metrics: list[dict[str, Any]] = [
        {"key": "loss", "value": 0.5, "timestamp": ts, "step": 1},
        {"key": "loss", "value": 0.25, "timestamp": ts + 1, "step": 2},
        {"key": "nan", "value": "NaN", "timestamp": ts, "step": 0},
        {"key": "inf", "value": "Infinity", "timestamp": ts, "step": 0},
        {"key": "ninf", "value": "-Infinity", "timestamp": ts, "step": 0},
        {"key": "neg", "value": -3, "timestamp": ts, "step": -5},
        {"key": "big", "value": 1e300, "timestamp": 2**62, "step": 2**62},
        {"key": "acc", "value": 0.9, "timestamp": ts, "step": 0, "model_id": "m-0123"},
    ]
    params = [{"key": k, "value": f"p-{k}"} for k in ODD_KEYS] + [{"key": "empty", "value": ""}]
    tags = [{"key": k, "value": f"t-{k}"} for k in ODD_KEYS] + [
        {"key": "multi", "value": 'line\nvalue "q"'}
    ]
    (await api.log_batch(run_id, metrics=metrics, params=params, tags=tags)).ok()
    with_schema = {
        "name": "iris", "digest": "d1", "source_type": "local", "source": '{"uri": "/data/iris.csv"}',
        "schema": '{"mlflow_colspec": []}', "profile": '{"num_rows": 150}',
    }  # fmt: skip
    plain = {
        "name": "digits",
        "digest": "d2",
        "source_type": "http",
        "source": "https://example.invalid/d",
    }
    (
        await api.post(
            "/runs/log-inputs",
            {
                "run_id": run_id,
                "datasets": [
                    {
                        "tags": [{"key": "mlflow.data.context", "value": "train"}],
                        "dataset": with_schema,
                    },
                    {"tags": [], "dataset": plain},
                ],
                "models": [{"model_id": "m-in-b"}, {"model_id": "m-in-a"}],
            },
        )
    ).ok()
    outputs = [{"model_id": "m-out-late", "step": 7}, {"model_id": "m-out-early", "step": 2}]
    (await api.post("/runs/outputs", {"run_id": run_id, "models": outputs})).ok()
    end = now_ms()
    (await api.post("/runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": end})).ok()
    return exp_id, run_id


async def test_runs_get_matches_the_entity_encoding_for_a_run_with_every_field(
    api: Api, client: TestClient[Any, Any]
) -> None:
    _, run_id = await run_with_every_field(api)
    reply = await api.get("/runs/get", {"run_id": run_id})
    reply.ok()
    assert reply.raw == await entity_json(client, run_id)

    run = reply.json["run"]
    info = run["info"]
    assert info["run_id"] == info["run_uuid"] == run_id
    assert info["status"] == "FINISHED" and isinstance(info["end_time"], int)
    metrics = {m["key"]: m for m in run["data"]["metrics"]}
    assert metrics["loss"] == {
        "key": "loss",
        "value": 0.25,
        "timestamp": metrics["loss"]["timestamp"],
        "step": 2,
    }
    assert (metrics["nan"]["value"], metrics["inf"]["value"], metrics["ninf"]["value"]) == (
        "NaN",
        "Infinity",
        "-Infinity",
    )
    assert metrics["neg"]["step"] == -5 and metrics["big"]["step"] == 2**62
    assert metrics["acc"]["model_id"] == "m-0123" and "model_id" not in metrics["loss"]
    params = run["data"]["params"]
    assert {"key": "empty", "value": ""} in params
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["multi"] == 'line\nvalue "q"' and tags["mlflow.runName"] == "everything"
    datasets = run["inputs"]["dataset_inputs"]
    assert [d["dataset"]["name"] for d in datasets] == ["digits", "iris"]
    assert "schema" not in datasets[0]["dataset"] and "profile" not in datasets[0]["dataset"]
    assert datasets[1]["dataset"]["profile"] == '{"num_rows": 150}'
    assert (
        datasets[1]["tags"] == [{"key": "mlflow.data.context", "value": "train"}]
        and datasets[0]["tags"] == []
    )
    assert run["inputs"]["model_inputs"] == [{"model_id": "m-in-a"}, {"model_id": "m-in-b"}]
    assert run["outputs"]["model_outputs"] == [
        {"model_id": "m-out-early", "step": 2},
        {"model_id": "m-out-late", "step": 7},
    ]


async def test_within_a_run_keys_come_in_code_point_order(api: Api) -> None:
    """Whatever the database's locale: the order of SQLite's default collation and of "C"."""
    _, run_id = await run_with_every_field(api)
    run = await api.get_run(run_id)
    for field in ("params", "tags", "metrics"):
        keys = [item["key"] for item in run["data"][field]]
        assert keys == sorted(keys), field
    assert [p["key"] for p in run["data"]["params"]] == sorted([*ODD_KEYS, "empty"])


async def test_search_answers_each_run_as_runs_get_does(
    api: Api, client: TestClient[Any, Any]
) -> None:
    exp_id, full_run = await run_with_every_field(api)
    plain_run = await api.new_run_id(exp_id)
    many_tags = await api.new_run_id(exp_id)
    tags = [{"key": f"tag-{i:04d}", "value": "v" * (i % 50)} for i in range(600)]
    for start in range(0, len(tags), 100):
        (await api.log_batch(many_tags, tags=tags[start : start + 100])).ok()
    body = (await api.post("/runs/search", {"experiment_ids": [exp_id]})).ok()
    found = {run["info"]["run_id"]: run for run in body["runs"]}
    assert set(found) == {full_run, plain_run, many_tags}
    assert "next_page_token" not in body
    for run_id, run in found.items():
        assert orjson.dumps({"run": run}) == await entity_json(client, run_id), run_id
    assert len(found[many_tags]["data"]["tags"]) == 600 + 1  # and mlflow.runName
    assert found[plain_run]["data"] == {
        "metrics": [],
        "params": [],
        "tags": found[plain_run]["data"]["tags"],
    }
    assert found[plain_run]["inputs"] == {"dataset_inputs": [], "model_inputs": []}
    assert found[plain_run]["outputs"] == {"model_outputs": []}


async def test_paging_through_runs_returns_each_run_once_in_search_order(api: Api) -> None:
    exp_id = await api.create_experiment()
    base = now_ms()
    created = []
    for i in range(23):
        run = await api.create_run(exp_id, start_time=base + (i % 5))  # ties broken by run_id
        created.append(run["info"]["run_id"])
        (
            await api.log_batch(
                created[-1],
                params=[{"key": "i", "value": str(i)}],
                tags=[{"key": "n", "value": str(i)}],
            )
        ).ok()
    whole = (
        await api.post("/runs/search", {"experiment_ids": [exp_id], "max_results": 1000})
    ).ok()["runs"]
    paged: list[dict[str, Any]] = []
    token = None
    for _ in range(10):
        request: dict[str, Any] = {"experiment_ids": [exp_id], "max_results": 5}
        if token:
            request["page_token"] = token
        body = (await api.post("/runs/search", request)).ok()
        assert 0 < len(body["runs"]) <= 5
        paged.extend(body["runs"])
        token = body.get("next_page_token")
        if not token:
            break
    assert paged == whole
    assert sorted(r["info"]["run_id"] for r in paged) == sorted(created)
    order = [(-r["info"]["start_time"], r["info"]["run_id"]) for r in paged]
    assert order == sorted(order)
    for run in paged:
        assert [p["value"] for p in run["data"]["params"]] == [
            t["value"] for t in run["data"]["tags"] if t["key"] == "n"
        ]


async def test_deleted_runs_by_view_type(api: Api, client: TestClient[Any, Any]) -> None:
    exp_id, kept = await run_with_every_field(api)
    deleted = await api.new_run_id(exp_id)
    (await api.log_batch(deleted, params=[{"key": "p", "value": "1"}])).ok()
    (await api.post("/runs/delete", {"run_id": deleted})).ok()

    async def ids(view: str) -> set[str]:
        body = (
            await api.post("/runs/search", {"experiment_ids": [exp_id], "run_view_type": view})
        ).ok()
        return {run["info"]["run_id"] for run in body.get("runs", [])}

    assert await ids("ACTIVE_ONLY") == {kept}
    assert await ids("DELETED_ONLY") == {deleted}
    assert await ids("ALL") == {kept, deleted}
    reply = await api.get("/runs/get", {"run_id": deleted})
    assert reply.ok()["run"]["info"]["lifecycle_stage"] == "deleted"
    assert reply.ok()["run"]["data"]["params"] == [{"key": "p", "value": "1"}]
    assert reply.raw == await entity_json(client, deleted)
    (await api.post("/runs/restore", {"run_id": deleted})).ok()
    assert await ids("DELETED_ONLY") == set()


async def test_runs_get_of_an_unknown_run_is_404(api: Api) -> None:
    (await api.get("/runs/get", {"run_id": "0" * 32})).error(
        404, "RESOURCE_DOES_NOT_EXIST", "not found"
    )


async def test_fetch_run_rows_keeps_the_order_asked_and_skips_unknown_runs(
    api: Api, client: TestClient[Any, Any]
) -> None:
    exp_id = await api.create_experiment()
    first, second = await api.new_run_id(exp_id), await api.new_run_id(exp_id)
    async with client.app[SERVICE].db.connection() as conn:
        rows = await fetch_run_rows(conn, [second, "f" * 32, first, second])
        assert rows.ids == [second, first]
        assert set(rows.info) == {first, second}
        assert rows.params == {} and rows.metrics == {}
        assert [row[2] for row in rows.tags[first]] == ["mlflow.runName"]
        empty = await fetch_run_rows(conn, [])
        assert empty.ids == [] and empty.info == {}
