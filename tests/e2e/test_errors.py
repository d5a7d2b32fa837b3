"""Bad input: the error codes the real client sees, and the raw HTTP answers for what it never sends.

MlflowClient.log_batch splits oversized batches itself (mlflow/tracking/_tracking_service/client.py,
``log_batch``: chunks of 100 params/tags and up to 1000 entities), so the server-side limits are
checked with raw ``requests`` POSTs to ``/api/2.0/mlflow/runs/log-batch``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import mlflow
import pytest
import requests
from mlflow.exceptions import MlflowException

NOW = int(time.time() * 1000)


def _assert_error(
    resp: requests.Response, status: int, code: str, fragment: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, (resp.status_code, resp.text[:500])
    assert resp.headers.get("Content-Type", "").startswith("application/json")
    body = resp.json()
    assert body["error_code"] == code, body
    assert isinstance(body.get("message"), str) and body["message"]
    if fragment is not None:
        assert fragment in body["message"], body["message"]
    return body


def _metric(i: int, key: str = "m") -> dict[str, Any]:
    return {"key": key, "value": float(i), "timestamp": NOW, "step": i}


@pytest.fixture
def run_id(mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]) -> str:
    exp_id = mlclient.create_experiment(unique_name("errors"))
    return str(mlclient.create_run(exp_id).info.run_id)


# ---------------------------------------------------------------- through the mlflow client


def test_changing_a_param_is_invalid(run_id: str, mlclient: Any) -> None:
    mlclient.log_param(run_id, "lr", "0.1")
    with pytest.raises(MlflowException) as excinfo:
        mlclient.log_param(run_id, "lr", "0.2")
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    assert excinfo.value.get_http_status_code() == 400
    assert "Changing param values is not allowed" in excinfo.value.message
    # Through log_batch (log_params) as well, and nothing of the failed batch is stored.
    with pytest.raises(MlflowException) as excinfo:
        mlclient.log_batch(
            run_id, params=[mlflow.entities.Param("lr", "0.3"), mlflow.entities.Param("new", "x")]
        )
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    assert mlclient.get_run(run_id).data.params == {"lr": "0.1"}

    # In a fluent run the error propagates out of the ``with`` block and the run ends FAILED.
    mlflow.set_experiment(experiment_id=mlclient.get_run(run_id).info.experiment_id)
    with pytest.raises(MlflowException) as excinfo:
        with mlflow.start_run() as run:
            mlflow.log_param("batch_size", 32)
            mlflow.log_param("batch_size", 64)
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    fetched = mlflow.get_run(run.info.run_id)
    assert fetched.info.status == "FAILED"
    assert fetched.data.params == {"batch_size": "32"}


def test_get_unknown_run_and_experiment(mlflow_tracking: str, mlclient: Any) -> None:
    missing = "f" * 32
    with pytest.raises(MlflowException) as excinfo:
        mlclient.get_run(missing)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert excinfo.value.get_http_status_code() == 404
    assert missing in excinfo.value.message

    with pytest.raises(MlflowException) as excinfo:
        mlclient.get_experiment("987654321")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    with pytest.raises(MlflowException) as excinfo:
        mlclient.get_metric_history(missing, "loss")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    with pytest.raises(MlflowException) as excinfo:
        mlclient.log_metric(missing, "loss", 1.0)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    with pytest.raises(MlflowException) as excinfo:
        mlclient.create_run("987654321")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_logging_to_a_deleted_run_is_invalid(run_id: str, mlclient: Any) -> None:
    mlclient.delete_run(run_id)
    attempts: dict[str, Callable[[], Any]] = {
        "log_metric": lambda: mlclient.log_metric(run_id, "m", 1.0),
        "log_param": lambda: mlclient.log_param(run_id, "p", "v"),
        "set_tag": lambda: mlclient.set_tag(run_id, "t", "v"),
        "log_batch": lambda: mlclient.log_batch(
            run_id, metrics=[mlflow.entities.Metric("m", 1.0, NOW, 0)]
        ),
        "update_run": lambda: mlclient.set_terminated(run_id),
    }
    failures = []
    for what, call in attempts.items():
        try:
            call()
        except MlflowException as exc:
            if (
                exc.error_code != "INVALID_PARAMETER_VALUE"
                or "must be in the 'active' state" not in exc.message
            ):
                failures.append(f"{what}: {exc.error_code} {exc.message[:200]}")
        else:
            failures.append(f"{what}: no error")
    assert not failures, "\n".join(failures)
    data = mlclient.get_run(run_id).data
    assert data.metrics == {} and data.params == {}
    assert "t" not in data.tags


def test_duplicate_experiment_and_bad_experiment_lifecycle(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]
) -> None:
    name = unique_name("dup")
    exp_id = mlclient.create_experiment(name)
    with pytest.raises(MlflowException) as excinfo:
        mlclient.create_experiment(name)
    assert excinfo.value.error_code == "RESOURCE_ALREADY_EXISTS"
    assert excinfo.value.get_http_status_code() == 400
    assert mlclient.get_experiment_by_name(name).experiment_id == exp_id

    # Restoring an active experiment is invalid; deleting an unknown one is not found.
    with pytest.raises(MlflowException) as excinfo:
        mlclient.restore_experiment(exp_id)
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        mlclient.delete_experiment("987654321")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"


INVALID_KEYS = {
    "bang": "bad key!",
    "dotdot": "../escape",
    "leading-slash": "/absolute",
    "double-slash": "a//b",
    "too-long": "x" * 251,
    "semicolon": "semi;colon",
}


def test_invalid_metric_param_and_tag_keys(run_id: str, mlclient: Any) -> None:
    failures = []
    for label, key in INVALID_KEYS.items():
        try:
            mlclient.log_metric(run_id, key, 1.0)
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                failures.append(f"log_metric {label}: {exc.error_code} {exc.message[:200]}")
        else:
            failures.append(f"log_metric {label}: no error")
    for what, call in {
        "log_param": lambda: mlclient.log_param(run_id, "bad key!", "v"),
        "set_tag": lambda: mlclient.set_tag(run_id, "bad key!", "v"),
        "log_batch param": lambda: mlclient.log_batch(
            run_id, params=[mlflow.entities.Param("a/../b", "v")]
        ),
    }.items():
        try:
            call()
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                failures.append(f"{what}: {exc.error_code}")
        else:
            failures.append(f"{what}: no error")
    assert not failures, "\n".join(failures)
    data = mlclient.get_run(run_id).data
    assert data.params == {} and data.metrics == {}


def test_delete_missing_tag_and_bad_search(run_id: str, mlclient: Any) -> None:
    with pytest.raises(MlflowException) as excinfo:
        mlclient.delete_tag(run_id, "never-set")
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    exp_id = mlclient.get_run(run_id).info.experiment_id
    failures = []
    for bad in [
        "metrics.acc > 'high'",  # metrics compare with numbers
        "params.alpha > '1'",  # no ordering on params
        "foo.bar = '1'",  # unknown entity type
        "metrics.acc = 1 OR metrics.acc = 2",  # OR is not supported
        "params.alpha = ",  # incomplete
        "attributes.status IN ('FAILED')",  # lists only for run_id
        "attributes.nonexistent = 'x'",  # unknown attribute
    ]:
        try:
            mlclient.search_runs([exp_id], filter_string=bad)
        except MlflowException as exc:
            if exc.error_code != "INVALID_PARAMETER_VALUE":
                failures.append(f"{bad!r}: {exc.error_code} {exc.message[:200]}")
        else:
            failures.append(f"{bad!r}: no error")
    try:
        mlclient.search_runs([exp_id], page_token="not-a-page-token!")
    except MlflowException as exc:
        if exc.error_code != "INVALID_PARAMETER_VALUE":
            failures.append(f"page_token garbage: {exc.error_code} {exc.message[:200]}")
    else:
        failures.append("page_token garbage: no error")
    try:
        mlclient.search_runs([exp_id], order_by=["metrics.acc SIDEWAYS"])
    except MlflowException as exc:
        if exc.error_code != "INVALID_PARAMETER_VALUE":
            failures.append(f"order_by SIDEWAYS: {exc.error_code}")
    else:
        failures.append("order_by SIDEWAYS: no error")
    assert not failures, "\n".join(failures)


# ---------------------------------------------------------------- raw HTTP: limits the client never hits


def test_log_batch_limits_and_body_size_raw(run_id: str, rest: Any, mlclient: Any) -> None:
    _assert_error(
        rest.post(
            "runs/log-batch", {"run_id": run_id, "metrics": [_metric(i) for i in range(1001)]}
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "at most 1000 metrics",
    )
    _assert_error(
        rest.post(
            "runs/log-batch",
            {"run_id": run_id, "params": [{"key": f"p{i}", "value": "v"} for i in range(101)]},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "at most 100 params. Got 101 params",
    )
    _assert_error(
        rest.post(
            "runs/log-batch",
            {"run_id": run_id, "tags": [{"key": f"t{i}", "value": "v"} for i in range(101)]},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "at most 100 tags",
    )
    _assert_error(
        rest.post(
            "runs/log-batch",
            {
                "run_id": run_id,
                "metrics": [_metric(i) for i in range(950)],
                "params": [{"key": f"p{i}", "value": "v"} for i in range(51)],
            },
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "at most 1000 metrics, params, and tags",
    )
    _assert_error(
        rest.post(
            "runs/log-batch",
            {
                "run_id": run_id,
                "params": [{"key": "dup", "value": "1"}, {"key": "dup", "value": "2"}],
            },
        ),
        400,
        "INVALID_PARAMETER_VALUE",
        "Duplicate parameter keys",
    )
    # 100 tags of 8000 chars + 900 metrics with long keys: well-formed, within the item limits, > 1 MB.
    body = {
        "run_id": run_id,
        "tags": [{"key": f"t{i}", "value": "v" * 8000} for i in range(100)],
        "metrics": [_metric(i, "k" * 200 + str(i % 10)) for i in range(900)],
    }
    resp = rest.post("runs/log-batch", body)
    _assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    assert mlclient.get_run(run_id).data.tags.get("t0") is None

    # Nothing of the refused batches was stored.
    data = mlclient.get_run(run_id).data
    assert data.metrics == {} and data.params == {}

    # Exactly at the limits is fine.
    ok = rest.post(
        "runs/log-batch",
        {
            "run_id": run_id,
            "metrics": [_metric(i) for i in range(900)],
            "params": [{"key": f"p{i}", "value": "v"} for i in range(50)],
            "tags": [{"key": f"t{i}", "value": "v"} for i in range(50)],
        },
    )
    assert ok.status_code == 200, ok.text
    assert ok.json() == {}
    ok = rest.post(
        "runs/log-batch", {"run_id": run_id, "metrics": [_metric(i, "full") for i in range(1000)]}
    )
    assert ok.status_code == 200, ok.text
    data = mlclient.get_run(run_id).data
    assert len(data.params) == 50
    assert data.metrics == {"m": 899.0, "full": 999.0}
    assert len(mlclient.get_metric_history(run_id, "full")) == 1000


def test_bad_values_raw(run_id: str, rest: Any) -> None:
    _assert_error(
        rest.post(
            "runs/log-metric",
            {"run_id": run_id, "key": "m", "value": "not-a-number", "timestamp": NOW},
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    _assert_error(
        rest.post("runs/log-metric", {"run_id": run_id, "key": "m", "value": 1.0}),
        400,
        "INVALID_PARAMETER_VALUE",
        "timestamp",
    )
    _assert_error(
        rest.post(
            "runs/log-metric", {"run_id": run_id, "key": "bad key!", "value": 1.0, "timestamp": NOW}
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    _assert_error(
        rest.post(
            "runs/log-batch", {"run_id": run_id, "metrics": [{"key": "m", "timestamp": NOW}]}
        ),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    _assert_error(
        rest.post("runs/log-parameter", {"run_id": run_id, "value": "v"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    # MLflow's handler does not require a param value (server/handlers.py _log_param): it stores "".
    resp = rest.post("runs/log-parameter", {"run_id": run_id, "key": "no_value"})
    assert resp.status_code == 200, resp.text
    params = rest.get("runs/get", {"run_id": run_id}).json()["run"]["data"]["params"]
    assert {p["key"]: p.get("value", "") for p in params} == {"no_value": ""}
    _assert_error(rest.post("experiments/create", {}), 400, "INVALID_PARAMETER_VALUE")
    _assert_error(rest.get("runs/get", {"run_id": "f" * 32}), 404, "RESOURCE_DOES_NOT_EXIST")
    _assert_error(
        rest.get("experiments/get-by-name", {"experiment_name": "no-such-experiment"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    _assert_error(
        rest.post("runs/search", {"experiment_ids": ["0"], "max_results": 50001}),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    # The non-finite spellings the client sends are accepted.
    for value in ("NaN", "Infinity", "-Infinity"):
        resp = rest.post(
            "runs/log-metric",
            {
                "run_id": run_id,
                "key": f"nf_{value.strip('-')}{len(value)}",
                "value": value,
                "timestamp": NOW,
            },
        )
        assert resp.status_code == 200, resp.text
        assert resp.json() == {}
    got = rest.get("runs/get", {"run_id": run_id}).json()["run"]["data"]["metrics"]
    assert {m["key"]: m["value"] for m in got}["nf_NaN3"] == "NaN"
