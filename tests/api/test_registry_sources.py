"""Model-version sources over HTTP (issue 11 §5): a source that climbs out of its location, or a
local / proxied one outside the artifact location of the run (logged model) the request names,
or one that addresses another host, is refused with stock MLflow's 400 before anything is stored;
a models:/<name>/... source must name an existing version whose run and logged model the request
agrees with (stock 3.17.2's lineage rule); every source the mlflow client sends keeps working.
The rule itself: tests/unit/test_registry_rules.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.api.conftest import Api

from metricgate.api.app import create_app
from metricgate.config import Settings

GHOST_RUN = "0123456789abcdef0123456789abcdef"

# (source, extra fields) with placeholders: {run} the run's id, {root} its artifact URI
# (mlflow-artifacts:/<exp>/<run>/artifacts), {local} the artifact directory of a run whose
# experiment keeps its artifacts on local disk (file:///...), {local_run} that run's id.
REFUSED: list[tuple[str, dict[str, str]]] = [
    # The four sources of the report.
    ("file:///etc", {}),
    ("../../../../etc/passwd", {}),
    ("mlflow-artifacts:/../../../etc", {}),
    ("runs:/{run}/../../../etc", {}),
    # The same with the run named, and their encoded / backslash / NUL variants.
    ("file:///etc", {"run_id": "{run}"}),
    ("file:///etc", {"run_id": "{local_run}"}),  # a local run, but /etc is not inside it
    ("../../../../etc/passwd", {"run_id": "{local_run}"}),
    ("{local}/../../../../etc", {"run_id": "{local_run}"}),
    ("{local}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc", {"run_id": "{local_run}"}),
    ("mlflow-artifacts:/../../../etc", {"run_id": "{run}"}),
    ("{root}/../../../../etc", {"run_id": "{run}"}),
    ("{root}/%2e%2e/%2e%2e/%2e%2e/etc", {"run_id": "{run}"}),
    ("{root}/..%2F..%2F..%2Fetc", {"run_id": "{run}"}),
    ("{root}/%252e%252e/%252e%252e/etc", {"run_id": "{run}"}),
    ("{root}/model\\..\\..\\..\\etc", {"run_id": "{run}"}),
    ("{root}/model%00.txt", {"run_id": "{run}"}),
    ("runs:/{run}/../../../etc", {"run_id": "{run}"}),
    ("runs:/{run}/%2e%2e/%2e%2e/etc", {"run_id": "{run}"}),
    ("runs:/{run}/model\\..\\..\\etc", {"run_id": "{run}"}),
    ("s3://bucket/models/../../other", {}),
    # A local or proxied source without a run, or with one that does not contain it / exist.
    ("{local}/model", {}),  # inside a run's directory, but the run is not named
    ("file:///tmp/model", {}),
    ("{root}/model", {}),
    ("{root}/model", {"run_id": GHOST_RUN}),
    ("{local}/model", {"run_id": GHOST_RUN}),
    ("{local}/model", {"run_id": "{run}"}),  # another run's directory
    ("{root}/model", {"run_id": "{local_run}"}),
    ("file://fileserver/share/model", {"run_id": "{local_run}"}),
    # A run / logged model source naming another resource than the request does.
    ("runs:/{run}/model", {"run_id": "{local_run}"}),
    ("models:/m-0123", {"model_id": "m-4567"}),
]


def _fill(text: str, names: dict[str, str]) -> str:
    for key, value in names.items():
        text = text.replace("{" + key + "}", value)
    return text


@pytest.fixture
async def world(api: Api, tmp_path: Path) -> dict[str, str]:
    """A run with proxied artifacts, a run whose experiment stores them on local disk, model m."""
    run = (await api.create_run(await api.create_experiment()))["info"]
    local_exp = await api.create_experiment(artifact_location=f"file://{tmp_path / 'local-exp'}")
    local_run = (await api.create_run(local_exp))["info"]
    assert local_run["artifact_uri"].startswith("file:///")
    (await api.post("/registered-models/create", {"name": "m"})).ok()
    return {"run": run["run_id"], "root": run["artifact_uri"], "local_run": local_run["run_id"],
            "local": local_run["artifact_uri"]}  # fmt: skip


async def _versions_of(api: Api, name: str) -> list[dict[str, Any]]:
    found = (await api.get("/model-versions/search", {"filter": f"name = '{name}'"})).ok()
    return list(found.get("model_versions", []))


@pytest.mark.parametrize(("source", "extra"), REFUSED)
async def test_unsafe_sources_are_refused_and_nothing_is_stored(
    api: Api, world: dict[str, str], source: str, extra: dict[str, str]
) -> None:
    body = {
        "name": "m",
        "source": _fill(source, world),
        **{k: _fill(v, world) for k, v in extra.items()},
    }
    reply = await api.post("/model-versions/create", body)
    message = reply.error(400, "INVALID_PARAMETER_VALUE")
    assert message.startswith("Invalid model version source: "), message
    # Nothing stored: no version, and the model's version counter did not move.
    assert await _versions_of(api, "m") == []
    model = (await api.get("/registered-models/get", {"name": "m"})).ok()["registered_model"]
    assert "latest_versions" not in model or model["latest_versions"] == []
    (await api.get("/model-versions/get-download-uri", {"name": "m", "version": "1"})).error(404)
    ok = (
        await api.post("/model-versions/create", {"name": "m", "source": "s3://bucket/next"})
    ).ok()
    assert ok["model_version"]["version"] == "1"


async def test_sources_the_client_sends_are_stored(api: Api, world: dict[str, str]) -> None:
    """What mlflow's register_model / create_model_version send, and where get-download-uri then
    points: run artifact URIs with their run (proxied or local), runs:/, models:/, object stores."""
    run, root, local_run, local = world["run"], world["root"], world["local_run"], world["local"]
    exp = (await api.get("/runs/get", {"run_id": run})).ok()["run"]["info"]["experiment_id"]
    logged = (
        await api.post("/logged-models", {"experiment_id": exp, "name": "lm", "source_run_id": run})
    ).ok()
    model_id, model_root = (
        logged["model"]["info"]["model_id"],
        logged["model"]["info"]["artifact_uri"],
    )
    accepted: list[tuple[str, dict[str, str], str]] = [
        (f"{root}/model", {"run_id": run}, f"{root}/model"),
        (root, {"run_id": run}, root),
        (f"{local}/model", {"run_id": local_run}, f"{local}/model"),
        (
            f"{local}/model".removeprefix("file://"),
            {"run_id": local_run},
            f"{local}/model".removeprefix("file://"),
        ),
        (f"runs:/{run}/model", {"run_id": run}, f"{root}/model"),
        (f"runs:/{run}/model", {}, f"{root}/model"),
        (f"models:/{model_id}", {"model_id": model_id, "run_id": run}, model_root),
        (f"{model_root}/MLmodel", {"model_id": model_id}, f"{model_root}/MLmodel"),
        (
            "s3://bucket/prefix/1/abc/artifacts/model",
            {"run_id": run},
            "s3://bucket/prefix/1/abc/artifacts/model",
        ),
        ("s3://bucket/a..b/model.d", {}, "s3://bucket/a..b/model.d"),
        ("models:/m/1", {}, f"{root}/model"),
    ]
    for number, (source, extra, location) in enumerate(accepted, start=1):
        version = (
            await api.post("/model-versions/create", {"name": "m", "source": source, **extra})
        ).ok()
        assert version["model_version"]["version"] == str(number), source
        assert version["model_version"]["source"] == source
        got = (
            await api.get("/model-versions/get-download-uri", {"name": "m", "version": str(number)})
        ).ok()
        assert got["artifact_uri"] == location, source


async def _assert_nothing_stored(api: Api, name: str, versions: int) -> None:
    assert len(await _versions_of(api, name)) == versions
    model = (await api.get("/registered-models/get", {"name": name})).ok()["registered_model"]
    assert max([int(v["version"]) for v in model.get("latest_versions", [])], default=0) == versions


HOST_ADDRESSED = [
    "http://host/../x",
    "https://example.com/models/model.tar.gz",
    "ftp://",
    "ftp://files.example.com/model",
    "mlflow-artifacts://other-host:5000/1/run/artifacts/model",
    "http://host/api/2.0/mlflow-artifacts/artifacts/..%2f..%2fetc",
]


async def test_host_addressed_sources_are_refused(api: Api, world: dict[str, str]) -> None:
    for source in HOST_ADDRESSED:
        reply = await api.post(
            "/model-versions/create", {"name": "m", "source": source, "run_id": world["run"]}
        )
        scheme = source.split(":", 1)[0]
        assert reply.error(400, "INVALID_PARAMETER_VALUE").startswith(
            f"'source' cannot use the '{scheme}' scheme: "
        )
    await _assert_nothing_stored(api, "m", 0)


async def test_models_sources_copy_an_existing_version(api: Api, world: dict[str, str]) -> None:
    """A models:/<name>/... source is stored as models:/<name>/<version> of the version it
    resolves to, whose run (and logged model) the new version inherits, as stock 3.17.2 does."""
    run, root = world["run"], world["root"]
    (
        await api.post(
            "/model-versions/create", {"name": "m", "source": f"{root}/model", "run_id": run}
        )
    ).ok()
    (await api.post("/model-versions/create", {"name": "m", "source": "s3://bucket/two"})).ok()
    (
        await api.post(
            "/registered-models/alias", {"name": "m", "alias": "champion", "version": "1"}
        )
    ).ok()
    (
        await api.post(
            "/model-versions/transition-stage", {"name": "m", "version": "1", "stage": "Staging"}
        )
    ).ok()
    (await api.post("/registered-models/create", {"name": "copy"})).ok()
    accepted = [
        ("models:/m/1", {}, "models:/m/1", run, f"{root}/model"),
        ("models:/m@champion", {}, "models:/m/1", run, f"{root}/model"),
        ("models:/m/staging", {}, "models:/m/1", run, f"{root}/model"),
        ("models:/m/latest", {}, "models:/m/2", None, "s3://bucket/two"),
        ("models:/m/1", {"run_id": run}, "models:/m/1", run, f"{root}/model"),
    ]
    for number, (source, extra, stored, run_id, location) in enumerate(accepted, start=1):
        version = (
            await api.post("/model-versions/create", {"name": "copy", "source": source, **extra})
        ).ok()
        assert version["model_version"]["source"] == stored, source
        assert version["model_version"].get("run_id") == run_id, source
        got = (
            await api.get(
                "/model-versions/get-download-uri", {"name": "copy", "version": str(number)}
            )
        ).ok()
        assert got["artifact_uri"] == location, source


async def test_models_sources_that_name_no_usable_version_are_refused(
    api: Api, world: dict[str, str]
) -> None:
    run, local_run = world["run"], world["local_run"]
    (await api.post("/model-versions/create", {"name": "m", "source": f"runs:/{run}/model"})).ok()
    prompt_tags = [{"key": "mlflow.prompt.is_prompt", "value": "true"}]
    (await api.post("/registered-models/create", {"name": "p", "tags": prompt_tags})).ok()
    (
        await api.post(
            "/model-versions/create", {"name": "p", "source": "s3://bucket/p", "tags": prompt_tags}
        )
    ).ok()
    (await api.post("/registered-models/create", {"name": "copy"})).ok()
    mismatch = "must match the referenced model version"
    refused: list[tuple[str, dict[str, str], int, str, str]] = [
        ("models:/m/1", {"run_id": local_run}, 400, "INVALID_PARAMETER_VALUE", mismatch),
        ("models:/m/1", {"model_id": "m-0123"}, 400, "INVALID_PARAMETER_VALUE", mismatch),
        ("models:/p/1", {}, 400, "INVALID_PARAMETER_VALUE", "Prompt versions cannot be used"),
        (
            "models://profile/m/1",
            {},
            400,
            "INVALID_PARAMETER_VALUE",
            "must use the active model registry",
        ),
        ("models:/m/1/x", {}, 400, "INVALID_PARAMETER_VALUE", "must identify the resource"),
        ("models:/m@nobody", {}, 400, "INVALID_PARAMETER_VALUE", "alias nobody not found"),
        ("models:/m/nonsense", {}, 400, "INVALID_PARAMETER_VALUE", "Invalid Model Version stage"),
        ("models:/m/7", {}, 404, "RESOURCE_DOES_NOT_EXIST", "version=7"),
        (
            "models:/m/Production",
            {},
            404,
            "RESOURCE_DOES_NOT_EXIST",
            "and stage 'Production' found",
        ),
        ("models:/ghost/1", {}, 404, "RESOURCE_DOES_NOT_EXIST", "ghost"),
    ]
    for source, extra, status, code, message in refused:
        reply = await api.post(
            "/model-versions/create", {"name": "copy", "source": source, **extra}
        )
        assert message in reply.error(status, code), source
    await _assert_nothing_stored(api, "copy", 0)


async def test_an_allowed_host_scheme_is_accepted_and_the_refusal_names_the_setting(
    settings: Settings,
) -> None:
    allowed = dataclasses.replace(
        settings,
        artifacts=dataclasses.replace(settings.artifacts, allowed_host_source_schemes=("https",)),
    )
    async with TestClient(TestServer(create_app(allowed))) as client:
        api = Api(client)
        run_id = await api.new_run_id()
        (await api.post("/registered-models/create", {"name": "hosted"})).ok()
        source = "https://example.com/models/model.tar.gz"
        created = (
            await api.post(
                "/model-versions/create", {"name": "hosted", "source": source, "run_id": run_id}
            )
        ).ok()
        assert created["model_version"]["source"] == source
        refused = await api.post(
            "/model-versions/create",
            {"name": "hosted", "source": "ftp://f.example.com/m", "run_id": run_id},
        )
        assert "add 'ftp' to METRICGATE_ALLOWED_HOST_SOURCE_SCHEMES" in refused.error(
            400, "INVALID_PARAMETER_VALUE"
        )
        assert len(await _versions_of(api, "hosted")) == 1
