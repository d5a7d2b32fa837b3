"""The web UI's non-GraphQL endpoints (api/ui_artifacts.py, ui_support.py, ui_genai.py) through the
app: artifact downloads of runs, model versions and logged models (bytes, headers, Range, 404s,
traversal, staged uploads), the logged model's file tree, the mlflow.modelVersions tag written by
model-versions/create, search-datasets, and the quiet answers of the UI's support and GenAI calls.

Real PostgreSQL, Redis and local artifact store (tests/conftest.py); shapes follow stock MLflow
3.17.2 as measured against a stock server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.conftest import AJAX, Api, Reply

import upload_client as uc
from metricgate.api.keys import SERVICE, SETTINGS
from metricgate.config import Settings
from metricgate.stores.postgres.uploads import PgUploadStore
from metricgate.uploads.sweeper import UploadSweeper

ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
PART = 64 * 1024
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(300)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Small parts, so the staged-upload tests need no large bodies.
    return dataclasses.replace(
        settings, uploads=dataclasses.replace(settings.uploads, min_part_bytes=PART)
    )


def store_root(artifact_uri: str) -> str:
    assert artifact_uri.startswith("mlflow-artifacts:/"), artifact_uri
    return artifact_uri.removeprefix("mlflow-artifacts:/")


async def put(api: Api, store_path: str, data: bytes) -> None:
    reply = await api.request("PUT", f"{ARTIFACTS}/{store_path}", data=data, absolute=True)
    assert reply.status == 200, reply


async def get_artifact(
    api: Api, run_id: str, path: str, headers: dict[str, str] | None = None
) -> Reply:
    return await api.get(
        "/get-artifact", {"run_uuid": run_id, "path": path}, absolute=True, headers=headers
    )


@pytest.fixture
async def run(api: Api) -> dict[str, Any]:
    return await api.create_run(await api.create_experiment())


@pytest.fixture
async def run_files(api: Api, run: dict[str, Any]) -> dict[str, bytes]:
    """A run's committed artifacts, by path relative to the run's root."""
    files = {
        "notes.txt": b"hello notes\n",
        "plots/img.png": PNG,
        "model/MLmodel": b"flavors: {}\n",
        "metrics.json": b'{"a": 1}',
        "weights.bin": os.urandom(3 * 1024 * 1024 + 17),  # several store chunks
    }
    root = store_root(run["info"]["artifact_uri"])
    for path, data in files.items():
        await put(api, f"{root}/{path}", data)
    return files


async def create_logged_model(api: Api, experiment_id: str, name: str = "model") -> dict[str, Any]:
    return (await api.post("/logged-models", {"experiment_id": experiment_id, "name": name})).ok()[
        "model"
    ]["info"]


async def create_version(api: Api, name: str, source: str, **extra: Any) -> Reply:
    return await api.post("/model-versions/create", {"name": name, "source": source, **extra})


# ---------------------------------------------------------------- /get-artifact


async def test_run_artifacts_byte_exact_with_stock_headers(
    api: Api, run: dict[str, Any], run_files: dict[str, bytes]
) -> None:
    expected_types = {
        "notes.txt": "text/plain",
        "plots/img.png": "image/png",
        "model/MLmodel": "text/plain",  # no extension: the name itself is in stock's text list
        "metrics.json": "text/plain",  # stock renders JSON as text, not application/json
        "weights.bin": "application/octet-stream",
    }
    run_id = run["info"]["run_id"]
    for path, data in run_files.items():
        reply = await get_artifact(api, run_id, path)
        assert reply.status == 200, reply
        assert reply.raw == data, path
        assert reply.content_type == expected_types[path], (path, reply.headers)
        assert reply.headers["Content-Length"] == str(len(data))
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Content-Disposition"].startswith(
            f'attachment; filename="{path.rsplit("/", 1)[-1]}"'
        )
        assert reply.headers["Accept-Ranges"] == "bytes"
    # run_id is accepted as well as the UI's run_uuid, and the evaluation view's ajax spelling.
    by_id = await api.get("/get-artifact", {"run_id": run_id, "path": "notes.txt"}, absolute=True)
    assert by_id.status == 200 and by_id.raw == run_files["notes.txt"]
    ajax = await api.get(
        f"{AJAX}/get-artifact", {"run_uuid": run_id, "path": "notes.txt"}, absolute=True
    )
    assert ajax.status == 200 and ajax.raw == run_files["notes.txt"]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 10),
        ("bytes=1048570-1048600", 1048570, 1048601),  # across the store's 1 MiB chunks
        ("bytes=-100", None, None),
        ("bytes=3145700-", 3145700, None),
    ],
)
async def test_run_artifact_ranges(
    api: Api,
    run: dict[str, Any],
    run_files: dict[str, bytes],
    header: str,
    start: int | None,
    end: int | None,
) -> None:
    data = run_files["weights.bin"]
    reply = await get_artifact(api, run["info"]["run_id"], "weights.bin", {"Range": header})
    assert reply.status == 206, reply
    expected = data[-100:] if start is None else data[start:end]
    assert reply.raw == expected
    first = len(data) - 100 if start is None else start
    assert (
        reply.headers["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{len(data)}"
    )
    assert reply.content_type == "application/octet-stream"


async def test_unsatisfiable_range_is_416(
    api: Api, run: dict[str, Any], run_files: dict[str, bytes]
) -> None:
    size = len(run_files["notes.txt"])
    reply = await get_artifact(api, run["info"]["run_id"], "notes.txt", {"Range": f"bytes={size}-"})
    reply.error(416, "INVALID_PARAMETER_VALUE")
    assert reply.headers["Content-Range"] == f"bytes */{size}"


async def test_run_artifact_errors(
    api: Api, run: dict[str, Any], run_files: dict[str, bytes]
) -> None:
    run_id = run["info"]["run_id"]
    (await get_artifact(api, "0" * 32, "notes.txt")).error(404, "RESOURCE_DOES_NOT_EXIST", "0" * 32)
    (await get_artifact(api, run_id, "missing.txt")).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await get_artifact(api, run_id, "plots")).error(404, "RESOURCE_DOES_NOT_EXIST")  # a directory
    no_run = await api.get("/get-artifact", {"path": "notes.txt"}, absolute=True)
    no_run.error(404, "RESOURCE_DOES_NOT_EXIST")
    no_path = await api.get("/get-artifact", {"run_uuid": run_id}, absolute=True)
    no_path.error(400, "BAD_REQUEST", "path")


@pytest.mark.parametrize(
    "path",
    [
        "../../../etc/passwd",
        "plots/../../other/artifacts/x",
        "/etc/passwd",
        "%2e%2e/%2e%2e/x",
        "a\\..\\b",
        "a//b",
    ],
)
async def test_traversal_is_refused(
    api: Api, run: dict[str, Any], run_files: dict[str, bytes], path: str
) -> None:
    (await get_artifact(api, run["info"]["run_id"], path)).error(400, "INVALID_PARAMETER_VALUE")


async def test_artifact_location_outside_the_store_is_not_read(api: Api, tmp_path: Any) -> None:
    """A run whose experiment points elsewhere (another bucket, a host path) is never read."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not an artifact")
    exp_id = await api.create_experiment(artifact_location=tmp_path.as_uri())
    run = await api.create_run(exp_id)
    assert run["info"]["artifact_uri"].startswith(tmp_path.as_uri())
    (await get_artifact(api, run["info"]["run_id"], "../../secret.txt")).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await get_artifact(api, run["info"]["run_id"], "x.txt")).error(
        404, "RESOURCE_DOES_NOT_EXIST", "not stored"
    )


