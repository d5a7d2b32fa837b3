"""The web UI's downloads and support calls against a live ``metricgate serve``, with the data made
by the real, unmodified mlflow client: run artifacts (text, PNG, multi-MB binary), an sklearn
logged model registered under two names, and a logged dataset.

The UI's own URLs are fetched with plain HTTP, as the browser does; the client's view of the same
data (download_artifacts, list_logged_model_artifacts, get_logged_model) is the oracle.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
from tests.e2e.test_models import PIP_REQUIREMENTS, _train

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def _get(
    base: str, path: str, params: dict[str, str], headers: dict[str, str] | None = None
) -> requests.Response:
    return requests.get(f"{base}{path}", params=params, headers=headers, timeout=60)


@pytest.fixture
def logged(
    mlflow_tracking: str, experiment: Any, tmp_path: Path, iris: tuple[np.ndarray, np.ndarray]
) -> dict[str, Any]:
    """A finished run with artifacts, a dataset input and an sklearn model registered twice."""
    files = {
        "notes.txt": b"hello from the client\n", "plots/curve.png": PNG, "blob.bin": os.urandom(5 * 1024 * 1024 + 3),
    }  # fmt: skip
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    X, _ = iris
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
        mlflow.log_artifact(str(tmp_path / "plots/curve.png"), artifact_path="plots")
        mlflow.log_artifact(str(tmp_path / "blob.bin"))
        frame = pd.DataFrame(X[:20], columns=["a", "b", "c", "d"])
        mlflow.log_input(mlflow.data.from_pandas(frame, name="iris-head"), context="training")
        info = mlflow.sklearn.log_model(
            _train(iris, C=0.5), name="model", pip_requirements=PIP_REQUIREMENTS
        )
    names = [f"ui-{experiment.experiment_id}-a", f"ui-{experiment.experiment_id}-b"]
    versions = [mlflow.register_model(info.model_uri, name) for name in names]
    return {
        "run": run,
        "files": files,
        "info": info,
        "names": names,
        "versions": versions,
        "experiment": experiment,
    }


def test_run_artifacts_as_the_ui_downloads_them(
    mlflow_tracking: str, logged: dict[str, Any]
) -> None:
    run_id = logged["run"].info.run_id
    types = {
        "notes.txt": "text/plain",
        "plots/curve.png": "image/png",
        "blob.bin": "application/octet-stream",
    }
    for rel, data in logged["files"].items():
        reply = _get(mlflow_tracking, "/get-artifact", {"path": rel, "run_uuid": run_id})
        assert reply.status_code == 200, reply.text
        assert reply.content == data, rel
        assert reply.headers["Content-Type"] == types[rel]
        assert reply.headers["Content-Disposition"].startswith(
            f'attachment; filename="{rel.rsplit("/", 1)[-1]}"'
        )
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    # The same bytes the client downloads.
    local = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="blob.bin"))
    assert local.read_bytes() == logged["files"]["blob.bin"]

    blob = logged["files"]["blob.bin"]
    query = {"path": "blob.bin", "run_uuid": run_id}
    ranged = _get(mlflow_tracking, "/get-artifact", query, {"Range": "bytes=4194300-4194399"})
    assert ranged.status_code == 206 and ranged.content == blob[4194300:4194400]
    assert ranged.headers["Content-Range"] == f"bytes 4194300-4194399/{len(blob)}"
    beyond = _get(mlflow_tracking, "/get-artifact", query, {"Range": f"bytes={len(blob)}-"})
    assert beyond.status_code == 416

    missing = _get(mlflow_tracking, "/get-artifact", {"path": "nope.txt", "run_uuid": run_id})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    no_run = _get(mlflow_tracking, "/get-artifact", {"path": "notes.txt", "run_uuid": "f" * 32})
    assert no_run.status_code == 404 and no_run.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    for bad in ("../../../etc/passwd", "%2e%2e/%2e%2e/x", "/etc/passwd"):
        refused = _get(mlflow_tracking, "/get-artifact", {"path": bad, "run_uuid": run_id})
        assert (
            refused.status_code == 400 and refused.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        ), bad


def test_model_version_and_logged_model_artifacts(
    mlflow_tracking: str, mlclient: Any, logged: dict[str, Any], tmp_path: Path
) -> None:
    info = logged["info"]
    model_dir = Path(
        mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "model"))
    )
    expected_mlmodel = (model_dir / "MLmodel").read_bytes()
    for name, version in zip(logged["names"], logged["versions"], strict=True):
        query = {"path": "MLmodel", "name": name, "version": version.version}
        reply = _get(mlflow_tracking, "/model-versions/get-artifact", query)
        assert reply.status_code == 200, reply.text
        assert reply.content == expected_mlmodel
        assert reply.headers["Content-Type"] == "text/plain"
    query = {"path": "MLmodel", "name": logged["names"][0], "version": "99"}
    missing = _get(mlflow_tracking, "/model-versions/get-artifact", query)
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"

    # The model page's file tree lists what the client lists, and serves the same bytes.
    base = f"{mlflow_tracking}/ajax-api/2.0/mlflow/logged-models/{info.model_id}/artifacts"
    tree = requests.get(f"{base}/directories", timeout=30).json()
    client_view = {
        (f.path, f.is_dir, f.file_size) for f in mlclient.list_logged_model_artifacts(info.model_id)
    }
    assert {(f["path"], f["is_dir"], f.get("file_size")) for f in tree["files"]} == client_view
    assert tree["root_uri"] == mlclient.get_logged_model(info.model_id).artifact_location
    for entry in tree["files"]:
        if not entry["is_dir"]:
            served = requests.get(
                f"{base}/files", params={"artifact_file_path": entry["path"]}, timeout=30
            )
            assert (
                served.status_code == 200
                and served.content == (model_dir / entry["path"]).read_bytes()
            ), entry


def test_model_versions_tag_as_stock_writes_it(mlclient: Any, logged: dict[str, Any]) -> None:
    """model-versions/create records {name, version (a number)} server-side; the client's
    register_model then appends its own entry (version as a string). Stock MLflow 3.17.2 ends
    with the same list (measured: register_model twice against `mlflow server`)."""
    tag = mlclient.get_logged_model(logged["info"].model_id).tags["mlflow.modelVersions"]
    expected = []
    for name, version in zip(logged["names"], logged["versions"], strict=True):
        expected += [
            {"name": name, "version": int(version.version)},
            {"name": name, "version": version.version},
        ]
    assert json.loads(tag) == expected
    assert tag.startswith('[{"name": ')  # Python's json.dumps spelling, as stock writes it


def test_search_datasets_sees_the_clients_dataset(
    mlflow_tracking: str, logged: dict[str, Any]
) -> None:
    experiment_id = logged["experiment"].experiment_id
    url = f"{mlflow_tracking}/ajax-api/2.0/mlflow/experiments/search-datasets"
    reply = requests.post(url, json={"experiment_ids": [experiment_id]}, timeout=30)
    assert reply.status_code == 200, reply.text
    summaries = reply.json()["dataset_summaries"]
    logged_dataset = mlflow.get_run(logged["run"].info.run_id).inputs.dataset_inputs[0].dataset
    assert summaries == [
        {
            "experiment_id": experiment_id,
            "name": "iris-head",
            "digest": logged_dataset.digest,
            "context": "training",
        }
    ]


def test_ui_support_calls_on_the_live_server(mlflow_tracking: str) -> None:
    ajax = f"{mlflow_tracking}/ajax-api"
    proxy = requests.get(
        f"{ajax}/2.0/mlflow/gateway-proxy",
        params={"gateway_path": "api/2.0/endpoints/"},
        timeout=30,
    )
    assert proxy.json() == {"endpoints": []}
    info = requests.get(f"{ajax}/3.0/mlflow/server-info", timeout=30).json()
    assert info["features_enabled"] == {"gateway": False}
    assert (
        requests.get(f"{ajax}/3.0/mlflow/ui-telemetry", timeout=30).json()["disable_ui_telemetry"]
        is True
    )
    count = {"aggregation_type": "COUNT"}
    query = {
        "experiment_ids": ["0"],
        "view_type": "TRACES",
        "metric_name": "trace_count",
        "aggregations": [count],
    }
    metrics = requests.post(f"{ajax}/3.0/mlflow/traces/metrics", json=query, timeout=30)
    assert metrics.json() == {
        "data_points": [{"metric_name": "trace_count", "values": {"COUNT": 0.0}}]
    }


def test_run_artifacts_download_from_an_s3_root(mlflow_tracking_s3: Any, tmp_path: Path) -> None:
    # The same UI download with the artifact root on SeaweedFS over HTTP (real S3 protocol).
    base = mlflow_tracking_s3.url
    mlflow.set_experiment("ui-s3")
    blob = os.urandom(3 * 1024 * 1024 + 7)
    (tmp_path / "weights.bin").write_bytes(blob)
    (tmp_path / "notes.txt").write_bytes(b"on s3\n")
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(tmp_path / "weights.bin"))
        mlflow.log_artifact(str(tmp_path / "notes.txt"))
    run_id = run.info.run_id
    whole = _get(base, "/get-artifact", {"run_uuid": run_id, "path": "weights.bin"})
    assert whole.status_code == 200 and whole.content == blob
    assert whole.headers["Content-Disposition"].startswith("attachment")
    assert whole.headers["X-Content-Type-Options"] == "nosniff"
    part = _get(
        base,
        "/get-artifact",
        {"run_uuid": run_id, "path": "weights.bin"},
        {"Range": "bytes=1000-1999"},
    )
    assert part.status_code == 206 and part.content == blob[1000:2000]
    text = _get(base, "/get-artifact", {"run_uuid": run_id, "path": "notes.txt"})
    assert text.content == b"on s3\n" and text.headers["Content-Type"].startswith("text/plain")
    missing = _get(base, "/get-artifact", {"run_uuid": run_id, "path": "nope.bin"})
    assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
