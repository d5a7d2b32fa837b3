"""Every error path answers MLflow's JSON error body with MLflow's status: never a 500, a
traceback or an HTML page.

References: ../shared/mlflow-protocol.md §2-§3; mlflow 3.17.2 server/handlers.py,
utils/validation.py and store/tracking/sqlalchemy_store.py.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest

# ``api`` / ``ajax`` fixtures (tests/api/conftest.py) wrap the shared ``client``; their replies
# have ``.ok()`` (200 + JSON object) and ``.error(status, code, message_part)`` assertions.
Api = Any

BAD = 400
INVALID = "INVALID_PARAMETER_VALUE"
MISSING = "RESOURCE_DOES_NOT_EXIST"


def now_ms() -> int:
    return int(time.time() * 1000)


def unknown_run_id() -> str:
    return uuid.uuid4().hex


def metric(key: str = "m", value: Any = 1.0, ts: Any = None, step: Any = 0) -> dict[str, Any]:
    return {"key": key, "value": value, "timestamp": now_ms() if ts is None else ts, "step": step}


# ---------------------------------------------------------------- malformed bodies


POST_ENDPOINTS = [
    "/experiments/create",
    "/experiments/delete",
    "/experiments/update",
    "/experiments/search",
    "/runs/create",
    "/runs/update",
    "/runs/log-metric",
    "/runs/log-parameter",
    "/runs/set-tag",
    "/runs/log-batch",
    "/runs/log-inputs",
    "/runs/outputs",
    "/runs/search",
    "/logged-models",
    "/logged-models/search",
]


@pytest.mark.parametrize(
    "data",
    [
        b"{",
        b"{'name': 'x'}",
        b'{"name": }',
        b"not json",
        b"\xff\xfe\x00",
        b'{"a": tru}',
        b'{"a": 1,}',
    ],
)
async def test_malformed_json(api: Api, data: bytes) -> None:
    for path in POST_ENDPOINTS:
        reply = await api.request(
            "POST", path, data=data, headers={"Content-Type": "application/json"}
        )
        reply.error(400, ("BAD_REQUEST", INVALID))


@pytest.mark.parametrize("data", [b"[]", b"[1, 2]", b"1", b'"text"', b"null", b"true"])
async def test_non_object_json(api: Api, data: bytes) -> None:
    for path in POST_ENDPOINTS:
        reply = await api.request(
            "POST", path, data=data, headers={"Content-Type": "application/json"}
        )
        reply.error(400, ("BAD_REQUEST", INVALID))


async def test_malformed_json_on_patch_and_path_routes(api: Api) -> None:
    exp = await api.create_experiment()
    model = (await api.post("/logged-models", {"experiment_id": exp})).ok()["model"]["info"][
        "model_id"
    ]
    for method, path in [
        ("PATCH", f"/logged-models/{model}"),
        ("PATCH", f"/logged-models/{model}/tags"),
        ("POST", f"/logged-models/{model}/params"),
    ]:
        reply = await api.request(
            method, path, data=b"{oops", headers={"Content-Type": "application/json"}
        )
        reply.error(400, ("BAD_REQUEST", INVALID))


# ---------------------------------------------------------------- wrong field types


async def test_experiment_id_number_instead_of_string(api: Api) -> None:
    # protocol §0: string fields must be JSON strings.
    (await api.post("/runs/create", {"experiment_id": 0})).error(BAD, INVALID, "experiment_id")
    (await api.post("/experiments/delete", {"experiment_id": 1})).error(
        BAD, INVALID, "experiment_id"
    )
    (await api.post("/logged-models", {"experiment_id": 0})).error(BAD, INVALID, "experiment_id")
    (await api.post("/runs/search", {"experiment_ids": [0]})).error(BAD, INVALID, "experiment_ids")
    (await api.post("/logged-models/search", {"experiment_ids": [0]})).error(
        BAD, INVALID, "experiment_ids"
    )


async def test_experiment_id_not_an_integer(api: Api) -> None:
    (await api.get("/experiments/get", {"experiment_id": "abc"})).error(BAD, INVALID)
    (await api.post("/runs/create", {"experiment_id": "abc"})).error(BAD, INVALID)
    (await api.post("/runs/search", {"experiment_ids": ["1", "x"]})).error(BAD, INVALID)
    (await api.post("/experiments/delete", {"experiment_id": "1.5"})).error(BAD, INVALID)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("value", "abc"),
        ("value", True),
        ("value", [1]),
        ("value", {"v": 1}),
        ("timestamp", "x"),
        ("timestamp", 1.5),
        ("timestamp", True),
        ("timestamp", -1),
        ("step", "y"),
        ("step", "99999999999999999999"),
        ("key", 5),
        ("run_id", 5),
    ],
)
async def test_log_metric_wrong_types(api: Api, field: str, value: Any) -> None:
    run_id = await api.new_run_id()
    body: dict[str, Any] = {"run_id": run_id, **metric("loss")}
    body[field] = value
    (await api.post("/runs/log-metric", body)).error(BAD, INVALID)
    # Nothing was stored.
    assert (await api.get_run(run_id))["data"].get("metrics", []) == []


@pytest.mark.parametrize(
    "item",
    [
        {"key": "m", "value": "abc", "timestamp": 1},
        {"key": "m", "value": 1.0, "timestamp": "x"},
        {"key": "m", "value": 1.0, "timestamp": 1, "step": "s"},
        {"key": 1, "value": 1.0, "timestamp": 1},
        "not-an-object",
        ["m", 1.0, 1],
    ],
)
async def test_log_batch_bad_metric_items(api: Api, item: Any) -> None:
    run_id = await api.new_run_id()
    (await api.post("/runs/log-batch", {"run_id": run_id, "metrics": [item]})).error(BAD, INVALID)


@pytest.mark.parametrize(
    "body",
    [
        {"metrics": {"key": "m"}},
        {"params": "p=1"},
        {"tags": {"k": "v"}},
        {"params": [{"key": "p", "value": 1}]},
        {"params": [{"key": 1, "value": "1"}]},
        {"tags": [{"key": "t", "value": 2}]},
        {"tags": ["t"]},
    ],
)
async def test_log_batch_bad_lists(api: Api, body: dict[str, Any]) -> None:
    run_id = await api.new_run_id()
    (await api.post("/runs/log-batch", {"run_id": run_id, **body})).error(BAD, INVALID)


async def test_other_wrong_types(api: Api) -> None:
    exp = await api.create_experiment()
    run_id = await api.new_run_id(exp)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("/experiments/create", {"name": 5}),
        ("/experiments/create", {"name": "ok-name", "artifact_location": 3}),
        ("/experiments/create", {"name": "ok-name-2", "tags": "k=v"}),
        ("/experiments/create", {"name": "ok-name-3", "tags": [{"key": "k", "value": 1}]}),
        ("/experiments/update", {"experiment_id": exp, "new_name": 7}),
        ("/experiments/set-experiment-tag", {"experiment_id": exp, "key": 1, "value": "v"}),
        ("/runs/create", {"experiment_id": exp, "run_name": 3}),
        ("/runs/create", {"experiment_id": exp, "start_time": "soon"}),
        ("/runs/create", {"experiment_id": exp, "tags": [{"key": "k", "value": 1}]}),
        ("/runs/update", {"run_id": run_id, "end_time": "later"}),
        ("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": 1}),
        ("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": ["1"]}),
        ("/runs/set-tag", {"run_id": run_id, "key": "t", "value": 5}),
        ("/runs/search", {"experiment_ids": exp}),
        ("/runs/search", {"experiment_ids": [exp], "max_results": "many"}),
        ("/runs/search", {"experiment_ids": [exp], "order_by": "metrics.x"}),
        ("/runs/search", {"experiment_ids": [exp], "filter": 5}),
        ("/experiments/search", {"max_results": "lots"}),
        ("/experiments/search", {"order_by": [1]}),
        ("/runs/outputs", {"run_id": run_id, "models": [{"model_id": "m-1", "step": "x"}]}),
        ("/runs/outputs", {"run_id": run_id, "models": "m-1"}),
        ("/runs/log-inputs", {"run_id": run_id, "datasets": [{"dataset": "d"}]}),
        ("/logged-models", {"experiment_id": exp, "params": [{"key": "p", "value": 1}]}),
        ("/logged-models", {"experiment_id": exp, "name": 1}),
        ("/logged-models/search", {"experiment_ids": [exp], "max_results": "x"}),
    ]
    for path, body in cases:
        (await api.post(path, body)).error(BAD, (INVALID, "BAD_REQUEST"))


async def test_query_string_wrong_types(api: Api) -> None:
    run_id = await api.new_run_id()
    (
        await api.get(
            "/metrics/get-history", {"run_id": run_id, "metric_key": "m", "max_results": "x"}
        )
    ).error(BAD, INVALID)
    (await api.get("/experiments/search", {"max_results": "x"})).error(BAD, INVALID)
    (await api.get("/runs/search", {"max_results": "1.5"})).error(BAD, INVALID)
    params = {"run_ids": run_id, "metric_key": "m", "start_step": "a", "end_step": "b"}
    (await api.get("/metrics/get-history-bulk-interval", params)).error(BAD, INVALID)


# ---------------------------------------------------------------- missing required fields


async def test_missing_required_fields(api: Api) -> None:
    exp = await api.create_experiment()
    run_id = await api.new_run_id(exp)
    ts = now_ms()
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("/experiments/create", {}, "name"),
        ("/experiments/create", {"name": ""}, "name"),
        ("/experiments/delete", {}, "experiment_id"),
        ("/experiments/restore", {}, "experiment_id"),
        ("/experiments/update", {"new_name": "x"}, "experiment_id"),
        ("/experiments/set-experiment-tag", {"experiment_id": exp, "value": "v"}, "key"),
        ("/experiments/delete-experiment-tag", {"experiment_id": exp}, "key"),
        ("/runs/update", {"status": "FINISHED"}, "run_id"),
        ("/runs/delete", {}, "run_id"),
        ("/runs/restore", {}, "run_id"),
        ("/runs/set-tag", {"run_id": run_id, "value": "v"}, "key"),
        ("/runs/set-tag", {"key": "k", "value": "v"}, "run_id"),
        ("/runs/delete-tag", {"run_id": run_id}, "key"),
        ("/runs/log-parameter", {"run_id": run_id, "value": "v"}, "key"),
        ("/runs/log-parameter", {"key": "k", "value": "v"}, "run_id"),
        ("/runs/log-metric", {"run_id": run_id, "value": 1.0, "timestamp": ts}, "key"),
        ("/runs/log-metric", {"run_id": run_id, "key": "m", "timestamp": ts}, "value"),
        ("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0}, "timestamp"),
        (
            "/runs/log-metric",
            {"run_id": run_id, "key": "m", "value": None, "timestamp": ts},
            "value",
        ),
        ("/runs/log-metric", {"key": "m", "value": 1.0, "timestamp": ts}, "run_id"),
        ("/runs/log-batch", {"metrics": []}, "run_id"),
        (
            "/runs/log-batch",
            {"run_id": run_id, "metrics": [{"key": "m", "value": 1.0}]},
            "timestamp",
        ),
        (
            "/runs/log-batch",
            {"run_id": run_id, "metrics": [{"key": "m", "timestamp": ts}]},
            "value",
        ),
        ("/runs/log-batch", {"run_id": run_id, "metrics": [{"value": 1, "timestamp": ts}]}, "key"),
        ("/runs/log-batch", {"run_id": run_id, "params": [{"value": "v"}]}, "key"),
        ("/runs/log-batch", {"run_id": run_id, "tags": [{"value": "v"}]}, "key"),
        ("/runs/log-inputs", {"datasets": []}, "run_id"),
        ("/runs/log-inputs", {"run_id": run_id, "datasets": [{"tags": []}]}, "dataset"),
        (
            "/runs/log-inputs",
            {"run_id": run_id, "datasets": [{"dataset": {"digest": "d"}}]},
            "name",
        ),
        ("/runs/log-inputs", {"run_id": run_id, "models": [{}]}, "model_id"),
        ("/runs/outputs", {"models": []}, "run_id"),
        ("/runs/outputs", {"run_id": run_id, "models": [{"step": 0}]}, "model_id"),
        ("/logged-models", {"name": "m"}, "experiment_id"),
        ("/logged-models/search", {}, "experiment_ids"),
    ]
    for path, body, field in cases:
        message = (await api.post(path, body)).error(BAD, INVALID)
        assert field in message, (path, body, message)


async def test_missing_required_query_fields(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.get("/runs/get")).error(BAD, INVALID, "run_id")
    (await api.get("/experiments/get")).error(BAD, INVALID, "experiment_id")
    (await api.get("/experiments/get-by-name")).error(BAD, INVALID, "experiment_name")
    (await api.get("/metrics/get-history", {"run_id": run_id})).error(BAD, INVALID, "metric_key")
    (await api.get("/metrics/get-history", {"metric_key": "m"})).error(BAD, INVALID, "run_id")
    (await api.get("/metrics/get-history-bulk-interval", {"metric_key": "m"})).error(
        BAD, INVALID, "run_ids"
    )
    (await api.get("/metrics/get-history-bulk-interval", {"run_ids": run_id})).error(
        BAD, INVALID, "metric_key"
    )


async def test_finalize_logged_model_requires_status(api: Api) -> None:
    exp = await api.create_experiment()
    model_id = (await api.post("/logged-models", {"experiment_id": exp})).ok()["model"]["info"][
        "model_id"
    ]
    (await api.patch(f"/logged-models/{model_id}", {"model_id": model_id})).error(
        BAD, INVALID, "status"
    )
    (await api.patch(f"/logged-models/{model_id}", {"status": "LOGGED_MODEL_GONE"})).error(
        BAD, INVALID
    )
    (await api.patch(f"/logged-models/{model_id}", {"status": 17})).error(BAD, INVALID)


# ---------------------------------------------------------------- unknown runs, experiments, models


async def test_unknown_run(api: Api) -> None:
    run_id = unknown_run_id()
    message = (await api.get("/runs/get", {"run_id": run_id})).error(404, MISSING)
    assert message == f"Run with id={run_id} not found"  # observed MLflow reply (protocol §3)
    (await api.get("/runs/get", {"run_uuid": run_id})).error(404, MISSING)
    (await api.get("/metrics/get-history", {"run_id": run_id, "metric_key": "m"})).error(
        404, MISSING
    )
    ts = now_ms()
    for path, body in [
        ("/runs/update", {"run_id": run_id, "status": "FINISHED"}),
        ("/runs/delete", {"run_id": run_id}),
        ("/runs/restore", {"run_id": run_id}),
        ("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": ts}),
        ("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "1"}),
        ("/runs/set-tag", {"run_id": run_id, "key": "t", "value": "1"}),
        ("/runs/delete-tag", {"run_id": run_id, "key": "t"}),
        ("/runs/log-batch", {"run_id": run_id, "metrics": [metric()]}),
        ("/runs/log-batch", {"run_id": run_id, "params": [{"key": "p", "value": "v"}]}),
        ("/runs/log-batch", {"run_id": run_id}),
        ("/runs/log-inputs", {"run_id": run_id, "models": [{"model_id": "m-1"}]}),
        ("/runs/outputs", {"run_id": run_id, "models": [{"model_id": "m-1", "step": 0}]}),
    ]:
        (await api.post(path, body)).error(404, MISSING, run_id)


async def test_unknown_run_does_not_store_metrics(api: Api) -> None:
    run_id = unknown_run_id()
    (await api.post("/runs/log-metric", {"run_id": run_id, **metric("orphan")})).error(404, MISSING)
    (await api.log_batch(run_id, metrics=[metric("orphan")])).error(404, MISSING)
    (await api.get("/metrics/get-history", {"run_id": run_id, "metric_key": "orphan"})).error(
        404, MISSING
    )


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "-abc", "a b", "x" * 300, "run/1"])
async def test_malformed_run_id(api: Api, run_id: str) -> None:
    (await api.get("/runs/get", {"run_id": run_id})).error((400, 404), (INVALID, MISSING))
    (await api.post("/runs/log-metric", {"run_id": run_id, **metric()})).error(
        (400, 404), (INVALID, MISSING)
    )


async def test_unknown_experiment(api: Api) -> None:
    (await api.get("/experiments/get", {"experiment_id": "987654"})).error(404, MISSING)
    (await api.get("/experiments/get", {"experiment_id": str(2**63 - 1)})).error(404, MISSING)
    (await api.get("/experiments/get-by-name", {"experiment_name": "no such experiment"})).error(
        404, MISSING
    )
    (await api.post("/runs/create", {"experiment_id": "987654"})).error(404, MISSING)
    (await api.post("/experiments/delete", {"experiment_id": "987654"})).error(404, MISSING)
    (await api.post("/experiments/restore", {"experiment_id": "987654"})).error(404, MISSING)
    (await api.post("/experiments/update", {"experiment_id": "987654", "new_name": "n"})).error(
        404, MISSING
    )
    (
        await api.post(
            "/experiments/set-experiment-tag", {"experiment_id": "987654", "key": "k", "value": "v"}
        )
    ).error(404, MISSING)
    (await api.post("/logged-models", {"experiment_id": "987654"})).error(404, MISSING)


async def test_experiment_id_out_of_range(api: Api) -> None:
    (await api.get("/experiments/get", {"experiment_id": str(2**64)})).error(
        (400, 404), (INVALID, MISSING)
    )
    (await api.post("/runs/create", {"experiment_id": "99999999999999999999999"})).error(
        (400, 404), (INVALID, MISSING)
    )


async def test_unknown_logged_model(api: Api) -> None:
    missing = "m-" + uuid.uuid4().hex
    (await api.get(f"/logged-models/{missing}")).error(404, MISSING)
    (
        await api.patch(
            f"/logged-models/{missing}", {"model_id": missing, "status": "LOGGED_MODEL_READY"}
        )
    ).error(404, MISSING)
    (await api.delete(f"/logged-models/{missing}")).error(404, MISSING)
    (
        await api.patch(f"/logged-models/{missing}/tags", {"tags": [{"key": "k", "value": "v"}]})
    ).error(404, MISSING)
    (await api.delete(f"/logged-models/{missing}/tags/k")).error(404, MISSING)
    (
        await api.post(f"/logged-models/{missing}/params", {"params": [{"key": "p", "value": "v"}]})
    ).error(404, MISSING)


async def test_logged_model_bad_references(api: Api) -> None:
    exp = await api.create_experiment()
    (
        await api.post("/logged-models", {"experiment_id": exp, "source_run_id": unknown_run_id()})
    ).error(404, MISSING)
    params = [{"key": f"p{i}", "value": "v"} for i in range(101)]
    (await api.post("/logged-models", {"experiment_id": exp, "params": params})).error(BAD, INVALID)
    model_id = (await api.post("/logged-models", {"experiment_id": exp})).ok()["model"]["info"][
        "model_id"
    ]
    (await api.delete(f"/logged-models/{model_id}/tags/nope")).error(404, MISSING)


async def test_unknown_tags(api: Api) -> None:
    exp = await api.create_experiment()
    run_id = await api.new_run_id(exp)
    (await api.post("/runs/delete-tag", {"run_id": run_id, "key": "never-set"})).error(404, MISSING)
    (
        await api.post(
            "/experiments/delete-experiment-tag", {"experiment_id": exp, "key": "never-set"}
        )
    ).error(404, MISSING)


# ---------------------------------------------------------------- routing


UNKNOWN_PATHS = [
    "/api/2.0/mlflow/nope",
    "/api/2.0/mlflow/runs/nope",
    "/api/2.0/mlflow/runs/get/extra",
    "/api/2.0/nothing",
    "/api/9.9/mlflow/runs/get",
    "/ajax-api/2.0/mlflow/nope",
    "/nope",
    "/api/2.0/mlflow/registered-models/nope",  # the registry exists; unknown registry paths do not
]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_endpoint(api: Api, method: str) -> None:
    for path in UNKNOWN_PATHS:
        reply = await api.request(
            method, path, absolute=True, body={} if method == "POST" else None
        )
        reply.error(404, "ENDPOINT_NOT_FOUND")


async def test_wrong_method(api: Api) -> None:
    for method, path in [
        ("GET", "/runs/create"),
        ("GET", "/runs/log-batch"),
        ("PUT", "/runs/log-metric"),
        ("DELETE", "/experiments/create"),
        ("POST", "/runs/get"),
        ("POST", "/metrics/get-history"),
        ("PATCH", "/runs/update"),
        ("PUT", "/logged-models"),
    ]:
        reply = await api.request(method, path, body={} if method != "GET" else None)
        reply.error((404, 405), "ENDPOINT_NOT_FOUND")


# ---------------------------------------------------------------- log-batch limits


async def test_batch_too_many_metrics(api: Api) -> None:
    run_id = await api.new_run_id()
    ts = now_ms()
    reply = await api.log_batch(run_id, metrics=[metric(f"m{i}", 1.0, ts) for i in range(1001)])
    message = reply.error(BAD, INVALID)
    assert message == (
        "A batch logging request can contain at most 1000 metrics. Got 1001 metrics. "
        "Please split up metrics across multiple requests and try again."
    )
    assert (await api.get_run(run_id))["data"].get("metrics", []) == []


async def test_batch_too_many_params(api: Api) -> None:
    run_id = await api.new_run_id()
    reply = await api.log_batch(run_id, params=[{"key": f"p{i}", "value": "v"} for i in range(101)])
    message = reply.error(BAD, INVALID)
    assert message == (
        "A batch logging request can contain at most 100 params. Got 101 params. "
        "Please split up params across multiple requests and try again."
    )
    assert (await api.get_run(run_id))["data"].get("params", []) == []


async def test_batch_too_many_tags(api: Api) -> None:
    run_id = await api.new_run_id()
    reply = await api.log_batch(run_id, tags=[{"key": f"t{i}", "value": "v"} for i in range(101)])
    message = reply.error(BAD, INVALID)
    assert message == (
        "A batch logging request can contain at most 100 tags. Got 101 tags. "
        "Please split up tags across multiple requests and try again."
    )


async def test_batch_too_many_entities(api: Api) -> None:
    run_id = await api.new_run_id()
    ts = now_ms()
    reply = await api.log_batch(
        run_id,
        metrics=[metric(f"m{i}", 1.0, ts) for i in range(1000)],
        params=[{"key": "p", "value": "v"}],
    )
    message = reply.error(BAD, INVALID)
    # mlflow/utils/validation.py _validate_batch_log_limits
    assert message == (
        "A batch logging request can contain at most 1000 metrics, params, and tags. "
        "Got 1001 metrics, params, and tags. "
        "Please split up metrics, params, and tags across multiple requests and try again."
    )
    run = await api.get_run(run_id)
    assert run["data"].get("metrics", []) == [] and run["data"].get("params", []) == []


async def test_batch_at_limits_is_accepted(api: Api) -> None:
    run_id = await api.new_run_id()
    ts = now_ms()
    (await api.log_batch(run_id, metrics=[metric(f"m{i}", 1.0, ts) for i in range(1000)])).ok()
    (
        await api.log_batch(
            run_id,
            metrics=[metric(f"n{i}", 1.0, ts) for i in range(800)],
            params=[{"key": f"p{i}", "value": "v"} for i in range(100)],
            tags=[{"key": f"t{i}", "value": "v"} for i in range(100)],
        )
    ).ok()


async def test_batch_duplicate_param_keys(api: Api) -> None:
    run_id = await api.new_run_id()
    reply = await api.log_batch(
        run_id, params=[{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]
    )
    message = reply.error(BAD, INVALID)
    assert message == (
        "Duplicate parameter keys have been submitted: ['a']. Please ensure the request "
        "contains only one param value per param key."
    )
    assert (await api.get_run(run_id))["data"].get("params", []) == []


def _big_batch(run_id: str, size: int) -> bytes:
    # 100 tags whose values are legal (silently truncated to 8000 chars), so only the byte limit applies.
    value = "v" * (size // 100 + 1)
    tags = [{"key": f"t{i}", "value": value} for i in range(100)]
    body = orjson.dumps({"run_id": run_id, "tags": tags})
    assert size < len(body) < 2 * size
    return body


async def test_batch_body_over_1mb(api: Api) -> None:
    run_id = await api.new_run_id()
    body = _big_batch(run_id, 1_050_000)
    reply = await api.request(
        "POST", "/runs/log-batch", data=body, headers={"Content-Type": "application/json"}
    )
    message = reply.error(BAD, INVALID)
    assert "at most 1000000 bytes" in message
    run = await api.get_run(run_id)
    assert [t["key"] for t in run["data"]["tags"]] == ["mlflow.runName"]


async def test_batch_body_over_1mb_chunked(api: Api) -> None:
    # Same limit when the body comes without a Content-Length (chunked transfer encoding).
    run_id = await api.new_run_id()
    body = _big_batch(run_id, 1_050_000)

    async def chunks():  # type: ignore[no-untyped-def]
        for i in range(0, len(body), 65536):
            yield body[i : i + 65536]

    reply = await api.request(
        "POST", "/runs/log-batch", data=chunks(), headers={"Content-Type": "application/json"}
    )
    message = reply.error((BAD, 413), INVALID)
    assert "1000000" in message or "too large" in message.lower()
    run = await api.get_run(run_id)
    assert [t["key"] for t in run["data"]["tags"]] == ["mlflow.runName"]


async def test_body_over_server_limit(api: Api, settings: Any) -> None:
    limit = settings.http.max_body_bytes
    body = orjson.dumps({"run_id": "x", "key": "k", "value": "v" * (limit + 1000)})
    for path in ["/runs/set-tag", "/experiments/create", "/runs/log-batch"]:
        reply = await api.request(
            "POST", path, data=body, headers={"Content-Type": "application/json"}
        )
        if path == "/runs/log-batch":
            reply.error((BAD, 413), INVALID)  # log-batch's own 1 MB rule may answer first
        else:
            reply.error(413, INVALID)


async def test_body_over_server_limit_on_ajax_prefix(api: Api, settings: Any) -> None:
    body = b'{"name": "' + b"n" * (settings.http.max_body_bytes + 10) + b'"}'
    reply = await api.request(
        "POST",
        "/ajax-api/2.0/mlflow/experiments/create",
        data=body,
        absolute=True,
        headers={"Content-Type": "application/json"},
    )
    reply.error(413)


# ---------------------------------------------------------------- invalid keys


INVALID_KEYS = [
    "..",
    "../x",
    "a/../b",
    "/lead",
    "a//b",
    ".",
    "./x",
    "x/",
    "bad!char",
    "tab\there",
    "semi;colon",
    "k" * 251,
]


async def test_invalid_keys(api: Api) -> None:
    run_id = await api.new_run_id()
    for key in INVALID_KEYS:
        await _check_invalid_key(api, run_id, key)


async def _check_invalid_key(api: Api, run_id: str, key: str) -> None:
    ts = now_ms()
    (
        await api.post(
            "/runs/log-metric", {"run_id": run_id, "key": key, "value": 1.0, "timestamp": ts}
        )
    ).error(BAD, INVALID)
    (await api.post("/runs/log-parameter", {"run_id": run_id, "key": key, "value": "v"})).error(
        BAD, INVALID
    )
    (await api.post("/runs/set-tag", {"run_id": run_id, "key": key, "value": "v"})).error(
        BAD, INVALID
    )
    (await api.log_batch(run_id, metrics=[metric(key)])).error(BAD, INVALID)
    (await api.log_batch(run_id, params=[{"key": key, "value": "v"}])).error(BAD, INVALID)
    (await api.log_batch(run_id, tags=[{"key": key, "value": "v"}])).error(BAD, INVALID)
    data = (await api.get_run(run_id))["data"]
    assert data.get("metrics", []) == [] and data.get("params", []) == []
    assert [t["key"] for t in data["tags"]] == ["mlflow.runName"]


async def test_invalid_key_messages(api: Api) -> None:
    run_id = await api.new_run_id()
    message = (
        await api.post("/runs/log-parameter", {"run_id": run_id, "key": "../x", "value": "v"})
    ).error(BAD, INVALID)
    assert "must not resolve to other names" in message
    message = (await api.log_batch(run_id, params=[{"key": "a!b", "value": "v"}])).error(
        BAD, INVALID
    )
    assert "Names may only contain alphanumerics" in message
    assert "params[0]" in message
    message = (await api.log_batch(run_id, tags=[{"key": "x" * 251, "value": "v"}])).error(
        BAD, INVALID
    )
    assert "exceeds the maximum length of 250" in message


async def test_invalid_key_in_batch_rejects_whole_batch(api: Api) -> None:
    run_id = await api.new_run_id()
    reply = await api.log_batch(
        run_id,
        metrics=[metric("good"), metric("../bad")],
        params=[{"key": "p", "value": "1"}],
        tags=[{"key": "t", "value": "1"}],
    )
    reply.error(BAD, INVALID)
    data = (await api.get_run(run_id))["data"]
    assert data.get("metrics", []) == [] and data.get("params", []) == []
    assert "t" not in {t["key"] for t in data["tags"]}


# ---------------------------------------------------------------- write-once params


async def test_changing_a_param(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.post("/runs/log-parameter", {"run_id": run_id, "key": "p1", "value": "x"})).ok()
    (
        await api.post("/runs/log-parameter", {"run_id": run_id, "key": "p1", "value": "x"})
    ).ok()  # idempotent
    message = (
        await api.post("/runs/log-parameter", {"run_id": run_id, "key": "p1", "value": "y"})
    ).error(BAD, INVALID)
    assert message.startswith(
        f"Changing param values is not allowed. Param with key='p1' was already logged with value='x' "
        f"for run ID='{run_id}'. Attempted logging new value 'y'."
    )
    params = (await api.get_run(run_id))["data"]["params"]
    assert params == [{"key": "p1", "value": "x"}]


async def test_changing_a_param_rolls_back_the_whole_batch(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.post("/runs/log-parameter", {"run_id": run_id, "key": "p1", "value": "x"})).ok()
    reply = await api.log_batch(
        run_id,
        metrics=[metric("batch_metric", 3.0)],
        params=[{"key": "p_new", "value": "1"}, {"key": "p1", "value": "changed"}],
        tags=[{"key": "batch_tag", "value": "1"}],
    )
    message = reply.error(BAD, INVALID)
    assert "Changing param values is not allowed" in message
    assert "p1" in message
    data = (await api.get_run(run_id))["data"]
    assert data["params"] == [{"key": "p1", "value": "x"}]
    assert "batch_tag" not in {t["key"] for t in data["tags"]}
    assert data.get("metrics", []) == []
    assert await api.history(run_id, "batch_metric") == []


async def test_batch_relogging_same_param_value_is_fine(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.log_batch(run_id, params=[{"key": "p1", "value": "x"}])).ok()
    (
        await api.log_batch(
            run_id, params=[{"key": "p1", "value": "x"}, {"key": "p2", "value": "y"}]
        )
    ).ok()
    params = (await api.get_run(run_id))["data"]["params"]
    assert sorted((p["key"], p["value"]) for p in params) == [("p1", "x"), ("p2", "y")]


# ---------------------------------------------------------------- lifecycle errors


async def test_logging_to_a_deleted_run(api: Api) -> None:
    run_id = await api.new_run_id()
    (await api.post("/runs/delete", {"run_id": run_id})).ok()
    expected = f"The run {run_id} must be in the 'active' state. Current state is deleted."
    ts = now_ms()
    for path, body in [
        ("/runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0, "timestamp": ts}),
        ("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "v"}),
        ("/runs/set-tag", {"run_id": run_id, "key": "t", "value": "v"}),
        ("/runs/log-batch", {"run_id": run_id, "metrics": [metric()]}),
        ("/runs/log-batch", {"run_id": run_id, "params": [{"key": "p", "value": "v"}]}),
        ("/runs/log-batch", {"run_id": run_id, "tags": [{"key": "t", "value": "v"}]}),
        ("/runs/log-inputs", {"run_id": run_id, "models": [{"model_id": "m-1"}]}),
        ("/runs/outputs", {"run_id": run_id, "models": [{"model_id": "m-1", "step": 0}]}),
        ("/runs/update", {"run_id": run_id, "status": "FINISHED"}),
    ]:
        message = (await api.post(path, body)).error(BAD, INVALID)
        assert message == expected, (path, message)
    # The deleted run stays readable and unchanged.
    run = await api.get_run(run_id)
    assert run["info"]["lifecycle_stage"] == "deleted"
    assert run["data"].get("metrics", []) == []


async def test_logging_to_run_of_deleted_experiment(api: Api) -> None:
    exp = await api.create_experiment()
    run_id = await api.new_run_id(exp)
    (await api.post("/experiments/delete", {"experiment_id": exp})).ok()
    (await api.post("/runs/log-metric", {"run_id": run_id, **metric()})).error(
        BAD, INVALID, "deleted"
    )
    (await api.post("/runs/create", {"experiment_id": exp})).error(BAD, INVALID)
    (await api.post("/logged-models", {"experiment_id": exp})).error(BAD, INVALID)


async def test_duplicate_experiment_name(api: Api) -> None:
    await api.create_experiment("dup")
    message = (await api.post("/experiments/create", {"name": "dup"})).error(
        BAD, "RESOURCE_ALREADY_EXISTS"
    )
    assert "dup" in message
    other = await api.create_experiment("other")
    (await api.post("/experiments/update", {"experiment_id": other, "new_name": "dup"})).error(
        BAD, "RESOURCE_ALREADY_EXISTS"
    )
    # "Default" (experiment 0) exists from the start.
    (await api.post("/experiments/create", {"name": "Default"})).error(
        BAD, "RESOURCE_ALREADY_EXISTS"
    )


async def test_duplicate_name_of_deleted_experiment(api: Api) -> None:
    exp = await api.create_experiment("gone")
    (await api.post("/experiments/delete", {"experiment_id": exp})).ok()
    (await api.post("/experiments/create", {"name": "gone"})).error(BAD, "RESOURCE_ALREADY_EXISTS")


async def test_delete_default_experiment(api: Api) -> None:
    message = (await api.post("/experiments/delete", {"experiment_id": "0"})).error(BAD, INVALID)
    assert "0" in message
    exp = (await api.get("/experiments/get", {"experiment_id": "0"})).ok()["experiment"]
    assert exp["lifecycle_stage"] == "active"


async def test_experiment_lifecycle_errors(api: Api) -> None:
    exp = await api.create_experiment()
    (await api.post("/experiments/restore", {"experiment_id": exp})).error(
        BAD, INVALID
    )  # not deleted
    (await api.post("/experiments/delete", {"experiment_id": exp})).ok()
    (await api.post("/experiments/delete", {"experiment_id": exp})).error(
        BAD, INVALID
    )  # already deleted
    (await api.post("/experiments/update", {"experiment_id": exp, "new_name": "x"})).error(
        BAD, INVALID
    )
    (
        await api.post(
            "/experiments/set-experiment-tag", {"experiment_id": exp, "key": "k", "value": "v"}
        )
    ).error(BAD, INVALID)


async def test_invalid_experiment_names_and_tags(api: Api) -> None:
    (await api.post("/experiments/create", {"name": "n" * 501})).error(BAD, INVALID, "500")
    exp = await api.create_experiment()
    (await api.post("/experiments/update", {"experiment_id": exp, "new_name": ""})).error(
        BAD, INVALID
    )
    (
        await api.post(
            "/experiments/set-experiment-tag",
            {"experiment_id": exp, "key": "k" * 251, "value": "v"},
        )
    ).error(BAD, INVALID)
    (
        await api.post(
            "/experiments/set-experiment-tag",
            {"experiment_id": exp, "key": "k", "value": "v" * 20001},
        )
    ).error(BAD, INVALID)


# ---------------------------------------------------------------- enums


@pytest.mark.parametrize("value", ["NOPE", "active_only_please", "9", 9, -1, ""])
async def test_invalid_view_type(api: Api, value: Any) -> None:
    if value == "":
        (await api.post("/experiments/search", {"view_type": value})).ok()  # empty = default
        return
    (await api.post("/experiments/search", {"view_type": value})).error(BAD, INVALID)
    (await api.post("/runs/search", {"experiment_ids": ["0"], "run_view_type": value})).error(
        BAD, INVALID
    )


async def test_invalid_view_type_in_query_string(api: Api) -> None:
    (await api.get("/experiments/search", {"view_type": "SOMETIMES"})).error(BAD, INVALID)


@pytest.mark.parametrize("status", ["DONE", "finished!", "9", 42, "LOGGED_MODEL_READY"])
async def test_invalid_run_status(api: Api, status: Any) -> None:
    run_id = await api.new_run_id()
    (await api.post("/runs/update", {"run_id": run_id, "status": status})).error(BAD, INVALID)
    assert (await api.get_run(run_id))["info"]["status"] == "RUNNING"


# ---------------------------------------------------------------- search inputs


@pytest.mark.parametrize(
    "token",
    ["garbage", "!!!", "eyJvZmZzZXQiOiAtNX0=", "eyJub3QiOiAib2Zmc2V0In0=", "bnVsbA==", "a" * 5000],
)
async def test_bad_page_tokens(api: Api, token: str) -> None:
    # eyJvZmZzZXQiOiAtNX0= is {"offset": -5}; eyJub3QiOiAib2Zmc2V0In0= is {"not": "offset"}; bnVsbA== is null.
    exp = await api.create_experiment()
    run_id = await api.new_run_id(exp)
    (await api.post("/runs/search", {"experiment_ids": [exp], "page_token": token})).error(
        BAD, INVALID
    )
    (await api.post("/experiments/search", {"page_token": token})).error(BAD, INVALID)
    (await api.post("/logged-models/search", {"experiment_ids": [exp], "page_token": token})).error(
        BAD, INVALID
    )
    params = {"run_id": run_id, "metric_key": "m", "page_token": token}
    (await api.get("/metrics/get-history", params)).error(BAD, INVALID)


@pytest.mark.parametrize(
    "flt",
    [
        "metrics.loss >",
        "metrics.loss > 'abc'",
        "params.lr = 0.1",
        "metrics.a > 1 OR metrics.b > 2",
        "(metrics.a > 1)",
        "foo bar baz",
        "nosuchprefix.x = 'a'",
        "attributes.nosuch = 'x'",
        "tags.t ~ 'x'",
        "params.p = 'unterminated",
        "metrics.loss >= 1 AND",
        "run_name IN ('a')",
        "=",
        "'",
        "\x00",
    ],
)
async def test_invalid_run_filters(api: Api, flt: str) -> None:
    exp = await api.create_experiment()
    (await api.post("/runs/search", {"experiment_ids": [exp], "filter": flt})).error(BAD, INVALID)


@pytest.mark.parametrize(
    "flt",
    [
        "name =",
        "name = ",
        "nosuch = 'x'",
        "name = 'a' OR name = 'b'",
        "creation_time > 'x'",
        "tags. = 'a'",
        "name LIKE",
    ],
)
async def test_invalid_experiment_filters(api: Api, flt: str) -> None:
    (await api.post("/experiments/search", {"filter": flt})).error(BAD, INVALID)


@pytest.mark.parametrize("order_by", ["metrics.loss SIDEWAYS", "nosuch.attr", "metrics.", "a b c"])
async def test_invalid_run_order_by(api: Api, order_by: str) -> None:
    exp = await api.create_experiment()
    (await api.post("/runs/search", {"experiment_ids": [exp], "order_by": [order_by]})).error(
        BAD, INVALID
    )


async def test_invalid_logged_model_filter(api: Api) -> None:
    exp = await api.create_experiment()
    (await api.post("/logged-models/search", {"experiment_ids": [exp], "filter": "name = "})).error(
        BAD, INVALID
    )


@pytest.mark.parametrize("value", [0, -1, 50001, "0", "50001"])
async def test_search_max_results_out_of_range(api: Api, value: Any) -> None:
    exp = await api.create_experiment()
    (await api.post("/runs/search", {"experiment_ids": [exp], "max_results": value})).error(
        BAD, INVALID, "max_results"
    )
    (await api.post("/experiments/search", {"max_results": value})).error(
        BAD, INVALID, "max_results"
    )


async def test_search_max_results_in_query_string(api: Api) -> None:
    (await api.get("/experiments/search", {"max_results": "0"})).error(BAD, INVALID, "max_results")
    (await api.get("/experiments/search", {"max_results": "50001"})).error(
        BAD, INVALID, "max_results"
    )


@pytest.mark.parametrize("value", ["0", "-1"])
async def test_get_history_max_results(api: Api, value: str) -> None:
    run_id = await api.new_run_id()
    params = {"run_id": run_id, "metric_key": "m", "max_results": value}
    (await api.get("/metrics/get-history", params)).error(BAD, INVALID, "max_results")


# ---------------------------------------------------------------- get-history-bulk-interval


async def test_bulk_interval_validation(api: Api) -> None:
    run_id = await api.new_run_id()
    path = "/metrics/get-history-bulk-interval"
    base = [("run_ids", run_id), ("metric_key", "m")]
    message = (await api.get(path, [*base, ("max_results", "0")])).error(BAD, INVALID)
    assert message == "max_results must be between 1 and 2500."
    (await api.get(path, [*base, ("max_results", "2501")])).error(BAD, INVALID, "max_results")
    message = (await api.get(path, [*base, ("start_step", "5")])).error(BAD, INVALID)
    assert "both must be specified" in message
    (await api.get(path, [*base, ("end_step", "5")])).error(BAD, INVALID)
    message = (await api.get(path, [*base, ("start_step", "10"), ("end_step", "5")])).error(
        BAD, INVALID
    )
    assert (
        message == "end_step must be greater than start_step. Found start_step=10 and end_step=5."
    )
    too_many = [("run_ids", uuid.uuid4().hex) for _ in range(101)] + [("metric_key", "m")]
    message = (await api.get(path, too_many)).error(BAD, INVALID)
    assert "at most 100 run_ids" in message


async def test_bulk_interval_unknown_run(api: Api) -> None:
    # MLflow's SQL store returns nothing for an unknown run (_validate_run_accessible is a no-op
    # in single-tenant mode); a 404 would also be acceptable, a 500 is not.
    params = [("run_ids", unknown_run_id()), ("metric_key", "m")]
    reply = await api.get("/metrics/get-history-bulk-interval", params)
    if reply.status == 200:
        assert reply.ok().get("metrics", []) == []
    else:
        reply.error(404, MISSING)


# ---------------------------------------------------------------- prefixes and content types


async def test_errors_on_ajax_prefix(ajax: Api) -> None:
    (await ajax.get("/runs/get", {"run_id": unknown_run_id()})).error(404, MISSING)
    (await ajax.post("/experiments/create", {})).error(BAD, INVALID)
    (
        await ajax.request(
            "POST", "/runs/log-batch", data=b"{", headers={"Content-Type": "application/json"}
        )
    ).error(400, ("BAD_REQUEST", INVALID))


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"],
)
async def test_post_requires_json_content_type(api: Api, content_type: str) -> None:
    # mlflow/server/validation.py _validate_content_type (called by _get_request_json for POST and
    # PUT): "Bad Request. Content-Type must be one of ['application/json']." (400
    # INVALID_PARAMETER_VALUE). It is also what keeps a web page from posting "simple" cross-site
    # requests (text/plain, form encodings skip the CORS preflight) to a local tracking server.
    data = b'{"name": "csrf-made-me"}'
    reply = await api.request(
        "POST", "/experiments/create", data=data, headers={"Content-Type": content_type}
    )
    reply.error(BAD, INVALID, "Content-Type")
    (await api.get("/experiments/get-by-name", {"experiment_name": "csrf-made-me"})).error(
        404, MISSING
    )


async def test_json_content_type_with_parameters_accepted(api: Api) -> None:
    data = b'{"name": "charset-ok"}'
    reply = await api.request(
        "POST",
        "/experiments/create",
        data=data,
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    reply.ok()


async def test_nul_characters_do_not_500(api: Api) -> None:
    exp = await api.create_experiment()
    run_id = await api.new_run_id(exp)
    model_id = (await api.post("/logged-models", {"experiment_id": exp})).ok()["model"]["info"][
        "model_id"
    ]
    # JSON "\u0000" is a legal string, but PostgreSQL text cannot hold NUL: refuse it (400), never 500
    # (the client retries 500s, 7 times by default).
    failures = []
    for method, path, body in [
        ("POST", "/experiments/create", {"name": "bad\x00name"}),
        (
            "POST",
            "/experiments/set-experiment-tag",
            {"experiment_id": exp, "key": "k", "value": "v\x00"},
        ),
        ("POST", "/runs/create", {"experiment_id": exp, "run_name": "r\x00"}),
        ("POST", "/runs/create", {"experiment_id": exp, "user_id": "u\x00"}),
        ("POST", "/runs/set-tag", {"run_id": run_id, "key": "t", "value": "v\x00v"}),
        ("POST", "/runs/log-parameter", {"run_id": run_id, "key": "p", "value": "v\x00"}),
        ("POST", "/runs/log-batch", {"run_id": run_id, "tags": [{"key": "t2", "value": "\x00"}]}),
        (
            "POST",
            "/runs/log-metric",
            {"run_id": run_id, "key": "m", "value": 1, "timestamp": 1, "model_id": "m\x00"},
        ),
        ("POST", "/logged-models", {"experiment_id": exp, "name": "n\x00"}),
        ("PATCH", f"/logged-models/{model_id}/tags", {"tags": [{"key": "k", "value": "\x00"}]}),
        ("GET", "/experiments/get-by-name", None),
    ]:
        if method == "GET":
            reply = await api.get(path, {"experiment_name": "x\x00y"})
        else:
            reply = await api.request(method, path, body=body)
        if reply.status == 500 or (
            reply.status != 200 and reply.status != 400 and reply.status != 404
        ):
            failures.append(f"{method} {path} -> {reply.status} {reply.text[:120]}")
        elif reply.status != 200:
            reply.error((BAD, 404))
    assert not failures, "\n".join(failures)


async def test_lone_surrogates_do_not_500(api: Api) -> None:
    # Lone surrogates escaped in JSON are not valid UTF-8 text.
    reply = await api.request(
        "POST",
        "/experiments/create",
        data=b'{"name": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert reply.status != 500, reply
    if reply.status != 200:
        reply.error(BAD)


# ---------------------------------------------------------------- more validation parity


@pytest.mark.parametrize("key", ["bad!key", "../x", "/lead", "a//b", "."])
async def test_experiment_tag_key_rules(api: Api, key: str) -> None:
    # mlflow/utils/validation.py _validate_experiment_tag -> _validate_tag_name (same character
    # and path rules as run tags), called by SqlAlchemyStore.set_experiment_tag and create_experiment.
    exp = await api.create_experiment()
    (
        await api.post(
            "/experiments/set-experiment-tag", {"experiment_id": exp, "key": key, "value": "v"}
        )
    ).error(BAD, INVALID)
    (
        await api.post(
            "/experiments/create",
            {"name": f"with-tag-{uuid.uuid4().hex}", "tags": [{"key": key, "value": "v"}]},
        )
    ).error(BAD, INVALID)


@pytest.mark.parametrize("name", ["a/b", "a:b", "a.b", "50%", "it's", 'say "hi"', ""])
async def test_logged_model_name_rules(api: Api, name: str) -> None:
    # mlflow/utils/validation.py _validate_logged_model_name, called by
    # SqlAlchemyStore.create_logged_model: non-empty and none of / : . % " '
    exp = await api.create_experiment()
    if name == "":
        # An empty name from JSON reads as "unset" (proto2 default); a name is generated.
        (await api.post("/logged-models", {"experiment_id": exp, "name": name})).ok()
        return
    (await api.post("/logged-models", {"experiment_id": exp, "name": name})).error(
        BAD, INVALID, "name"
    )


async def test_deeply_nested_json(api: Api) -> None:
    for depth in (100, 2000, 100_000):
        data = b'{"name": ' + b"[" * depth + b"]" * depth + b"}"
        reply = await api.request(
            "POST", "/experiments/create", data=data, headers={"Content-Type": "application/json"}
        )
        reply.error(400, ("BAD_REQUEST", INVALID))


@pytest.mark.parametrize(
    "flt",
    [
        "name = 'x'; DROP TABLE experiments; --'",
        "name = 'x'' OR ''1''=''1'",
        "tags.`a'; DROP TABLE runs; --` = 'x'",
        "name LIKE '%' || pg_sleep(5) || '%'",
    ],
)
async def test_injection_like_filters(api: Api, flt: str) -> None:
    exp = await api.create_experiment("victim")
    for path, body in [
        ("/experiments/search", {"filter": flt}),
        (
            "/runs/search",
            {"experiment_ids": [exp], "filter": flt.replace("name", "attributes.run_name")},
        ),
        ("/logged-models/search", {"experiment_ids": [exp], "filter": flt}),
    ]:
        reply = await api.post(path, body)
        if reply.status != 200:
            reply.error(BAD, INVALID)
    # Still there.
    (await api.get("/experiments/get-by-name", {"experiment_name": "victim"})).ok()
    await api.new_run_id(exp)


async def test_weird_logged_model_ids_in_path(api: Api) -> None:
    for model_id in ["..%2F..%2Fetc", "m-%00", "%E2%9C%93", "m-" + "a" * 500]:
        reply = await api.request("GET", f"/logged-models/{model_id}")
        reply.error((BAD, 404), (INVALID, MISSING, "ENDPOINT_NOT_FOUND"))


# ---------------------------------------------------------------- concurrency: still never a 500


async def test_concurrent_param_writes(api: Api) -> None:
    import asyncio

    run_id = await api.new_run_id()
    replies = await asyncio.gather(
        *[
            api.post("/runs/log-parameter", {"run_id": run_id, "key": "p", "value": str(i)})
            for i in range(12)
        ]
    )
    ok = [r for r in replies if r.status == 200]
    assert len(ok) == 1, replies
    for reply in replies:
        if reply.status != 200:
            reply.error(BAD, INVALID, "Changing param values is not allowed")
    params = (await api.get_run(run_id))["data"]["params"]
    assert len(params) == 1


async def test_concurrent_experiment_creates(api: Api) -> None:
    import asyncio

    replies = await asyncio.gather(
        *[api.post("/experiments/create", {"name": "race"}) for _ in range(12)]
    )
    assert sum(r.status == 200 for r in replies) == 1, replies
    for reply in replies:
        if reply.status != 200:
            reply.error(BAD, "RESOURCE_ALREADY_EXISTS")


async def test_concurrent_overlapping_batches(api: Api) -> None:
    # Writers replaying the same points grouped in different orders (a client retry racing its
    # original request, an ingest redelivery). Each must succeed (or answer 503 with Retry-After
    # and succeed when resent), never 500 (e.g. an unhandled deadlock), and each point is stored once.
    import asyncio

    run_id = await api.new_run_id()
    rounds = 5
    for rnd in range(rounds):
        points = [
            {"key": f"k{i % 7}", "value": float(i), "timestamp": 10 + rnd, "step": i}
            for i in range(400)
        ]
        pending = []
        for j in range(8):
            chunk = points[:200] if j < 4 else points
            pending.append(chunk if j % 2 == 0 else list(reversed(chunk)))
        for _ in range(5):
            replies = await asyncio.gather(*[api.log_batch(run_id, metrics=b) for b in pending])
            retry = []
            for batch, reply in zip(pending, replies, strict=True):
                if reply.status == 503:
                    assert "Retry-After" in reply.headers, reply
                    retry.append(batch)
                else:
                    assert reply.status == 200, reply
            pending = retry
            if not pending:
                break
        assert not pending
    total = 0
    for k in range(7):
        total += len(await api.history(run_id, f"k{k}"))
    assert total == 400 * rounds