async def test_artifact_location_spelled_with_the_root_is_served(
    api: Api, client: TestClient[Any, Any]
) -> None:
    """An experiment created with an artifact_location under the server's own root."""
    root_uri = client.server.app[SETTINGS].artifacts.uri
    exp_id = await api.create_experiment(artifact_location=f"{root_uri}/custom")
    run = await api.create_run(exp_id)
    run_id = run["info"]["run_id"]
    await put(api, f"custom/{run_id}/artifacts/a.txt", b"under the root")
    reply = await get_artifact(api, run_id, "a.txt")
    assert reply.status == 200 and reply.raw == b"under the root"


async def test_staged_upload_is_invisible_until_committed(
    api: Api, client: TestClient[Any, Any], run: dict[str, Any], db_url: str
) -> None:
    run_id = run["info"]["run_id"]
    files = {"a.bin": uc.blob(2 * PART, 1), "b.bin": uc.blob(PART + 9, 2)}
    session = await uc.upload_directory(client, run_id, "staged", files, PART, complete_it=False)
    sid = session["upload_id"]
    # Every part is stored, nothing is committed: nothing to read.
    (await get_artifact(api, run_id, "staged/a.bin")).error(404, "RESOURCE_DOES_NOT_EXIST")
    # A commit in progress (one file already in the store) stays hidden until the whole
    # directory is committed.
    committing = "UPDATE upload_sessions SET state = 'committing', commit_heartbeat_at = now() WHERE session_id = $1"
    await uc.sql(db_url, committing, sid)
    await uc.commit_in_store(client, db_url, sid, 0)
    service = client.server.app[SERVICE]
    assert await service.artifacts.inner.size(
        f"{store_root(run['info']['artifact_uri'])}/staged/a.bin"
    )  # stored
    (await get_artifact(api, run_id, "staged/a.bin")).error(404, "RESOURCE_DOES_NOT_EXIST")
    # The committer died; once its lease is stale the sweeper rolls the commit forward.
    stale = "UPDATE upload_sessions SET commit_heartbeat_at = now() - interval '1 hour' WHERE session_id = $1"
    await uc.sql(db_url, stale, sid)
    assert service.uploads is not None
    uploads = PgUploadStore(service.db)
    sweeper = UploadSweeper(
        service.artifacts.inner, uploads, service.uploads.committer, service.settings.uploads
    )
    assert (await sweeper.sweep()).rolled_forward == 1
    for name, data in files.items():
        reply = await get_artifact(api, run_id, f"staged/{name}")
        assert reply.status == 200 and reply.raw == data


