"""Model registry through the real mlflow client: register, promote, alias, load, search, errors.

One sklearn model is trained and logged per test that needs files; the rest registers plain
storage URIs, which the registry accepts without reading them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import mlflow
import numpy as np
import pytest
from mlflow.exceptions import MlflowException
from tests.e2e.test_models import PIP_REQUIREMENTS, _train

# Stages are deprecated in the client (FutureWarning) but are what this registry serves.
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


def _log_model(iris: tuple[np.ndarray, np.ndarray]) -> tuple[Any, Any]:
    """(the sklearn model, its ModelInfo) logged in a fresh run."""
    model = _train(iris, C=0.7)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=PIP_REQUIREMENTS)
    return model, info


def _error_code(excinfo: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(excinfo.value.error_code)


def test_register_promote_alias_and_load(
    mlflow_tracking: str,
    experiment: Any,
    mlclient: Any,
    rest: Any,
    iris: tuple[np.ndarray, np.ndarray],
) -> None:
    X, _ = iris
    model, info = _log_model(iris)
    expected = model.predict(X)
    name = "iris-classifier"

    # From runs:/ (3.x clients resolve it to the run's logged model) and from models:/<id>.
    v1 = mlflow.register_model(f"runs:/{info.run_id}/model", name)
    v2 = mlflow.register_model(info.model_uri, name)
    v3 = mlflow.register_model(info.model_uri, name, tags={"candidate": "yes"})
    assert [v.version for v in (v1, v2, v3)] == ["1", "2", "3"]
    assert all(v.status == "READY" and v.current_stage == "None" for v in (v1, v2, v3))
    assert v2.source == info.model_uri and v2.run_id == info.run_id
    # The 3.17 client drops model_id when it parses a version; the wire carries it.
    raw = rest.get("model-versions/get", {"name": name, "version": "2"}).json()["model_version"]
    assert raw["model_id"] == info.model_id and raw["version"] == "2" and raw["status"] == "READY"
    assert mlclient.get_model_version(name, "3").tags == {"candidate": "yes"}
    # register_model links the logged model back to its registrations.
    assert name in mlclient.get_logged_model(info.model_id).tags["mlflow.modelVersions"]

    # Stages: case-insensitive input, canonical storage; archive_existing_versions.
    mlclient.transition_model_version_stage(name, "1", "staging")
    mlclient.transition_model_version_stage(name, "2", "Production")
    promoted = mlclient.transition_model_version_stage(
        name, "3", "production", archive_existing_versions=True
    )
    assert promoted.current_stage == "Production"
    assert mlclient.get_model_version(name, "2").current_stage == "Archived"
    assert mlclient.get_model_version(name, "1").current_stage == "Staging"
    latest = {v.current_stage: v.version for v in mlclient.get_latest_versions(name)}
    assert latest == {"Staging": "1", "Production": "3", "Archived": "2"}
    assert [v.version for v in mlclient.get_latest_versions(name, stages=["Production"])] == ["3"]
    assert {v.version for v in mlclient.get_registered_model(name).latest_versions} == {
        "1",
        "2",
        "3",
    }

    # Aliases: set, move, read back, delete.
    mlclient.set_registered_model_alias(name, "champion", "2")
    mlclient.set_registered_model_alias(name, "champion", "3")
    assert mlclient.get_model_version_by_alias(name, "champion").version == "3"
    assert mlclient.get_registered_model(name).aliases == {"champion": "3"}
    assert mlclient.get_model_version(name, "3").aliases == ["champion"]
    mlclient.set_registered_model_alias(name, "challenger", "1")
    mlclient.delete_registered_model_alias(name, "challenger")
    with pytest.raises(MlflowException) as excinfo:
        mlclient.get_model_version_by_alias(name, "challenger")
    assert _error_code(excinfo) == "INVALID_PARAMETER_VALUE"

    # The download URI is the logged model's files.
    logged = mlclient.get_logged_model(info.model_id)
    assert mlclient.get_model_version_download_uri(name, "3") == logged.artifact_location

    for uri in (
        f"models:/{name}/Production",
        f"models:/{name}@champion",
        f"models:/{name}/latest",
        f"models:/{name}/3",
    ):
        loaded = mlflow.pyfunc.load_model(uri)
        np.testing.assert_array_equal(loaded.predict(X), expected, err_msg=uri)
    np.testing.assert_array_equal(
        mlflow.pyfunc.load_model(f"models:/{name}/Staging").predict(X), expected
    )

    # Deleting a version drops its aliases; the numbering does not reuse it.
    mlclient.delete_model_version(name, "3")
    assert mlclient.get_registered_model(name).aliases == {}
    with pytest.raises(MlflowException) as excinfo:
        mlclient.get_model_version_by_alias(name, "champion")
    assert _error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    assert mlflow.register_model(info.model_uri, name).version == "4"


@pytest.mark.fresh_server  # lists every registered model
def test_registered_model_crud_search_and_paging(mlflow_tracking: str, mlclient: Any) -> None:
    created = mlclient.create_registered_model(
        "alpha", tags={"team": "vision"}, description="first"
    )
    assert (created.name, created.description, created.tags) == (
        "alpha",
        "first",
        {"team": "vision"},
    )
    for name in ("beta", "gamma", "delta", "epsilon"):
        mlclient.create_registered_model(
            name, tags={"team": "nlp" if name in ("beta", "gamma") else "vision"}
        )

    assert mlclient.update_registered_model("alpha", description="second").description == "second"
    mlclient.set_registered_model_tag("alpha", "owner", "ana")
    mlclient.delete_registered_model_tag("alpha", "team")
    got = mlclient.get_registered_model("alpha")
    assert (got.description, got.tags) == ("second", {"owner": "ana"})
    assert got.creation_timestamp <= got.last_updated_timestamp
    mlclient.rename_registered_model("alpha", "zeta")
    assert mlclient.get_registered_model("zeta").tags == {"owner": "ana"}
    with pytest.raises(MlflowException) as excinfo:
        mlclient.get_registered_model("alpha")
    assert _error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"

    names = lambda models: [m.name for m in models]  # noqa: E731
    assert names(mlclient.search_registered_models()) == [
        "beta",
        "delta",
        "epsilon",
        "gamma",
        "zeta",
    ]
    assert names(mlclient.search_registered_models(filter_string="tags.team = 'nlp'")) == [
        "beta",
        "gamma",
    ]
    assert names(mlclient.search_registered_models(filter_string="name LIKE '%ta'")) == [
        "beta",
        "delta",
        "zeta",
    ]
    assert names(mlclient.search_registered_models(order_by=["name DESC"])) == [
        "zeta",
        "gamma",
        "epsilon",
        "delta",
        "beta",
    ]
    by_time = mlclient.search_registered_models(order_by=["last_updated_timestamp DESC"])
    assert by_time[0].name == "zeta"  # renamed last
    page1 = mlclient.search_registered_models(max_results=2)
    page2 = mlclient.search_registered_models(max_results=2, page_token=page1.token)
    page3 = mlclient.search_registered_models(max_results=2, page_token=page2.token)
    assert names(page1) + names(page2) + names(page3) == [
        "beta",
        "delta",
        "epsilon",
        "gamma",
        "zeta",
    ]
    assert not page3.token

    # Model versions: update, tags, search by name / run / version / tag, order, delete.
    for i in range(3):
        mlclient.create_model_version(
            "beta", f"s3://bucket/beta/{i}", tags={"i": str(i)}, description=f"v{i}"
        )
    mlclient.create_model_version("gamma", "s3://bucket/gamma/0")
    assert mlclient.update_model_version("beta", "2", description="better").description == "better"
    mlclient.set_model_version_tag("beta", "2", "validated", "true")
    mlclient.delete_model_version_tag("beta", "2", "i")
    assert mlclient.get_model_version("beta", "2").tags == {"validated": "true"}
    versions = lambda found: [(v.name, v.version) for v in found]  # noqa: E731
    assert versions(mlclient.search_model_versions("name = 'beta'")) == [
        ("beta", "3"),
        ("beta", "2"),
        ("beta", "1"),
    ]
    assert versions(
        mlclient.search_model_versions(
            "name = 'beta' AND version_number >= 2", order_by=["version_number ASC"]
        )
    ) == [
        ("beta", "2"),
        ("beta", "3"),
    ]
    assert versions(mlclient.search_model_versions("tags.validated = 'true'")) == [("beta", "2")]
    assert versions(mlclient.search_model_versions("source_path LIKE 's3://bucket/gamma/%'")) == [
        ("gamma", "1")
    ]
    assert versions(
        mlflow.search_model_versions(filter_string="name LIKE '%a'", max_results=10)
    ) == [
        ("beta", "3"),
        ("beta", "2"),
        ("beta", "1"),
        ("gamma", "1"),
    ]
    vpage = mlclient.search_model_versions("name = 'beta'", max_results=2)
    assert len(vpage) == 2 and vpage.token
    assert versions(
        mlclient.search_model_versions("name = 'beta'", max_results=2, page_token=vpage.token)
    ) == [("beta", "1")]

    mlclient.delete_model_version("beta", "1")
    assert versions(mlclient.search_model_versions("name = 'beta'")) == [
        ("beta", "3"),
        ("beta", "2"),
    ]
    mlclient.delete_registered_model("beta")
    assert mlclient.search_model_versions("name = 'beta'") == []
    assert "beta" not in names(mlclient.search_registered_models())


def test_concurrent_registration_numbers_versions_without_gaps(mlflow_tracking: str) -> None:
    from mlflow import MlflowClient

    MlflowClient().create_registered_model("busy")
    barrier = threading.Barrier(20)
    results: list[str] = []
    errors: list[BaseException] = []

    def register(i: int) -> None:
        try:
            client = MlflowClient()  # one per thread, as separate processes would
            barrier.wait(timeout=30)
            results.append(client.create_model_version("busy", f"s3://bucket/busy/{i}").version)
        except BaseException as exc:  # collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(int(v) for v in results) == list(range(1, 21))
    found = MlflowClient().search_model_versions("name = 'busy'")
    assert sorted(int(v.version) for v in found) == list(range(1, 21))
    # Each source got exactly one number.
    assert len({v.source for v in found}) == 20


def test_registry_errors(
    mlflow_tracking: str, mlclient: Any, unique_name: Callable[[str], str]
) -> None:
    mlclient.create_registered_model("m")
    mlclient.create_model_version("m", "s3://bucket/m/1")

    cases: list[tuple[Callable[[], Any], str]] = [
        (lambda: mlclient.create_registered_model("m"), "RESOURCE_ALREADY_EXISTS"),
        (lambda: mlclient.get_registered_model("missing"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: mlclient.get_model_version("m", "7"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: mlclient.get_model_version("missing", "1"), "RESOURCE_DOES_NOT_EXIST"),
        (
            lambda: mlclient.create_model_version("missing", "s3://bucket/x"),
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            lambda: mlclient.transition_model_version_stage("m", "1", "Prod"),
            "INVALID_PARAMETER_VALUE",
        ),
        (
            lambda: mlclient.transition_model_version_stage(
                "m", "1", "Archived", archive_existing_versions=True
            ),
            "INVALID_PARAMETER_VALUE",
        ),
        (
            lambda: mlclient.transition_model_version_stage("m", "9", "Staging"),
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            lambda: mlclient.set_registered_model_alias("m", "latest", "1"),
            "INVALID_PARAMETER_VALUE",
        ),
        (lambda: mlclient.set_registered_model_alias("m", "v2", "1"), "INVALID_PARAMETER_VALUE"),
        (
            lambda: mlclient.set_registered_model_alias("m", "bad alias!", "1"),
            "INVALID_PARAMETER_VALUE",
        ),
        (
            lambda: mlclient.set_registered_model_alias("m", "champion", "5"),
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (lambda: mlclient.get_model_version_by_alias("m", "nobody"), "INVALID_PARAMETER_VALUE"),
        (lambda: mlclient.rename_registered_model("missing", "x"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: mlclient.delete_registered_model_tag("m", "absent"), "RESOURCE_DOES_NOT_EXIST"),
        (
            lambda: mlclient.search_registered_models(filter_string="metrics.x > 1"),
            "INVALID_PARAMETER_VALUE",
        ),
        (
            lambda: mlclient.search_model_versions("name = 'm' OR name = 'n'"),
            "INVALID_PARAMETER_VALUE",
        ),
        (
            lambda: mlclient.create_model_version(
                "m", "runs:/0123456789abcdef0123456789abcdef/model"
            ),
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (
            lambda: mlclient.create_model_version("m", "models:/m-0123456789abcdef"),
            "RESOURCE_DOES_NOT_EXIST",
        ),
    ]
    for call, code in cases:
        with pytest.raises(MlflowException) as excinfo:
            call()
        assert _error_code(excinfo) == code, (excinfo.value, code)
    mlclient.create_registered_model("other")
    with pytest.raises(MlflowException) as excinfo:
        mlclient.rename_registered_model("m", "other")
    assert _error_code(excinfo) == "RESOURCE_ALREADY_EXISTS"
    # None of the failures left a trace: still one version, numbered 1.
    assert [v.version for v in mlclient.search_model_versions("name = 'm'")] == ["1"]
