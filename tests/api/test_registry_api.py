"""Registry endpoints over raw HTTP: what the mlflow client would not send, source resolution,
the GET fallback of get-latest-versions, and client mistakes that must never be a 500."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import AJAX, Api


async def test_sources_resolve_to_readable_locations(api: Api) -> None:
    run = await api.create_run(await api.create_experiment())
    run_id, artifact_uri = run["info"]["run_id"], run["info"]["artifact_uri"]
    await api.create_registered_model("m")

    async def register(source: str, **extra: str) -> dict[str, Any]:
        return await api.create_model_version("m", source, **extra)

    async def download_uri(version: str) -> str:
        reply = await api.get("/model-versions/get-download-uri", {"name": "m", "version": version})
        return str(reply.ok()["artifact_uri"])

    v1 = await register(f"runs:/{run_id}/model/sub", run_id=run_id)
    assert (
        v1["source"] == f"runs:/{run_id}/model/sub"
        and v1["run_id"] == run_id
        and v1["status"] == "READY"
    )
    assert await download_uri("1") == f"{artifact_uri}/model/sub"
    await register("s3://bucket/any/where")
    assert await download_uri("2") == "s3://bucket/any/where"
    # models:/<name>/<version> points at what that version points at.
    v3 = await register("models:/m/1")
    assert await download_uri("3") == f"{artifact_uri}/model/sub" and v3["run_id"] == run_id


async def test_get_latest_versions_post_get_and_stage_validation(api: Api) -> None:
    await api.create_registered_model("m")
    for _ in range(3):
        await api.create_model_version("m", "s3://b/x")
    body = {"name": "m", "version": "2", "stage": "STAGING", "archive_existing_versions": False}
    assert (await api.post("/model-versions/transition-stage", body)).ok()["model_version"][
        "current_stage"
    ] == "Staging"
    posted = (
        await api.post(
            "/registered-models/get-latest-versions", {"name": "m", "stages": ["staging"]}
        )
    ).ok()
    assert [(v["version"], v["current_stage"]) for v in posted["model_versions"]] == [
        ("2", "Staging")
    ]
    got = (
        await api.get("/registered-models/get-latest-versions?name=m&stages=None&stages=Staging")
    ).ok()
    assert [(v["version"], v["current_stage"]) for v in got["model_versions"]] == [
        ("3", "None"),
        ("2", "Staging"),
    ]
    (
        await api.post("/registered-models/get-latest-versions", {"name": "m", "stages": ["Live"]})
    ).error(400, "INVALID_PARAMETER_VALUE", "Invalid Model Version stage")
    # The web UI's prefix serves the same handlers.
    ajax = Api(api.client, AJAX)
    assert (await ajax.get("/registered-models/get", {"name": "m"})).ok()["registered_model"][
        "name"
    ] == "m"


async def test_client_mistakes_are_4xx(api: Api) -> None:
    await api.create_registered_model("m")
    await api.create_model_version("m", "s3://b/x")
    bad = [
        ("POST", "/registered-models/create", {}),
        ("POST", "/registered-models/create", {"name": 5}),
        ("POST", "/registered-models/create", {"name": "x", "tags": [{"key": "", "value": "v"}]}),
        ("POST", "/registered-models/create", {"name": "x", "tags": "nope"}),
        ("POST", "/model-versions/create", {"name": "m"}),
        ("POST", "/model-versions/create", {"name": "m", "source": "models:/a/b/c"}),
        (
            "POST",
            "/model-versions/create",
            {"name": "m", "source": "s3://b/x", "tags": [{"key": "a", "value": "v" * 100_001}]},
        ),
        ("GET", "/model-versions/get?name=m&version=one", None),
        ("GET", "/model-versions/get?name=m&version=-1", None),
        ("GET", "/model-versions/get?name=m&version=99999999999999999999", None),
        ("PATCH", "/model-versions/update", {"name": "m", "version": 1}),  # a number, not a string
        ("POST", "/model-versions/transition-stage", {"name": "m", "version": "1"}),
        (
            "POST",
            "/model-versions/transition-stage",
            {"name": "m", "version": "1", "stage": "Staging", "archive_existing_versions": "maybe"},
        ),
        ("GET", "/registered-models/search?max_results=1001", None),
        ("GET", "/registered-models/search?max_results=0", None),
        ("GET", "/registered-models/search?page_token=%25%25", None),
        ("GET", "/registered-models/search?filter=name%20%3D", None),
        ("GET", "/registered-models/search?order_by=nope%20ASC", None),
        ("GET", "/model-versions/search?filter=metrics.x%20%3E%201", None),
        ("GET", "/model-versions/search?filter=version_number%20%3D%20'a'", None),
        ("GET", "/model-versions/search?max_results=200001", None),
        ("POST", "/registered-models/alias", {"name": "m", "alias": "v7", "version": "1"}),
        ("POST", "/registered-models/alias", {"name": "m", "alias": "ok"}),
        ("GET", "/registered-models/alias?name=m&alias=none", None),
        ("DELETE", "/registered-models/delete-tag", {"name": "m"}),
        ("POST", "/registered-models/set-tag", {"name": "m", "key": "a/../b", "value": "v"}),
        ("POST", "/registered-models/rename", {"name": "m", "new_name": "a:b"}),
    ]
    for method, path, body in bad:
        reply = await api.request(method, path, body=body)
        reply.error(400, ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"))
    missing = [
        ("GET", "/registered-models/get?name=ghost", None),
        ("DELETE", "/registered-models/delete", {"name": "ghost"}),
        ("PATCH", "/registered-models/update", {"name": "ghost", "description": "d"}),
        ("GET", "/model-versions/get-download-uri?name=m&version=9", None),
        ("DELETE", "/model-versions/delete", {"name": "m", "version": "9"}),
        (
            "POST",
            "/model-versions/set-tag",
            {"name": "m", "version": "9", "key": "k", "value": "v"},
        ),
        ("DELETE", "/model-versions/delete-tag", {"name": "m", "version": "1", "key": "absent"}),
        ("POST", "/model-versions/create", {"name": "m", "source": "s3://b/x", "run_id": "0" * 32}),
    ]
    for method, path, body in missing:
        (await api.request(method, path, body=body)).error(404, "RESOURCE_DOES_NOT_EXIST")
    # Nothing above changed the model: still one version, no tags, no aliases.
    model = (await api.get("/registered-models/get", {"name": "m"})).ok()["registered_model"]
    assert [v["version"] for v in model["latest_versions"]] == ["1"]
    assert model["tags"] == [] and model["aliases"] == []