# ---------------------------------------------------------------- /model-versions/get-artifact


async def test_model_version_artifact_from_every_source_kind(
    api: Api, run: dict[str, Any], run_files: dict[str, bytes]
) -> None:
    exp_id, run_id = run["info"]["experiment_id"], run["info"]["run_id"]
    model = await create_logged_model(api, exp_id)
    mlmodel = b"artifact_path: model\nflavors:\n  python_function: {}\n"
    await put(api, f"{store_root(model['artifact_uri'])}/MLmodel", mlmodel)
    (await api.post("/registered-models/create", {"name": "mv-art"})).ok()
    sources = [
        (f"models:/{model['model_id']}", {"model_id": model["model_id"]}, mlmodel),
        (f"runs:/{run_id}/model", {"run_id": run_id}, run_files["model/MLmodel"]),
        # A proxied storage URI, with the run that contains it (what register_model sends; like
        # stock, a proxied or local source without its run is refused: test_registry_sources.py).
        (f"{run['info']['artifact_uri']}/model", {"run_id": run_id}, run_files["model/MLmodel"]),
        ("models:/mv-art/1", {}, mlmodel),  # another version: its resolved location
    ]
    for version, (source, extra, expected) in enumerate(sources, start=1):
        (await create_version(api, "mv-art", source, **extra)).ok()
        query = {"name": "mv-art", "version": str(version), "path": "MLmodel"}
        reply = await api.get("/model-versions/get-artifact", query, absolute=True)
        assert reply.status == 200, (source, reply)
        assert reply.raw == expected, source
        assert reply.content_type == "text/plain"
        assert reply.headers["Content-Disposition"].startswith('attachment; filename="MLmodel"')
        assert reply.headers["X-Content-Type-Options"] == "nosniff"


