"""Models through the real client: sklearn log_model/load_model, autolog and the logged-model APIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import yaml
from mlflow.entities import LoggedModelStatus
from mlflow.exceptions import MlflowException

# Pinning requirements skips mlflow's requirement inference (a subprocess that imports the model).
PIP_REQUIREMENTS = ["scikit-learn", "numpy"]


def _user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.")}


def _model_name(C: float) -> str:
    return f"logreg-C{C}".replace(".", "_")


def _train(iris: tuple[np.ndarray, np.ndarray], C: float = 1.0) -> Any:
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    return LogisticRegression(C=C, max_iter=500).fit(X, y)


def test_sklearn_log_model_and_load_back(
    mlflow_tracking: str,
    experiment: Any,
    mlclient: Any,
    iris: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    X, y = iris
    model = _train(iris, C=0.5)
    with mlflow.start_run() as run:
        mlflow.log_params({"C": 0.5, "max_iter": 500})
        mlflow.log_metric("train_acc", float(model.score(X, y)))
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=PIP_REQUIREMENTS)
    run_id = run.info.run_id
    model_id = info.model_id
    assert model_id
    assert info.model_uri == f"models:/{model_id}"
    assert info.run_id == run_id

    # The logged model is READY, linked to the run, with the run's params copied over.
    logged = mlclient.get_logged_model(model_id)
    assert logged.model_id == model_id
    assert logged.name == "model"
    assert logged.status == LoggedModelStatus.READY
    assert logged.source_run_id == run_id
    assert logged.experiment_id == experiment.experiment_id
    assert logged.params == {"C": "0.5", "max_iter": "500"}
    assert logged.artifact_location.rstrip("/").endswith(f"models/{model_id}/artifacts")
    assert (
        logged.creation_timestamp > 0 and logged.last_updated_timestamp >= logged.creation_timestamp
    )

    # The run records the model as an output.
    outputs = mlclient.get_run(run_id).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(model_id, 0)]

    # The model's files are on the server.
    files = {f.path for f in mlclient.list_logged_model_artifacts(model_id)}
    assert {"MLmodel", "requirements.txt", "python_env.yaml", "conda.yaml"} <= files
    location = logged.artifact_location.rstrip("/")
    mlmodel_path = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{location}/MLmodel", dst_path=str(tmp_path)
    )
    mlmodel = yaml.safe_load(Path(mlmodel_path).read_text())
    assert mlmodel["model_id"] == model_id
    assert mlmodel["run_id"] == run_id
    assert "sklearn" in mlmodel["flavors"]
    requirements = mlflow.artifacts.download_artifacts(
        artifact_uri=f"{location}/requirements.txt", dst_path=str(tmp_path)
    )
    assert Path(requirements).read_text().split() == [
        "mlflow==" + mlflow.__version__,
        *PIP_REQUIREMENTS,
    ]
    # The whole model directory downloads through models:/<id>.
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{model_id}", dst_path=str(tmp_path / "m")
        )
    )
    assert (model_dir / "MLmodel").read_text() == Path(mlmodel_path).read_text()

    expected = model.predict(X)
    by_run = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    np.testing.assert_array_equal(by_run.predict(X), expected)
    by_id = mlflow.pyfunc.load_model(f"models:/{model_id}")
    np.testing.assert_array_equal(by_id.predict(X), expected)
    assert by_id.metadata.model_id == model_id
    native = mlflow.sklearn.load_model(f"models:/{model_id}")
    np.testing.assert_allclose(native.predict_proba(X), model.predict_proba(X))


def test_logged_model_metrics_search_and_step0_copy(
    mlflow_tracking: str, experiment: Any, mlclient: Any, iris: tuple[np.ndarray, np.ndarray]
) -> None:
    X, y = iris
    infos = {}
    with mlflow.start_run() as run:
        mlflow.log_metric("train_loss", 0.5)  # step 0, before any model exists
        for C in (0.1, 10.0):
            model = _train(iris, C=C)
            # Logged model names may not contain / : . % " ' (mlflow.utils.validation).
            info = mlflow.sklearn.log_model(
                model, name=_model_name(C), pip_requirements=PIP_REQUIREMENTS
            )
            mlflow.log_metric("val_acc", float(model.score(X, y)), model_id=info.model_id, step=1)
            infos[C] = (info, float(model.score(X, y)))

    run_id = run.info.run_id
    for C, (info, acc) in infos.items():
        logged = mlclient.get_logged_model(info.model_id)
        assert logged.name == _model_name(C)
        val = [m for m in logged.metrics if m.key == "val_acc"]
        assert [(m.value, m.step, m.run_id) for m in val] == [(pytest.approx(acc), 1, run_id)]

    outputs = {o.model_id for o in mlclient.get_run(run_id).outputs.model_outputs}
    assert outputs == {i.model_id for i, _ in infos.values()}

    found = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "name", "ascending": True}],
        output_format="list",
    )
    assert [m.name for m in found] == ["logreg-C0_1", "logreg-C10_0"]
    by_name = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string="name = 'logreg-C10_0'",
        output_format="list",
    )
    assert [m.model_id for m in by_name] == [infos[10.0][0].model_id]
    # Logged models filter and sort on their metrics.
    best_first = mlflow.search_logged_models(
        experiment_ids=[experiment.experiment_id],
        filter_string="metrics.val_acc > 0",
        order_by=[{"field_name": "metrics.val_acc", "ascending": False}],
        output_format="list",
    )
    by_acc = sorted(infos.values(), key=lambda ia: -ia[1])
    assert [m.model_id for m in best_first] == [i.model_id for i, _ in by_acc]
    assert (
        mlflow.search_logged_models(
            experiment_ids=[experiment.experiment_id],
            filter_string="metrics.val_acc > 2",
            output_format="list",
        )
        == []
    )

    # log_model copies the run's step-0 metrics (logged without a model) onto each new model, as
    # mlflow.models.Model.log -> log_model_metrics_for_step does: it re-sends the same point with
    # model_id set through runs/log-batch.
    for C, (info, acc) in infos.items():
        logged = mlclient.get_logged_model(info.model_id)
        got = {m.key: (m.value, m.step, m.run_id) for m in logged.metrics}
        assert got == {
            "val_acc": (pytest.approx(acc), 1, run_id),
            "train_loss": (0.5, 0, run_id),
        }, C
    # The run's own history is not duplicated by that copy.
    assert [(m.value, m.step) for m in mlclient.get_metric_history(run_id, "train_loss")] == [
        (0.5, 0)
    ]


def test_sklearn_autolog_records_params_metrics_and_model(
    mlflow_tracking: str,
    experiment: Any,
    mlclient: Any,
    iris: tuple[np.ndarray, np.ndarray],
    sklearn_autolog_off: None,
) -> None:
    from sklearn.linear_model import LogisticRegression

    X, y = iris
    mlflow.sklearn.autolog(log_input_examples=False, log_model_signatures=True, silent=True)
    with mlflow.start_run() as run:
        model = LogisticRegression(C=0.25, max_iter=300).fit(X, y)
    run_id = run.info.run_id

    fetched = mlclient.get_run(run_id)
    assert fetched.info.status == "FINISHED"
    params = fetched.data.params
    assert params["C"] == "0.25"
    assert params["max_iter"] == "300"
    metrics = fetched.data.metrics
    assert metrics["training_accuracy_score"] == pytest.approx(model.score(X, y))
    for key in (
        "training_f1_score",
        "training_precision_score",
        "training_recall_score",
        "training_log_loss",
    ):
        assert key in metrics, sorted(metrics)
    assert fetched.data.tags["estimator_name"] == "LogisticRegression"
    assert (
        fetched.data.tags["estimator_class"] == "sklearn.linear_model._logistic.LogisticRegression"
    )
    # Autolog also logs the training set as a dataset input.
    assert len(fetched.inputs.dataset_inputs) >= 1
    assert {t.key: t.value for t in fetched.inputs.dataset_inputs[0].tags}.get(
        "mlflow.data.context"
    ) == "train"

    outputs = fetched.outputs.model_outputs
    assert len(outputs) == 1
    model_id = outputs[0].model_id
    logged = mlclient.get_logged_model(model_id)
    assert logged.status == LoggedModelStatus.READY
    assert logged.source_run_id == run_id
    assert logged.params["C"] == "0.25"
    model_metrics = {m.key: m.value for m in logged.metrics}
    assert model_metrics["training_accuracy_score"] == pytest.approx(model.score(X, y))

    loaded = mlflow.pyfunc.load_model(f"models:/{model_id}")
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.metadata.signature is not None


def test_pyfunc_python_model_round_trip(
    mlflow_tracking: str, experiment: Any, mlclient: Any
) -> None:
    import pandas as pd

    class AddN(mlflow.pyfunc.PythonModel):
        def __init__(self, n: int) -> None:
            self.n = n

        def predict(
            self, context: Any, model_input: pd.DataFrame, params: Any = None
        ) -> pd.DataFrame:
            return model_input + self.n

    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(
            name="add-n", python_model=AddN(5), pip_requirements=["pandas"]
        )
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    frame = pd.DataFrame({"a": [1, 2, 3]})
    pd.testing.assert_frame_equal(loaded.predict(frame), frame + 5)
    assert mlclient.get_logged_model(info.model_id).status == LoggedModelStatus.READY


def test_logged_model_lifecycle_api(mlflow_tracking: str, experiment: Any, mlclient: Any) -> None:
    exp_id = experiment.experiment_id
    pending = mlflow.initialize_logged_model(
        name="agent-v1",
        tags={"owner": "alice", "tier": "gold"},
        params={"temperature": "0.2"},
        model_type="agent",
    )
    assert pending.model_id
    assert pending.experiment_id == exp_id
    assert pending.status == LoggedModelStatus.PENDING
    assert pending.name == "agent-v1"
    assert pending.model_type == "agent"
    # The client adds its context tags (mlflow.user, mlflow.source.*) next to the user's.
    assert _user_tags(pending.tags) == {"owner": "alice", "tier": "gold"}
    assert pending.tags.get("mlflow.source.type") == "LOCAL"
    assert pending.params == {"temperature": "0.2"}

    got = mlflow.get_logged_model(pending.model_id)
    assert (got.model_id, got.name, got.status, got.model_type) == (
        pending.model_id,
        "agent-v1",
        LoggedModelStatus.PENDING,
        "agent",
    )
    assert got.tags == pending.tags and got.params == pending.params

    mlflow.set_logged_model_tags(pending.model_id, {"tier": "silver", "reviewed": "yes"})
    assert _user_tags(mlclient.get_logged_model(pending.model_id).tags) == {
        "owner": "alice",
        "tier": "silver",
        "reviewed": "yes",
    }
    mlflow.delete_logged_model_tag(pending.model_id, "owner")
    assert _user_tags(mlclient.get_logged_model(pending.model_id).tags) == {
        "tier": "silver",
        "reviewed": "yes",
    }

    mlflow.log_model_params({"top_p": "0.9"}, model_id=pending.model_id)
    assert mlclient.get_logged_model(pending.model_id).params == {
        "temperature": "0.2",
        "top_p": "0.9",
    }

    ready = mlflow.finalize_logged_model(pending.model_id, LoggedModelStatus.READY)
    assert ready.status == LoggedModelStatus.READY
    assert mlclient.get_logged_model(pending.model_id).status == LoggedModelStatus.READY

    # The client API, with a source run.
    run = mlclient.create_run(exp_id)
    other = mlclient.create_logged_model(
        exp_id,
        name="agent-v2",
        source_run_id=run.info.run_id,
        tags={"tier": "gold"},
        params={"temperature": "0.7"},
    )
    assert other.source_run_id == run.info.run_id
    failed = mlclient.finalize_logged_model(other.model_id, LoggedModelStatus.FAILED)
    assert failed.status == LoggedModelStatus.FAILED
    third = mlclient.create_logged_model(exp_id, name="agent-v3")
    assert third.status == LoggedModelStatus.PENDING
    assert _user_tags(third.tags) == {} and third.params == {}

    def names(**kwargs: Any) -> list[str]:
        return [m.name for m in mlclient.search_logged_models(experiment_ids=[exp_id], **kwargs)]

    assert names(order_by=[{"field_name": "name", "ascending": True}]) == [
        "agent-v1",
        "agent-v2",
        "agent-v3",
    ]
    assert names(order_by=[{"field_name": "name", "ascending": False}]) == [
        "agent-v3",
        "agent-v2",
        "agent-v1",
    ]
    assert names(filter_string="tags.tier = 'gold'") == ["agent-v2"]
    assert names(filter_string="params.temperature = '0.2'") == ["agent-v1"]
    assert names(
        filter_string="name LIKE 'agent-v%'", order_by=[{"field_name": "name", "ascending": True}]
    ) == [
        "agent-v1",
        "agent-v2",
        "agent-v3",
    ]
    assert names(filter_string=f"source_run_id = '{run.info.run_id}'") == ["agent-v2"]
    assert names(filter_string="name = 'no-such-model'") == []

    # Paging with max_results + page_token.
    page1 = mlclient.search_logged_models(
        experiment_ids=[exp_id], max_results=2, order_by=[{"field_name": "name", "ascending": True}]
    )
    assert [m.name for m in page1] == ["agent-v1", "agent-v2"]
    assert page1.token
    page2 = mlclient.search_logged_models(
        experiment_ids=[exp_id],
        max_results=2,
        order_by=[{"field_name": "name", "ascending": True}],
        page_token=page1.token,
    )
    assert [m.name for m in page2] == ["agent-v3"]
    assert not page2.token

    # pandas output.
    df = mlflow.search_logged_models(
        experiment_ids=[exp_id], order_by=[{"field_name": "name", "ascending": True}]
    )
    assert list(df["name"]) == ["agent-v1", "agent-v2", "agent-v3"]

    mlclient.delete_logged_model(third.model_id)
    with pytest.raises(MlflowException) as excinfo:
        mlclient.get_logged_model(third.model_id)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert names(order_by=[{"field_name": "name", "ascending": True}]) == ["agent-v1", "agent-v2"]

    with pytest.raises(MlflowException) as excinfo:
        mlclient.get_logged_model("m-" + "0" * 32)
    assert excinfo.value.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_set_active_model_links_metrics(
    mlflow_tracking: str, experiment: Any, mlclient: Any
) -> None:
    active = mlflow.set_active_model(name="active-agent")
    try:
        assert mlflow.get_active_model_id() == active.model_id
        with mlflow.start_run() as run:
            mlflow.log_metric("quality", 0.75)
        hist = mlclient.get_metric_history(run.info.run_id, "quality")
        assert [(m.value, m.model_id) for m in hist] == [(0.75, active.model_id)]
        logged = mlclient.get_logged_model(active.model_id)
        assert {m.key: m.value for m in logged.metrics} == {"quality": 0.75}
        # set_active_model by name reuses the existing model.
        again = mlflow.set_active_model(name="active-agent")
        assert again.model_id == active.model_id
    finally:
        mlflow.clear_active_model()
