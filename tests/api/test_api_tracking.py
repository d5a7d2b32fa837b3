"""Tracking success paths at the HTTP level, as the MLflow client sees them.

References: ../shared/mlflow-protocol.md §0-§2; mlflow 3.17.2 server/handlers.py and
store/tracking/sqlalchemy_store.py.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient


@pytest.fixture
def client(module_client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """One app and database for the module (tests/conftest.py ``module_client``)."""
    return module_client


# ``api`` / ``ajax`` fixtures come from tests/api/conftest.py.
Api = Any

RUN_ID_RE = re.compile(r"^[0-9a-f]{32}$")


def now_ms() -> int:
    return int(time.time() * 1000)


def by_key(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {item["key"]: item for item in items}


def kv(items: list[dict[str, Any]]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in items}


# ---------------------------------------------------------------- experiments


async def test_create_and_get_experiment(api: Api) -> None:
    body = (
        await api.post(
            "/experiments/create", {"name": "exp-a", "tags": [{"key": "team", "value": "ml"}]}
        )
    ).ok()
    exp_id = body["experiment_id"]
    assert isinstance(exp_id, str) and exp_id.isdigit() and exp_id != "0"

    exp = (await api.get("/experiments/get", {"experiment_id": exp_id})).ok()["experiment"]
    assert exp["experiment_id"] == exp_id
    assert exp["name"] == "exp-a"
    assert exp["lifecycle_stage"] == "active"
    assert exp["artifact_location"] == f"mlflow-artifacts:/{exp_id}"
    assert isinstance(exp["creation_time"], int) and isinstance(exp["last_update_time"], int)
    assert kv(exp["tags"]) == {"team": "ml"}

    by_name = (await api.get("/experiments/get-by-name", {"experiment_name": "exp-a"})).ok()[
        "experiment"
    ]
    assert by_name == exp


async def test_experiment_with_artifact_location(api: Api) -> None:
    exp_id = await api.create_experiment("loc", artifact_location="mlflow-artifacts:/custom/place")
    exp = (await api.get("/experiments/get", {"experiment_id": exp_id})).ok()["experiment"]
    assert exp["artifact_location"] == "mlflow-artifacts:/custom/place"
    run = await api.create_run(exp_id)
    assert (
        run["info"]["artifact_uri"]
        == f"mlflow-artifacts:/custom/place/{run['info']['run_id']}/artifacts"
    )


async def test_default_experiment(api: Api) -> None:
    exp = (await api.get("/experiments/get", {"experiment_id": "0"})).ok()["experiment"]
    assert exp["experiment_id"] == "0"
    assert exp["name"] == "Default"
    assert exp["lifecycle_stage"] == "active"


async def test_experiment_update_tags_delete_restore(api: Api) -> None:
    exp_id = await api.create_experiment("before")
    (await api.post("/experiments/update", {"experiment_id": exp_id, "new_name": "after"})).ok()
    (
        await api.post(
            "/experiments/set-experiment-tag", {"experiment_id": exp_id, "key": "k", "value": "v1"}
        )
    ).ok()
    (
        await api.post(
            "/experiments/set-experiment-tag", {"experiment_id": exp_id, "key": "k", "value": "v2"}
        )
    ).ok()
    (
        await api.post(
            "/experiments/set-experiment-tag",
            {"experiment_id": exp_id, "key": "gone", "value": "x"},
        )
    ).ok()
    (
        await api.post(
            "/experiments/delete-experiment-tag", {"experiment_id": exp_id, "key": "gone"}
        )
    ).ok()
    exp = (await api.get("/experiments/get-by-name", {"experiment_name": "after"})).ok()[
        "experiment"
    ]
    assert exp["experiment_id"] == exp_id
    assert kv(exp["tags"]) == {"k": "v2"}

    run_id = await api.new_run_id(exp_id)
    (await api.post("/experiments/delete", {"experiment_id": exp_id})).ok()
    exp = (await api.get("/experiments/get", {"experiment_id": exp_id})).ok()["experiment"]
    assert exp["lifecycle_stage"] == "deleted"
    assert (await api.get_run(run_id))["info"]["lifecycle_stage"] == "deleted"
    (await api.post("/experiments/restore", {"experiment_id": exp_id})).ok()
    exp = (await api.get("/experiments/get", {"experiment_id": exp_id})).ok()["experiment"]
    assert exp["lifecycle_stage"] == "active"
    assert (await api.get_run(run_id))["info"]["lifecycle_stage"] == "active"


async def test_search_experiments(api: Api) -> None:
    ids = [await api.create_experiment(f"search-{i}") for i in range(3)]
    body = (await api.post("/experiments/search", {"max_results": 1000})).ok()
    found = {e["experiment_id"] for e in body["experiments"]}
    assert set(ids) | {"0"} <= found
    assert all(isinstance(e["experiment_id"], str) for e in body["experiments"])

    # Paging: one at a time, tokens echoed back, every experiment exactly once.
    seen: list[str] = []
    token = None
    for _ in range(10):
        req: dict[str, Any] = {"max_results": 1}
        if token:
            req["page_token"] = token
        page = (await api.post("/experiments/search", req)).ok()
        seen.extend(e["experiment_id"] for e in page.get("experiments", []))
        token = page.get("next_page_token")
        if not token:
            break
    assert sorted(seen) == sorted(found)

    (await api.post("/experiments/delete", {"experiment_id": ids[0]})).ok()
    active = {
        e["experiment_id"] for e in (await api.post("/experiments/search", {})).ok()["experiments"]
    }
    assert ids[0] not in active
    deleted = (await api.post("/experiments/search", {"view_type": "DELETED_ONLY"})).ok()[
        "experiments"
    ]
    assert [e["experiment_id"] for e in deleted] == [ids[0]]
    everything = (
        await api.get("/experiments/search", {"view_type": "ALL", "max_results": "100"})
    ).ok()
    assert {e["experiment_id"] for e in everything["experiments"]} == found

    named = (await api.post("/experiments/search", {"filter": "name = 'search-1'"})).ok()[
        "experiments"
    ]
    assert [e["experiment_id"] for e in named] == [ids[1]]


# ---------------------------------------------------------------- runs


async def test_create_run_shape(api: Api) -> None:
    exp_id = await api.create_experiment()
    start = now_ms()
    body = (
        await api.post(
            "/runs/create",
            {
                "experiment_id": exp_id,
                "user_id": "alice",
                "start_time": start,
                "run_name": "my-run",
                "tags": [{"key": "mlflow.source.type", "value": "LOCAL"}],
                "unknown_field": {"ignored": True},
            },
        )
    ).ok()
    run = body["run"]
    info = run["info"]
    assert RUN_ID_RE.match(info["run_id"])
    assert info["run_uuid"] == info["run_id"]
    assert info["experiment_id"] == exp_id and isinstance(info["experiment_id"], str)
    assert info["user_id"] == "alice"
    assert info["status"] == "RUNNING"
    assert info["start_time"] == start
    assert info["lifecycle_stage"] == "active"
    assert info["run_name"] == "my-run"
    assert info["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/{info['run_id']}/artifacts"
    assert kv(run["data"]["tags"]) == {"mlflow.source.type": "LOCAL", "mlflow.runName": "my-run"}
    assert run["data"].get("metrics", []) == [] and run["data"].get("params", []) == []


async def test_create_run_defaults(api: Api) -> None:
    # No experiment set: the client names the Default ("0"); a missing id is refused (issue 11
    # §6, tests/api/test_int64_bounds.py).
    run = (await api.post("/runs/create", {"experiment_id": "0"})).ok()["run"]
    assert run["info"]["experiment_id"] == "0"
    assert run["info"]["run_name"]  # a random name
    assert kv(run["data"]["tags"])["mlflow.runName"] == run["info"]["run_name"]
    assert isinstance(run["info"]["start_time"], int)


async def test_run_name_from_tag(api: Api) -> None:
    exp_id = await api.create_experiment()
    run = await api.create_run(exp_id, tags=[{"key": "mlflow.runName", "value": "tagged"}])
    assert run["info"]["run_name"] == "tagged"


async def test_get_run_by_run_id_and_run_uuid(api: Api) -> None:
    run_id = await api.new_run_id()
    a = (await api.get("/runs/get", {"run_id": run_id})).ok()["run"]
    b = (await api.get("/runs/get", {"run_uuid": run_id})).ok()["run"]
    c = (await api.get("/runs/get", {"run_id": run_id, "run_uuid": run_id})).ok()["run"]
    assert a == b == c
    assert a["info"]["run_id"] == run_id


async def test_update_run(api: Api) -> None:
    run_id = await api.new_run_id()
    end = now_ms()
    body = (
        await api.post("/runs/update", {"run_uuid": run_id, "status": "FINISHED", "end_time": end})
    ).ok()
    info = body["run_info"]
    assert info["run_id"] == run_id
    assert info["status"] == "FINISHED"
    assert info["end_time"] == end
    body = (await api.post("/runs/update", {"run_id": run_id, "run_name": "renamed"})).ok()
    assert body["run_info"]["run_name"] == "renamed"
    assert body["run_info"]["status"] == "FINISHED"
    run = await api.get_run(run_id)
    assert kv(run["data"]["tags"])["mlflow.runName"] == "renamed"
    # Enum by number: 4 = FAILED (RunStatus: RUNNING=1, SCHEDULED=2, FINISHED=3, FAILED=4, KILLED=5).
    body = (await api.post("/runs/update", {"run_id": run_id, "status": 4})).ok()
    assert body["run_info"]["status"] == "FAILED"


async def test_delete_and_restore_run(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.post("/runs/delete", {"run_id": run_id})).ok()
    assert (await api.get_run(run_id))["info"]["lifecycle_stage"] == "deleted"
    (await api.post("/runs/restore", {"run_id": run_id})).ok()
    assert (await api.get_run(run_id))["info"]["lifecycle_stage"] == "active"
    (await api.log_metric(run_id, "after_restore", 1.0)).ok()


async def test_run_uuid_accepted_on_writes(api: Api) -> None:
    run_id = await api.new_run_id()
    ts = now_ms()
    (await api.post("/runs/log-parameter", {"run_uuid": run_id, "key": "p", "value": "1"})).ok()
    (
        await api.post(
            "/runs/log-metric", {"run_uuid": run_id, "key": "m", "value": 2.0, "timestamp": ts}
        )
    ).ok()
    (await api.post("/runs/set-tag", {"run_uuid": run_id, "key": "t", "value": "3"})).ok()
    # The client sends both on every call.
    (
        await api.post(
            "/runs/log-parameter", {"run_id": run_id, "run_uuid": run_id, "key": "q", "value": "4"}
        )
    ).ok()
    run = await api.get_run(run_id)
    assert kv(run["data"]["params"]) == {"p": "1", "q": "4"}
    assert kv(run["data"]["metrics"]) == {"m": 2.0}
    assert kv(run["data"]["tags"])["t"] == "3"
    hist = (await api.get("/metrics/get-history", {"run_uuid": run_id, "metric_key": "m"})).ok()
    assert [m["value"] for m in hist["metrics"]] == [2.0]


async def test_params_tags_metrics_round_trip(api: Api) -> None:
    run_id = await api.new_run_id()
    ts = now_ms()
    (
        await api.log_batch(
            run_id,
            metrics=[
                {"key": "loss", "value": 0.25, "timestamp": ts, "step": 1},
                {"key": "acc", "value": 1, "timestamp": ts},
                {"key": "train/f1 score", "value": 0.5, "timestamp": ts, "step": 0},
            ],
            params=[
                {"key": "lr", "value": "0.01"},
                {"key": "layers", "value": "3"},
                {"key": "empty", "value": ""},
            ],
            tags=[{"key": "note", "value": "hello"}, {"key": "unicode", "value": "héllo ✓"}],
        )
    ).ok()
    (
        await api.post("/runs/set-tag", {"run_id": run_id, "key": "note", "value": "overwritten"})
    ).ok()
    (await api.post("/runs/set-tag", {"run_id": run_id, "key": "to_delete", "value": "x"})).ok()
    (await api.post("/runs/delete-tag", {"run_id": run_id, "key": "to_delete"})).ok()
    run = await api.get_run(run_id)
    assert kv(run["data"]["params"]) == {"lr": "0.01", "layers": "3", "empty": ""}
    tags = kv(run["data"]["tags"])
    assert (
        tags["note"] == "overwritten" and tags["unicode"] == "héllo ✓" and "to_delete" not in tags
    )
    metrics = by_key(run["data"]["metrics"])
    assert set(metrics) == {"loss", "acc", "train/f1 score"}
    assert metrics["loss"] == {"key": "loss", "value": 0.25, "timestamp": ts, "step": 1}
    assert metrics["acc"]["step"] == 0 and metrics["acc"]["value"] == 1.0


async def test_numeric_strings_accepted(api: Api) -> None:
    run_id = await api.new_run_id()
    ts = now_ms()
    (await api.log_metric(run_id, "m", "1.5", timestamp=str(ts), step="7")).ok()
    (
        await api.log_batch(
            run_id, metrics=[{"key": "n", "value": "2", "timestamp": str(ts), "step": "3"}]
        )
    ).ok()
    metrics = by_key((await api.get_run(run_id))["data"]["metrics"])
    assert metrics["m"] == {"key": "m", "value": 1.5, "timestamp": ts, "step": 7}
    assert metrics["n"] == {"key": "n", "value": 2.0, "timestamp": ts, "step": 3}


async def test_log_metric_without_step_defaults_to_zero(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", 1.0, timestamp=5, step=None)).ok()
    assert (await api.history(run_id, "m"))[0]["step"] == 0


async def test_long_values_truncated(api: Api) -> None:
    run_id = await api.new_run_id()
    (
        await api.post(
            "/runs/log-parameter", {"run_id": run_id, "key": "long", "value": "p" * 7000}
        )
    ).ok()
    (await api.post("/runs/set-tag", {"run_id": run_id, "key": "long", "value": "t" * 9000})).ok()
    (
        await api.log_batch(
            run_id,
            params=[{"key": "long2", "value": "q" * 6001}],
            tags=[{"key": "long2", "value": "u" * 8001}],
        )
    ).ok()
    run = await api.get_run(run_id)
    params, tags = kv(run["data"]["params"]), kv(run["data"]["tags"])
    assert params["long"] == "p" * 6000 and params["long2"] == "q" * 6000
    assert tags["long"] == "t" * 8000 and tags["long2"] == "u" * 8000
    # Re-logging the same over-long value compares the truncated value: still idempotent.
    (
        await api.post(
            "/runs/log-parameter", {"run_id": run_id, "key": "long", "value": "p" * 7000}
        )
    ).ok()


async def test_log_parameter_value_optional_like_mlflow(api: Api) -> None:
    # mlflow server/handlers.py _log_param: schema "value": [_assert_string] (not required), and
    # _log_batch only requires params[i].key; a missing proto2 string reads as "".
    run_id = await api.new_run_id()
    (await api.post("/runs/log-parameter", {"run_id": run_id, "key": "no_value"})).ok()
    (await api.log_batch(run_id, params=[{"key": "no_value_batch"}])).ok()
    params = kv((await api.get_run(run_id))["data"]["params"])
    assert params == {"no_value": "", "no_value_batch": ""}


async def test_empty_log_batch(api: Api) -> None:
    run_id = await api.new_run_id()
    assert (await api.log_batch(run_id)).ok() == {}
    assert (await api.post("/runs/log-batch", {"run_id": run_id})).ok() == {}


async def test_success_bodies_are_json_objects(api: Api) -> None:
    run_id = await api.new_run_id()
    for reply in [
        await api.log_metric(run_id, "m", 1.0),
        await api.post("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "1"}),
        await api.post("/runs/set-tag", {"run_id": run_id, "key": "t", "value": "1"}),
        await api.log_batch(run_id),
    ]:
        assert reply.ok() == {}


# ---------------------------------------------------------------- latest metric rule


async def test_latest_metric_highest_step_wins(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", 1.0, timestamp=10, step=5)).ok()
    (await api.log_metric(run_id, "m", 2.0, timestamp=1000, step=3)).ok()  # later, but lower step
    latest = by_key((await api.get_run(run_id))["data"]["metrics"])["m"]
    assert (latest["value"], latest["step"], latest["timestamp"]) == (1.0, 5, 10)


async def test_latest_metric_then_timestamp(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", 1.0, timestamp=20, step=5)).ok()
    (await api.log_metric(run_id, "m", 9.0, timestamp=10, step=5)).ok()  # same step, older
    latest = by_key((await api.get_run(run_id))["data"]["metrics"])["m"]
    assert (latest["value"], latest["timestamp"]) == (1.0, 20)
    (await api.log_metric(run_id, "m", 3.0, timestamp=30, step=5)).ok()
    latest = by_key((await api.get_run(run_id))["data"]["metrics"])["m"]
    assert (latest["value"], latest["timestamp"]) == (3.0, 30)


async def test_latest_metric_then_value(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", 2.0, timestamp=20, step=5)).ok()
    (await api.log_metric(run_id, "m", 7.0, timestamp=20, step=5)).ok()
    (await api.log_metric(run_id, "m", 4.0, timestamp=20, step=5)).ok()
    latest = by_key((await api.get_run(run_id))["data"]["metrics"])["m"]
    assert latest["value"] == 7.0


async def test_latest_metric_within_one_batch(api: Api) -> None:
    run_id = await api.new_run_id()
    points = [
        {"key": "m", "value": 1.0, "timestamp": 100, "step": 2},
        {"key": "m", "value": 5.0, "timestamp": 50, "step": 3},
        {"key": "m", "value": 4.0, "timestamp": 60, "step": 3},
        {"key": "m", "value": 6.0, "timestamp": 60, "step": 3},
        {"key": "m", "value": 0.5, "timestamp": 999, "step": 1},
    ]
    (await api.log_batch(run_id, metrics=points)).ok()
    latest = by_key((await api.get_run(run_id))["data"]["metrics"])["m"]
    assert (latest["value"], latest["step"], latest["timestamp"]) == (6.0, 3, 60)
    # A later batch with an older point does not move it back.
    (
        await api.log_batch(
            run_id, metrics=[{"key": "m", "value": 100.0, "timestamp": 1, "step": 2}]
        )
    ).ok()
    latest = by_key((await api.get_run(run_id))["data"]["metrics"])["m"]
    assert latest["value"] == 6.0


async def test_latest_metric_negative_steps(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", 1.0, timestamp=5, step=-3)).ok()
    (await api.log_metric(run_id, "m", 2.0, timestamp=4, step=-1)).ok()
    assert by_key((await api.get_run(run_id))["data"]["metrics"])["m"]["value"] == 2.0


# ---------------------------------------------------------------- history, dedup, NaN/Infinity


async def test_duplicate_points_deduplicated(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", 1.0, timestamp=10, step=1)).ok()
    (await api.log_metric(run_id, "m", 1.0, timestamp=10, step=1)).ok()
    point = {"key": "m", "value": 1.0, "timestamp": 10, "step": 1}
    (await api.log_batch(run_id, metrics=[point, point, dict(point, value=2.0)])).ok()
    (await api.log_metric(run_id, "m", 1.0, timestamp=11, step=1)).ok()  # other timestamp: kept
    history = await api.history(run_id, "m")
    assert sorted((m["step"], m["timestamp"], m["value"]) for m in history) == [
        (1, 10, 1.0),
        (1, 10, 2.0),
        (1, 11, 1.0),
    ]


async def test_nan_and_infinity(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "nan", "NaN", timestamp=1, step=0)).ok()
    (await api.log_metric(run_id, "inf", "Infinity", timestamp=1, step=0)).ok()
    (await api.log_metric(run_id, "ninf", "-Infinity", timestamp=1, step=0)).ok()
    (
        await api.log_batch(
            run_id,
            metrics=[
                {"key": "b_nan", "value": "NaN", "timestamp": 1},
                {"key": "b_inf", "value": "Infinity", "timestamp": 1},
            ],
        )
    ).ok()
    reply = await api.get("/runs/get", {"run_id": run_id})
    assert b"NaN," not in reply.raw and b": NaN" not in reply.raw  # strict JSON only
    metrics = kv(reply.ok()["run"]["data"]["metrics"])
    assert metrics == {
        "nan": "NaN",
        "inf": "Infinity",
        "ninf": "-Infinity",
        "b_nan": "NaN",
        "b_inf": "Infinity",
    }
    assert [m["value"] for m in await api.history(run_id, "nan")] == ["NaN"]
    assert [m["value"] for m in await api.history(run_id, "ninf")] == ["-Infinity"]


async def test_nan_points_deduplicated(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", "NaN", timestamp=1, step=0)).ok()
    (await api.log_metric(run_id, "m", "NaN", timestamp=1, step=0)).ok()
    assert len(await api.history(run_id, "m")) == 1


async def test_bare_nan_tokens_like_flask(api: Api) -> None:
    # Python's json.dumps (requests' json=) writes bare NaN/Infinity, which MLflow's Flask server
    # (json.loads) accepts. The MLflow Python client itself sends the strings.
    run_id = await api.new_run_id()
    data = (
        f'{{"run_id": "{run_id}", "key": "bare", "value": NaN, "timestamp": 1, "step": 0}}'
    ).encode()
    reply = await api.request(
        "POST", "/runs/log-metric", data=data, headers={"Content-Type": "application/json"}
    )
    reply.ok()
    assert kv((await api.get_run(run_id))["data"]["metrics"])["bare"] == "NaN"


async def test_get_history_paging(api: Api) -> None:
    run_id = await api.new_run_id()
    ts = now_ms()
    points = [{"key": "m", "value": float(i), "timestamp": ts + i, "step": i} for i in range(25)]
    (await api.log_batch(run_id, metrics=list(reversed(points)))).ok()

    first = (
        await api.get(
            "/metrics/get-history", {"run_id": run_id, "metric_key": "m", "max_results": "10"}
        )
    ).ok()
    assert [m["step"] for m in first["metrics"]] == list(range(10))
    assert isinstance(first["next_page_token"], str) and first["next_page_token"]
    assert all(set(m) >= {"key", "value", "timestamp", "step"} for m in first["metrics"])

    history = await api.history(run_id, "m", max_results="10")
    assert [m["step"] for m in history] == list(range(25))
    assert [m["value"] for m in history] == [float(i) for i in range(25)]

    # Exactly one full page: no token.
    last = (
        await api.get(
            "/metrics/get-history", {"run_id": run_id, "metric_key": "m", "max_results": "25"}
        )
    ).ok()
    assert len(last["metrics"]) == 25 and not last.get("next_page_token")
    # Default page size covers everything.
    body = (await api.get("/metrics/get-history", {"run_id": run_id, "metric_key": "m"})).ok()
    assert len(body["metrics"]) == 25 and not body.get("next_page_token")
    # The client's own page size.
    body = (
        await api.get(
            "/metrics/get-history", {"run_id": run_id, "metric_key": "m", "max_results": "25000"}
        )
    ).ok()
    assert len(body["metrics"]) == 25


async def test_get_history_unknown_key_is_empty(api: Api) -> None:
    run_id = await api.new_run_id()
    body = (await api.get("/metrics/get-history", {"run_id": run_id, "metric_key": "never"})).ok()
    assert body.get("metrics", []) == []
    assert not body.get("next_page_token")


async def test_get_history_order_within_step(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", 3.0, timestamp=30, step=1)).ok()
    (await api.log_metric(run_id, "m", 1.0, timestamp=10, step=1)).ok()
    (await api.log_metric(run_id, "m", 0.0, timestamp=99, step=0)).ok()
    history = await api.history(run_id, "m")
    assert [(m["step"], m["timestamp"]) for m in history] == [(0, 99), (1, 10), (1, 30)]


# ---------------------------------------------------------------- get-history-bulk-interval


async def _bulk(api: Api, run_ids: list[str], key: str, **params: Any) -> list[dict[str, Any]]:
    query = (
        [("run_ids", r) for r in run_ids]
        + [("metric_key", key)]
        + [(k, str(v)) for k, v in params.items()]
    )
    return (await api.get("/metrics/get-history-bulk-interval", query)).ok().get("metrics", [])


async def test_bulk_interval_all_points_when_few(api: Api) -> None:
    run_id = await api.new_run_id()
    (
        await api.log_batch(
            run_id, metrics=[{"key": "m", "value": i, "timestamp": 1, "step": i} for i in range(5)]
        )
    ).ok()
    metrics = await _bulk(api, [run_id], "m")
    assert [m["step"] for m in metrics] == [0, 1, 2, 3, 4]
    assert all(m["run_id"] == run_id and m["key"] == "m" for m in metrics)


async def test_bulk_interval_sampling(api: Api) -> None:
    exp_id = await api.create_experiment()
    run_a = await api.new_run_id(exp_id)
    run_b = await api.new_run_id(exp_id)
    (
        await api.log_batch(
            run_a, metrics=[{"key": "m", "value": i, "timestamp": 1, "step": i} for i in range(100)]
        )
    ).ok()
    (
        await api.log_batch(
            run_b,
            metrics=[{"key": "m", "value": i, "timestamp": 1, "step": i} for i in range(3, 50)],
        )
    ).ok()
    metrics = await _bulk(api, [run_a, run_b], "m", max_results=10)
    steps_a = [m["step"] for m in metrics if m["run_id"] == run_a]
    steps_b = [m["step"] for m in metrics if m["run_id"] == run_b]
    assert steps_a == sorted(steps_a) and steps_b == sorted(steps_b)
    # Boundaries kept: each run's first and last step.
    assert steps_a[0] == 0 and steps_a[-1] == 99
    assert steps_b[0] == 3 and steps_b[-1] == 49
    # Sampled down, roughly to max_results (plus the boundary steps).
    assert 5 <= len(steps_a) <= 10 + 4
    assert 2 <= len(steps_b) <= 10 + 4
    assert len(set(steps_a)) == len(steps_a)


async def test_bulk_interval_step_range(api: Api) -> None:
    run_id = await api.new_run_id()
    (
        await api.log_batch(
            run_id,
            metrics=[{"key": "m", "value": i, "timestamp": 1, "step": i} for i in range(100)],
        )
    ).ok()
    metrics = await _bulk(api, [run_id], "m", start_step=10, end_step=20, max_results=5)
    steps = [m["step"] for m in metrics]
    assert steps[0] == 10 and steps[-1] == 20
    assert all(10 <= s <= 20 for s in steps)
    assert len(steps) <= 5 + 2
    # Equal start and end: that single step.
    metrics = await _bulk(api, [run_id], "m", start_step=42, end_step=42)
    assert [m["step"] for m in metrics] == [42]


async def test_bulk_interval_max_results_one(api: Api) -> None:
    run_id = await api.new_run_id()
    (
        await api.log_batch(
            run_id, metrics=[{"key": "m", "value": i, "timestamp": 1, "step": i} for i in range(10)]
        )
    ).ok()
    steps = [m["step"] for m in await _bulk(api, [run_id], "m", max_results=1)]
    assert 9 in steps and len(steps) <= 3


async def test_history_whole_and_sql_paths_agree(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # Short histories are merged from their chunks in Python; long ones are paged by PostgreSQL.
    # Both must answer the same pages: several requests out of step order, several points per
    # step, identical points carried by two requests, non-finite values, model and dataset.
    from metricgate.stores.postgres import metrics as pg_metrics

    run_id = await api.new_run_id()
    first = [
        {"key": "m", "value": i / 4, "timestamp": t, "step": i}
        for i in range(40, 80)
        for t in (2, 1)
    ]
    second = [{"key": "m", "value": -i, "timestamp": 5, "step": i} for i in range(0, 45)]
    (await api.log_batch(run_id, metrics=first)).ok()
    (await api.log_batch(run_id, metrics=second)).ok()
    (
        await api.log_batch(
            run_id, metrics=[*first[:6], {"key": "m", "value": "NaN", "timestamp": 9, "step": 3}]
        )
    ).ok()
    point = {
        "run_id": run_id,
        "key": "m",
        "value": "Infinity",
        "timestamp": 7,
        "step": 50,
        "model_id": "m-1",
        "dataset_name": "eval",
        "dataset_digest": "d",
    }
    (await api.post("/runs/log-metric", point)).ok()
    expected_points = len(first) + len(second) + 2
    for params in ({}, {"max_results": 7}, {"max_results": 1}):
        monkeypatch.setattr(pg_metrics, "_HISTORY_WHOLE_POINTS", 50_000)
        whole = await api.history(run_id, "m", **params)
        monkeypatch.setattr(pg_metrics, "_HISTORY_WHOLE_POINTS", 3)
        paged = await api.history(run_id, "m", **params)
        assert whole == paged, params
        assert len(whole) == expected_points
        order = [(m["step"], m["timestamp"]) for m in whole]
        assert order == sorted(order)
    assert {"model_id": "m-1", "dataset_name": "eval", "dataset_digest": "d"}.items() <= next(
        m for m in whole if m["value"] == "Infinity"
    ).items()
    # A token that only says an offset (MLflow's format) pages by offset on either path.
    from metricgate.domain.search.paging import encode_page_token

    for limit in (50_000, 3):
        monkeypatch.setattr(pg_metrics, "_HISTORY_WHOLE_POINTS", limit)
        page = (
            await api.get(
                "/metrics/get-history",
                {
                    "run_id": run_id,
                    "metric_key": "m",
                    "max_results": 10,
                    "page_token": encode_page_token(20),
                },
            )
        ).ok()
        assert page["metrics"] == whole[20:30] and page["next_page_token"], limit


async def test_identical_points_read_as_the_plain_copy(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: log_model re-sends a run's step-0 points with each new model's id, choosing
    # them from the run's history by "model_id is None". Reads fold identical points; had they
    # answered with the first model's copy, the second model would have been given none.
    from metricgate.stores.postgres import metrics as pg_metrics

    run_id = await api.new_run_id()
    plain = {"key": "loss", "value": 0.5, "timestamp": 10, "step": 0}
    (await api.log_batch(run_id, metrics=[plain])).ok()
    for model_id in ("m-b", "m-a", "m-c"):
        (await api.log_batch(run_id, metrics=[{**plain, "model_id": model_id}])).ok()
    (
        await api.log_batch(
            run_id,
            metrics=[
                {**plain, "step": 1, "model_id": "m-b"},
                {**plain, "step": 1, "model_id": "m-a"},
            ],
        )
    ).ok()
    for whole in (50_000, 0):
        monkeypatch.setattr(pg_metrics, "_HISTORY_WHOLE_POINTS", whole)
        monkeypatch.setattr(pg_metrics, "_BULK_WHOLE_ROWS", whole)
        history = await api.history(run_id, "loss")
        assert history == [plain, {**plain, "step": 1, "model_id": "m-a"}], whole
        assert await _bulk(api, [run_id], "loss") == [
            {**point, "run_id": run_id} for point in history
        ]


async def test_bulk_interval_whole_and_two_query_paths_agree(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short histories are read whole and sampled in Python; long ones sample in two queries.
    # Both must answer the same, sampling, ranges, several points per step and run order included.
    from metricgate.stores.postgres import metrics as pg_metrics

    exp_id = await api.create_experiment()
    run_a, run_b = await api.new_run_id(exp_id), await api.new_run_id(exp_id)
    points = [
        {"key": "m", "value": i, "timestamp": t, "step": i * 3} for i in range(120) for t in (1, 2)
    ]
    (await api.log_batch(run_a, metrics=points)).ok()
    (
        await api.log_batch(
            run_b,
            metrics=[{"key": "m", "value": -i, "timestamp": 5, "step": i} for i in range(7, 60)],
        )
    ).ok()
    queries = [
        {},
        {"max_results": 10},
        {"max_results": 1},
        {"start_step": 30, "end_step": 90, "max_results": 7},
    ]
    for runs in ([run_a, run_b], [run_b, run_a, run_b]):
        for params in queries:
            monkeypatch.setattr(pg_metrics, "_BULK_WHOLE_ROWS", 20_000)
            whole = await _bulk(api, runs, "m", **params)
            monkeypatch.setattr(pg_metrics, "_BULK_WHOLE_ROWS", 5)
            two_queries = await _bulk(api, runs, "m", **params)
            assert whole == two_queries, (runs, params)
            assert whole and [m["run_id"] for m in whole] == sorted(
                (m["run_id"] for m in whole), key=runs.index
            )


async def test_bulk_interval_points_match_get_history_exactly(api: Api) -> None:
    # Bulk points are encoded by PostgreSQL, history points in Python: the same point must come
    # out the same (non-finite values, -0.0, big numbers, unicode keys, model and dataset fields).
    run_id = await api.new_run_id()
    values = ["NaN", "Infinity", "-Infinity", -0.0, 1e-5, 1e300, 0.1, 123456789012.5, -(2**53)]
    key = "grüße/val loss:ünï"
    metrics = [
        {"key": key, "value": v, "timestamp": 2**62 + i, "step": i} for i, v in enumerate(values)
    ]
    (await api.log_batch(run_id, metrics=metrics)).ok()
    point = {
        "run_id": run_id,
        "key": key,
        "value": 7.5,
        "timestamp": 5,
        "step": 100,
        "model_id": "m-abc",
        "dataset_name": "eval",
        "dataset_digest": "d1",
    }
    (await api.post("/runs/log-metric", point)).ok()
    history = await api.history(run_id, key)
    bulk = await _bulk(api, [run_id], key)
    assert len(bulk) == len(values) + 1, (bulk, history)
    assert bulk == [{**point, "run_id": run_id} for point in history]


async def test_bulk_interval_nan_values(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", "NaN", timestamp=1, step=0)).ok()
    reply = await api.get(
        "/metrics/get-history-bulk-interval", {"run_ids": run_id, "metric_key": "m"}
    )
    assert [m["value"] for m in reply.ok()["metrics"]] == ["NaN"]


# ---------------------------------------------------------------- inputs and outputs


async def test_log_inputs_and_outputs_visible_in_run(api: Api) -> None:
    exp_id = await api.create_experiment()
    run_id = await api.new_run_id(exp_id)
    dataset = {
        "name": "iris",
        "digest": "abc123",
        "source_type": "local",
        "source": '{"uri": "/data/iris.csv"}',
        "schema": '{"mlflow_colspec": []}',
        "profile": '{"num_rows": 150}',
    }
    (
        await api.post(
            "/runs/log-inputs",
            {
                "run_id": run_id,
                "datasets": [
                    {
                        "tags": [{"key": "mlflow.data.context", "value": "training"}],
                        "dataset": dataset,
                    }
                ],
                "models": [{"model_id": "m-input"}],
            },
        )
    ).ok()
    model = (
        await api.post(
            "/logged-models", {"experiment_id": exp_id, "name": "model", "source_run_id": run_id}
        )
    ).ok()
    model_id = model["model"]["info"]["model_id"]
    (
        await api.post(
            "/runs/outputs", {"run_id": run_id, "models": [{"model_id": model_id, "step": 0}]}
        )
    ).ok()

    run = await api.get_run(run_id)
    inputs = run["inputs"]["dataset_inputs"]
    assert len(inputs) == 1
    assert inputs[0]["dataset"] == dataset
    assert inputs[0]["tags"] == [{"key": "mlflow.data.context", "value": "training"}]
    assert run["inputs"]["model_inputs"] == [{"model_id": "m-input"}]
    assert run["outputs"]["model_outputs"] == [{"model_id": model_id, "step": 0}]

    # Logging the same dataset again does not duplicate it.
    (
        await api.post(
            "/runs/log-inputs", {"run_id": run_id, "datasets": [{"dataset": dataset, "tags": []}]}
        )
    ).ok()
    assert len((await api.get_run(run_id))["inputs"]["dataset_inputs"]) == 1


# ---------------------------------------------------------------- logged models


async def test_logged_model_lifecycle(api: Api) -> None:
    exp_id = await api.create_experiment()
    run_id = await api.new_run_id(exp_id)
    created = (
        await api.post(
            "/logged-models",
            {
                "experiment_id": exp_id,
                "name": "model",
                "model_type": "sklearn",
                "source_run_id": run_id,
                "params": [{"key": "alpha", "value": "0.5"}],
                "tags": [{"key": "mlflow.source.type", "value": "LOCAL"}],
            },
        )
    ).ok()["model"]
    info = created["info"]
    model_id = info["model_id"]
    assert model_id.startswith("m-")
    assert info["experiment_id"] == exp_id and isinstance(info["experiment_id"], str)
    assert info["name"] == "model"
    assert info["model_type"] == "sklearn"
    assert info["source_run_id"] == run_id
    assert info["status"] == "LOGGED_MODEL_PENDING"
    assert info["artifact_uri"] == f"mlflow-artifacts:/{exp_id}/models/{model_id}/artifacts"
    assert isinstance(info["creation_timestamp_ms"], int)
    assert kv(info["tags"]) == {"mlflow.source.type": "LOCAL"}
    assert kv(created["data"]["params"]) == {"alpha": "0.5"}

    got = (await api.get(f"/logged-models/{model_id}")).ok()["model"]
    assert got == created

    finalized = (
        await api.patch(
            f"/logged-models/{model_id}", {"model_id": model_id, "status": "LOGGED_MODEL_READY"}
        )
    ).ok()["model"]
    assert finalized["info"]["status"] == "LOGGED_MODEL_READY"
    # Enum by number: 3 = LOGGED_MODEL_UPLOAD_FAILED.
    failed = (
        await api.patch(f"/logged-models/{model_id}", {"model_id": model_id, "status": 3})
    ).ok()["model"]
    assert failed["info"]["status"] == "LOGGED_MODEL_UPLOAD_FAILED"

    (
        await api.patch(
            f"/logged-models/{model_id}/tags",
            {"tags": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}]},
        )
    ).ok()
    assert (await api.delete(f"/logged-models/{model_id}/tags/b")).ok() == {}
    (
        await api.post(
            f"/logged-models/{model_id}/params",
            {"model_id": model_id, "params": [{"key": "beta", "value": "2"}]},
        )
    ).ok()
    got = (await api.get(f"/logged-models/{model_id}")).ok()["model"]
    assert kv(got["info"]["tags"]) == {"mlflow.source.type": "LOCAL", "a": "1"}
    assert kv(got["data"]["params"]) == {"alpha": "0.5", "beta": "2"}

    assert (await api.delete(f"/logged-models/{model_id}")).ok() == {}
    (await api.get(f"/logged-models/{model_id}")).error(404, "RESOURCE_DOES_NOT_EXIST")
    deleted = (await api.get(f"/logged-models/{model_id}", {"allow_deleted": "true"})).ok()["model"]
    assert deleted["info"]["model_id"] == model_id


async def test_logged_model_defaults(api: Api) -> None:
    exp_id = await api.create_experiment()
    info = (await api.post("/logged-models", {"experiment_id": exp_id})).ok()["model"]["info"]
    assert info["name"]  # a generated name
    assert info["status"] == "LOGGED_MODEL_PENDING"


async def test_logged_model_tag_key_with_slash_in_path(api: Api) -> None:
    exp_id = await api.create_experiment()
    model_id = (await api.post("/logged-models", {"experiment_id": exp_id})).ok()["model"]["info"][
        "model_id"
    ]
    (
        await api.patch(
            f"/logged-models/{model_id}/tags",
            {"tags": [{"key": "mlflow.modelVersions", "value": "[]"}]},
        )
    ).ok()
    assert (await api.delete(f"/logged-models/{model_id}/tags/mlflow.modelVersions")).ok() == {}


async def test_logged_model_metrics(api: Api) -> None:
    exp_id = await api.create_experiment()
    run_id = await api.new_run_id(exp_id)
    model_id = (
        await api.post("/logged-models", {"experiment_id": exp_id, "source_run_id": run_id})
    ).ok()["model"]["info"]["model_id"]
    ts = now_ms()
    (
        await api.log_batch(
            run_id,
            metrics=[
                {
                    "key": "acc",
                    "value": 0.9,
                    "timestamp": ts,
                    "step": 0,
                    "model_id": model_id,
                    "dataset_name": "iris",
                    "dataset_digest": "abc",
                },
            ],
        )
    ).ok()
    model = (await api.get(f"/logged-models/{model_id}")).ok()["model"]
    metrics = model["data"]["metrics"]
    assert len(metrics) == 1
    m = metrics[0]
    assert (m["key"], m["value"], m["step"], m["model_id"]) == ("acc", 0.9, 0, model_id)
    assert m.get("dataset_name") == "iris" and m.get("dataset_digest") == "abc"
    assert m.get("run_id") == run_id
    # And on the run's history.
    history = await api.history(run_id, "acc")
    assert history[0]["model_id"] == model_id


async def test_search_logged_models(api: Api) -> None:
    exp_id = await api.create_experiment()
    other = await api.create_experiment()
    ids = []
    for name in ["alpha", "beta", "gamma"]:
        body = (await api.post("/logged-models", {"experiment_id": exp_id, "name": name})).ok()
        ids.append(body["model"]["info"]["model_id"])
    (await api.post("/logged-models", {"experiment_id": other, "name": "alpha"})).ok()

    body = (await api.post("/logged-models/search", {"experiment_ids": [exp_id]})).ok()
    assert sorted(m["info"]["model_id"] for m in body["models"]) == sorted(ids)
    assert not body.get("next_page_token")

    body = (
        await api.post(
            "/logged-models/search", {"experiment_ids": [exp_id], "filter": "name = 'beta'"}
        )
    ).ok()
    assert [m["info"]["name"] for m in body["models"]] == ["beta"]

    seen: list[str] = []
    token = None
    for _ in range(10):
        req: dict[str, Any] = {"experiment_ids": [exp_id], "max_results": 2}
        if token:
            req["page_token"] = token
        page = (await api.post("/logged-models/search", req)).ok()
        seen.extend(m["info"]["model_id"] for m in page.get("models", []))
        token = page.get("next_page_token")
        if not token:
            break
    assert sorted(seen) == sorted(ids)

    ordered = (
        await api.post(
            "/logged-models/search",
            {"experiment_ids": [exp_id], "order_by": [{"field_name": "name", "ascending": False}]},
        )
    ).ok()
    assert [m["info"]["name"] for m in ordered["models"]] == ["gamma", "beta", "alpha"]


# ---------------------------------------------------------------- runs/search (basic)


async def test_search_runs_basic(api: Api) -> None:
    exp_id = await api.create_experiment()
    run_ids = []
    for i in range(3):
        run = await api.create_run(exp_id, start_time=1000 + i)
        run_ids.append(run["info"]["run_id"])
        (await api.log_metric(run["info"]["run_id"], "loss", float(i), timestamp=1)).ok()
    body = (await api.post("/runs/search", {"experiment_ids": [exp_id]})).ok()
    # Default order: start_time DESC.
    assert [r["info"]["run_id"] for r in body["runs"]] == list(reversed(run_ids))
    assert all(r["info"]["experiment_id"] == exp_id for r in body["runs"])

    body = (
        await api.post("/runs/search", {"experiment_ids": [exp_id], "filter": "metrics.loss < 1.5"})
    ).ok()
    assert sorted(r["info"]["run_id"] for r in body["runs"]) == sorted(run_ids[:2])

    seen: list[str] = []
    token = None
    for _ in range(10):
        req: dict[str, Any] = {"experiment_ids": [exp_id], "max_results": 2}
        if token:
            req["page_token"] = token
        page = (await api.post("/runs/search", req)).ok()
        seen.extend(r["info"]["run_id"] for r in page.get("runs", []))
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == list(reversed(run_ids))


# ---------------------------------------------------------------- health and server info


async def test_health(api: Api) -> None:
    reply = await api.get("/health", absolute=True)
    assert reply.status == 200 and reply.text == "OK"


async def test_ready(api: Api) -> None:
    reply = await api.get("/ready", absolute=True)
    assert reply.status == 200 and reply.text == "OK"


async def test_version(api: Api) -> None:
    reply = await api.get("/version", absolute=True)
    assert reply.status == 200 and reply.text.strip()


@pytest.mark.parametrize(
    "path", ["/api/3.0/mlflow/server-info", "/ajax-api/3.0/mlflow/server-info"]
)
async def test_server_info(api: Api, path: str) -> None:
    body = (await api.get(path, absolute=True)).ok()
    assert isinstance(body["store_type"], str)
    assert body["workspaces_enabled"] is False
    assert isinstance(body["multipart_uploads_enabled"], bool)
    assert isinstance(body["multipart_downloads_enabled"], bool)


# ---------------------------------------------------------------- the UI prefix


async def test_ajax_prefix(api: Api, ajax: Api) -> None:
    exp_id = await ajax.create_experiment("via-ajax")
    run = await ajax.create_run(exp_id)
    run_id = run["info"]["run_id"]
    (await ajax.log_metric(run_id, "m", 1.5, timestamp=1, step=2)).ok()
    (await ajax.post("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "v"})).ok()
    # Both prefixes see the same data.
    via_api = await api.get_run(run_id)
    via_ajax = await ajax.get_run(run_id)
    assert via_api == via_ajax
    assert kv(via_ajax["data"]["metrics"]) == {"m": 1.5}
    exp = (await ajax.get("/experiments/get-by-name", {"experiment_name": "via-ajax"})).ok()[
        "experiment"
    ]
    assert exp["experiment_id"] == exp_id
    assert [m["step"] for m in await ajax.history(run_id, "m")] == [2]
    bulk = (
        await ajax.get("/metrics/get-history-bulk-interval", {"run_ids": run_id, "metric_key": "m"})
    ).ok()
    assert [m["value"] for m in bulk["metrics"]] == [1.5]
    body = (await ajax.post("/runs/search", {"experiment_ids": [exp_id]})).ok()
    assert [r["info"]["run_id"] for r in body["runs"]] == [run_id]
    model = (await ajax.post("/logged-models", {"experiment_id": exp_id})).ok()["model"]["info"][
        "model_id"
    ]
    (await ajax.get(f"/logged-models/{model}")).ok()


# ---------------------------------------------------------------- strict JSON everywhere


async def test_responses_are_strict_json(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_metric(run_id, "m", "NaN", timestamp=1)).ok()
    for reply in [
        await api.get("/runs/get", {"run_id": run_id}),
        await api.get("/metrics/get-history", {"run_id": run_id, "metric_key": "m"}),
        await api.post("/runs/search", {"experiment_ids": ["0"]}),
    ]:
        body = orjson.loads(reply.raw)  # raises on bare NaN
        assert isinstance(body, dict)


async def test_set_tag_run_name_renames_run(api: Api) -> None:
    run_id = await api.new_run_id()
    (
        await api.post(
            "/runs/set-tag", {"run_id": run_id, "key": "mlflow.runName", "value": "via-tag"}
        )
    ).ok()
    run = await api.get_run(run_id)
    assert run["info"]["run_name"] == "via-tag"
    assert kv(run["data"]["tags"])["mlflow.runName"] == "via-tag"


async def test_large_batch_dedup_latest_and_nan(api: Api) -> None:
    # Big batches take another write path (COPY through a staging table); same rules apply.
    run_id = await api.new_run_id()
    points = [
        {"key": f"k{i % 3}", "value": float(i), "timestamp": 100, "step": i // 3}
        for i in range(600)
    ]
    points += points[:50]  # duplicates inside the batch
    points.append({"key": "nan", "value": "NaN", "timestamp": 1, "step": 0})
    points.append({"key": "nan", "value": "NaN", "timestamp": 1, "step": 0})
    points.append({"key": "inf", "value": "-Infinity", "timestamp": 1, "step": 0})
    (await api.log_batch(run_id, metrics=points[:1000])).ok()
    (await api.log_batch(run_id, metrics=points[:300])).ok()  # replay: no new rows
    latest = by_key((await api.get_run(run_id))["data"]["metrics"])
    assert latest["k0"]["value"] == 597.0 and latest["k0"]["step"] == 199
    assert latest["k2"]["value"] == 599.0
    assert latest["nan"]["value"] == "NaN"
    assert latest["inf"]["value"] == "-Infinity"
    assert len(await api.history(run_id, "k1")) == 200
    assert len(await api.history(run_id, "nan")) == 1


async def test_int64_extremes_round_trip(api: Api) -> None:
    run_id = await api.new_run_id()
    big = 2**63 - 1
    (await api.log_metric(run_id, "m", 1.0, timestamp=big, step=big)).ok()
    (await api.log_metric(run_id, "m", 2.0, timestamp=0, step=-(2**63))).ok()
    (await api.log_metric(run_id, "m", 1e308, timestamp=str(big), step="0")).ok()
    latest = by_key((await api.get_run(run_id))["data"]["metrics"])["m"]
    assert (latest["timestamp"], latest["step"], latest["value"]) == (big, big, 1.0)
    history = await api.history(run_id, "m")
    assert [(m["step"], m["timestamp"]) for m in history] == [(-(2**63), 0), (0, big), (big, big)]
    assert history[1]["value"] == 1e308