async def test_model_version_artifact_errors(
    api: Api, run: dict[str, Any], run_files: dict[str, bytes]
) -> None:
    (await api.post("/registered-models/create", {"name": "mv-err"})).ok()
    (await create_version(api, "mv-err", f"runs:/{run['info']['run_id']}/model")).ok()
    (await create_version(api, "mv-err", "s3://elsewhere/model")).ok()

    async def fetch(name: str, version: str, path: str) -> Reply:
        query = {"name": name, "version": version, "path": path}
        return await api.get("/model-versions/get-artifact", query, absolute=True)

    (await fetch("mv-err", "9", "MLmodel")).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await fetch("nope", "1", "MLmodel")).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await fetch("mv-err", "1", "missing")).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await fetch("mv-err", "1", "../../notes.txt")).error(400, "INVALID_PARAMETER_VALUE")
    (await fetch("mv-err", "2", "MLmodel")).error(404, "RESOURCE_DOES_NOT_EXIST", "not stored")


# ---------------------------------------------------------------- logged-model artifacts


@pytest.mark.parametrize("prefix", ["/api/2.0/mlflow", AJAX])
async def test_logged_model_tree_and_files(api: Api, run: dict[str, Any], prefix: str) -> None:
    model = await create_logged_model(api, run["info"]["experiment_id"])
    root = store_root(model["artifact_uri"])
    files = {
        "MLmodel": b"flavors: {}\n", "conda.yaml": b"name: x\n", "data/model.pkl": os.urandom(2000), "empty.txt": b"",
    }  # fmt: skip
    for path, data in files.items():
        await put(api, f"{root}/{path}", data)
    base = f"{prefix}/logged-models/{model['model_id']}/artifacts"

    top = (await api.get(f"{base}/directories", absolute=True)).ok()
    assert top == {
        "root_uri": model["artifact_uri"],
        "files": [
            {"path": "MLmodel", "is_dir": False, "file_size": len(files["MLmodel"])},
            {"path": "conda.yaml", "is_dir": False, "file_size": len(files["conda.yaml"])},
            {"path": "data", "is_dir": True},
            {"path": "empty.txt", "is_dir": False},  # stock leaves a zero size out
        ],
    }
    sub = (
        await api.get(f"{base}/directories", {"artifact_directory_path": "data"}, absolute=True)
    ).ok()
    assert sub["files"] == [{"path": "data/model.pkl", "is_dir": False, "file_size": 2000}]
    # A file, a missing directory: just the root (proto JSON leaves the empty list out).
    for path in ("MLmodel", "nope"):
        listed = (
            await api.get(f"{base}/directories", {"artifact_directory_path": path}, absolute=True)
        ).ok()
        assert listed == {"root_uri": model["artifact_uri"]}

    for path, data in files.items():
        reply = await api.get(f"{base}/files", {"artifact_file_path": path}, absolute=True)
        assert reply.status == 200 and reply.raw == data, path
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    query = {"artifact_file_path": "data/model.pkl"}
    ranged = await api.get(f"{base}/files", query, absolute=True, headers={"Range": "bytes=10-19"})
    assert ranged.status == 206 and ranged.raw == files["data/model.pkl"][10:20]


async def test_logged_model_artifact_errors(api: Api, run: dict[str, Any]) -> None:
    model = await create_logged_model(api, run["info"]["experiment_id"])
    base = f"{AJAX}/logged-models/{model['model_id']}/artifacts"
    missing = f"{AJAX}/logged-models/m-{'0' * 32}/artifacts"

    async def fetch(url: str, **query: str) -> Reply:
        return await api.get(url, query, absolute=True)

    (await fetch(f"{missing}/directories")).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await fetch(f"{missing}/files", artifact_file_path="MLmodel")).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )
    (await fetch(f"{base}/files")).error(400, "BAD_REQUEST", "artifact_file_path")
    (await fetch(f"{base}/files", artifact_file_path="MLmodel")).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )
    (await fetch(f"{base}/files", artifact_file_path="../../x")).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await fetch(f"{base}/directories", artifact_directory_path="../x")).error(
        400, "INVALID_PARAMETER_VALUE"
    )


# ---------------------------------------------------------------- mlflow.modelVersions


async def model_versions_tag(api: Api, model_id: str) -> str | None:
    info = (await api.get(f"/logged-models/{model_id}")).ok()["model"]["info"]
    return {t["key"]: t["value"] for t in info.get("tags", [])}.get("mlflow.modelVersions")


async def test_create_version_records_the_logged_model_link(api: Api, run: dict[str, Any]) -> None:
    model = await create_logged_model(api, run["info"]["experiment_id"])
    model_id = model["model_id"]
    for name in ("link-a", "link-b"):
        (await api.post("/registered-models/create", {"name": name})).ok()
    (await create_version(api, "link-a", f"models:/{model_id}", model_id=model_id)).ok()
    # Stock's spelling: Python's json.dumps, the version as a number.
    assert await model_versions_tag(api, model_id) == '[{"name": "link-a", "version": 1}]'
    (await create_version(api, "link-b", f"models:/{model_id}", model_id=model_id)).ok()
    (await create_version(api, "link-a", f"models:/{model_id}", model_id=model_id)).ok()
    assert json.loads(await model_versions_tag(api, model_id) or "") == [
        {"name": "link-a", "version": 1}, {"name": "link-b", "version": 1}, {"name": "link-a", "version": 2},
    ]  # fmt: skip
    # A version without a model links nothing; a prompt version neither.
    other = await create_logged_model(api, run["info"]["experiment_id"])
    (await create_version(api, "link-a", "s3://bucket/x")).ok()
    prompt_tag = [{"key": "mlflow.prompt.is_prompt", "value": "true"}]
    (
        await create_version(
            api, "link-b", "s3://bucket/p", model_id=other["model_id"], tags=prompt_tag
        )
    ).ok()
    assert await model_versions_tag(api, other["model_id"]) is None


async def test_create_version_for_a_missing_model_creates_nothing(api: Api) -> None:
    (await api.post("/registered-models/create", {"name": "link-missing"})).ok()
    missing = f"m-{'0' * 32}"
    refused = await create_version(api, "link-missing", "s3://bucket/x", model_id=missing)
    refused.error(404, "RESOURCE_DOES_NOT_EXIST", missing)
    # Rolled back with the link: the next version is still 1.
    assert (await create_version(api, "link-missing", "s3://bucket/x")).ok()["model_version"][
        "version"
    ] == "1"


async def test_concurrent_registrations_of_one_model_are_all_recorded(
    api: Api, run: dict[str, Any]
) -> None:
    model = await create_logged_model(api, run["info"]["experiment_id"])
    names = [f"conc-{i}" for i in range(6)]
    for name in names:
        (await api.post("/registered-models/create", {"name": name})).ok()
    replies = await asyncio.gather(
        *(
            create_version(api, n, f"models:/{model['model_id']}", model_id=model["model_id"])
            for n in names
        )
    )
    for reply in replies:
        reply.ok()
    entries = json.loads(await model_versions_tag(api, model["model_id"]) or "")
    assert sorted(e["name"] for e in entries) == names and {e["version"] for e in entries} == {1}


# ---------------------------------------------------------------- experiments/search-datasets


def dataset_input(name: str, digest: str, context: str | None) -> dict[str, Any]:
    tags = [{"key": "mlflow.data.context", "value": context}] if context else []
    dataset = {"name": name, "digest": digest, "source_type": "local", "source": "{}"}
    return {"tags": tags, "dataset": dataset}


async def test_search_datasets(api: Api, ajax: Api) -> None:
    exp_a, exp_b, exp_empty = [await api.create_experiment() for _ in range(3)]
    run_a1, run_a2, run_b = [await api.create_run(e) for e in (exp_a, exp_a, exp_b)]
    inputs = {
        run_a1["info"]["run_id"]: [
            dataset_input("train", "d1", "training"),
            dataset_input("raw", "d0", None),
        ],
        run_a2["info"]["run_id"]: [
            dataset_input("train", "d1", "eval"),
            dataset_input("train", "d2", "training"),
        ],
        run_b["info"]["run_id"]: [dataset_input("train", "d1", "training")],
    }
    for run_id, datasets in inputs.items():
        (await api.post("/runs/log-inputs", {"run_id": run_id, "datasets": datasets})).ok()
    body = (
        await ajax.post("/experiments/search-datasets", {"experiment_ids": [exp_a, exp_b]})
    ).ok()
    got = sorted(
        body["dataset_summaries"],
        key=lambda s: (s["experiment_id"], s["name"], s["digest"], s.get("context", "")),
    )
    assert got == [
        {"experiment_id": exp_a, "name": "raw", "digest": "d0"},  # no context tag: no context field
        {"experiment_id": exp_a, "name": "train", "digest": "d1", "context": "eval"},
        {"experiment_id": exp_a, "name": "train", "digest": "d1", "context": "training"},
        {"experiment_id": exp_a, "name": "train", "digest": "d2", "context": "training"},
        {"experiment_id": exp_b, "name": "train", "digest": "d1", "context": "training"},
    ]
    only_b = (await ajax.post("/experiments/search-datasets", {"experiment_ids": [exp_b]})).ok()
    assert [s["experiment_id"] for s in only_b["dataset_summaries"]] == [exp_b]
    assert (
        await ajax.post("/experiments/search-datasets", {"experiment_ids": [exp_empty]})
    ).ok() == {}


async def test_search_datasets_errors(ajax: Api) -> None:
    (await ajax.post("/experiments/search-datasets", {})).error(
        400, "INVALID_PARAMETER_VALUE", "at least one"
    )
    many = [str(i) for i in range(21)]
    too_many = await ajax.post("/experiments/search-datasets", {"experiment_ids": many})
    too_many.error(400, "INVALID_PARAMETER_VALUE", "20")
    (await ajax.post("/experiments/search-datasets", {"experiment_ids": ["x"]})).error(
        400, "INVALID_PARAMETER_VALUE"
    )


# ---------------------------------------------------------------- support and GenAI calls


async def test_server_info_has_every_key_stock_sends(api: Api) -> None:
    from mlflow.utils import server_info as stock

    stock_keys = {
        getattr(stock, n)
        for n in dir(stock)
        if n.startswith("SERVER_INFO_") and n != "SERVER_INFO_ENDPOINT"
    }
    body = (await api.get("/ajax-api/3.0/mlflow/server-info", absolute=True)).ok()
    assert set(body) == stock_keys
    assert (
        body["features_enabled"] == {"gateway": False} and body["trace_archival_enabled"] is False
    )


async def test_support_endpoints_answer_like_stock_with_features_off(api: Api, ajax: Api) -> None:
    for method in ("GET", "POST"):
        reply = await ajax.request(
            method, "/gateway-proxy", params={"gateway_path": "api/2.0/endpoints/"}
        )
        assert reply.ok() == {"endpoints": []}
    # No authentication: no current user, as stock without its auth app (the UI hides accounts).
    (await ajax.get("/users/current")).error(404, "ENDPOINT_NOT_FOUND")
    v3 = "/ajax-api/3.0/mlflow"
    telemetry = (await api.get(f"{v3}/ui-telemetry", absolute=True)).ok()
    assert telemetry == {
        "disable_ui_events": [],
        "disable_ui_telemetry": True,
        "ui_rollout_percentage": 0,
    }
    posted = await api.post(f"{v3}/ui-telemetry", {"records": [{"event": "x"}]}, absolute=True)
    assert posted.ok() == {"status": "disabled"}
    config = (await api.get(f"{v3}/assistant/config", absolute=True)).ok()
    assert config == {"providers": {}, "projects": {}, "remote_access_allowed": False}
    providers = (await api.get(f"{v3}/assistant/providers", absolute=True)).ok()
    assert providers["providers"] == [] and providers["resolved"] is None


EXP = [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": "1"}}]


@pytest.mark.parametrize(
    ("method", "path", "body", "expected"),
    [
        ("POST", "/ajax-api/3.0/mlflow/traces/search", {"locations": EXP, "max_results": 25}, {}),
        (
            "POST",
            "/ajax-api/3.0/mlflow/traces/search",
            {"locations": [], "max_results": 1},
            {},
        ),  # the judges page
        ("GET", "/ajax-api/2.0/mlflow/traces?experiment_ids=1", None, {}),
        ("POST", "/ajax-api/3.0/mlflow/datasets/search", {"experiment_ids": ["1"]}, {}),
        ("GET", "/ajax-api/3.0/mlflow/scorers/list?experiment_id=1", None, {}),
        ("GET", "/ajax-api/3.0/mlflow/gateway/endpoints/list", None, {}),
        ("GET", "/ajax-api/3.0/mlflow/gateway/secrets/list", None, {}),
        ("GET", "/ajax-api/3.0/mlflow/gateway/budgets/list?max_results=10", None, {}),
        (
            "GET",
            "/ajax-api/3.0/mlflow/gateway/secrets/config",
            None,
            {"secrets_available": False, "using_default_passphrase": False},
        ),
        ("POST", "/ajax-api/3.0/jobs/search", {}, {"jobs": []}),
        (
            "POST",
            "/ajax-api/3.0/mlflow/traces/metrics",
            {
                "experiment_ids": ["1"],
                "view_type": "TRACES",
                "metric_name": "trace_count",
                "aggregations": [{"aggregation_type": "COUNT"}],
            },
            {"data_points": [{"metric_name": "trace_count", "values": {"COUNT": 0.0}}]},
        ),
        (
            "POST",
            "/ajax-api/3.0/mlflow/traces/metrics",
            {
                "experiment_ids": ["1"],
                "view_type": "TRACES",
                "metric_name": "trace_count",
                "aggregations": [{"aggregation_type": "COUNT"}],
                "time_interval_seconds": 86400,
                "dimensions": ["trace_status"],
            },
            {},
        ),
        (
            "POST",
            "/ajax-api/3.0/mlflow/traces/metrics",
            {
                "experiment_ids": ["1"],
                "view_type": "TRACES",
                "metric_name": "latency",
                "aggregations": [{"aggregation_type": "AVG"}],
            },
            {},
        ),
    ],
)
async def test_genai_calls_answer_an_empty_store(
    api: Api, method: str, path: str, body: Any, expected: Any
) -> None:
    reply = await api.request(method, path, body=body, absolute=True)
    assert reply.ok() == expected


async def test_genai_calls_check_required_fields_and_stay_off_the_client_api(api: Api) -> None:
    v3 = "/ajax-api/3.0/mlflow"
    (await api.post(f"{v3}/traces/search", {}, absolute=True)).error(
        400, "INVALID_PARAMETER_VALUE", "locations"
    )
    no_view = await api.post(f"{v3}/traces/metrics", {"experiment_ids": ["1"]}, absolute=True)
    no_view.error(400, "INVALID_PARAMETER_VALUE", "view_type")
    no_ids = await api.get("/ajax-api/2.0/mlflow/traces", absolute=True)
    no_ids.error(400, "INVALID_PARAMETER_VALUE", "experiment_ids")
    # The Python client's spelling is not answered: searching traces there must not look empty.
    client_api = await api.post("/api/3.0/mlflow/traces/search", {"locations": EXP}, absolute=True)
    client_api.error(404, "ENDPOINT_NOT_FOUND")
