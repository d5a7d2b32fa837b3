"""What the browser tests look at: one experiment written through the unmodified mlflow client.

``populate(tracking_uri)`` logs the same data to any MLflow-compatible server, so the browser tests
(against metricgate) and the survey (``tests/browser/survey.py``, metricgate side by side with stock
MLflow) see the same pages. Everything is deterministic except ids and timestamps, so tests can
assert exact values (the sorted order, the filtered set, the artifact text).
"""

from __future__ import annotations

import io
import math
import os
import time
import uuid
import warnings
from dataclasses import dataclass, field

EXPERIMENT = "ui-sweep"
LIVE_EXPERIMENT = "ui-live"
MODEL_NAME = "ui-iris-classifier"
STEPS = 60  # the charts need a series, not a point
# (run name, learning rate): the sweep's children. Their final accuracy grows with the rate, so
# the order after sorting by accuracy is known without reading it back.
TRIALS = (
    ("trial-lr-0.01", 0.01),
    ("trial-lr-0.03", 0.03),
    ("trial-lr-0.1", 0.1),
    ("trial-lr-0.3", 0.3),
)
PARENT = "sweep-parent"
BASELINE = "baseline"
BASELINE_LR = 0.02
TEXT_ARTIFACT = "notes/summary.txt"
TEXT_CONTENT = "metricgate browser test: the best trial reached the target accuracy.\n"
IMAGE_ARTIFACT = "plots/loss_curve.png"
ALIAS = "champion"
STAGE = "Staging"
# Pinned requirements skip mlflow's requirement inference (a subprocess that imports the model).
PIP_REQUIREMENTS = ["scikit-learn", "numpy"]
FEATURES = ("sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)")


def final_accuracy(lr: float) -> float:
    return round(0.6 + 0.3 * math.tanh(lr * 10), 4)


def curve(lr: float, step: int) -> tuple[float, float]:
    """(loss, accuracy) of a trial at ``step``; accuracy reaches ``final_accuracy(lr)`` at the end."""
    progress = (step + 1) / STEPS
    loss = round(1.0 / (1.0 + lr * 40 * progress) + 0.02 * math.sin(step), 5)
    accuracy = round(final_accuracy(lr) * (1 - math.exp(-5 * progress)) / (1 - math.exp(-5)), 5)
    return loss, accuracy


@dataclass
class Populated:
    """Ids of what ``populate`` logged, for building page URLs and expectations."""

    base_url: str
    experiment_id: str
    parent_run_id: str
    baseline_run_id: str
    trial_run_ids: dict[str, str] = field(default_factory=dict)  # run name -> id
    best_run_id: str = ""  # the trial with the artifacts and the registered model (highest rate)
    model_ids: list[str] = field(default_factory=list)  # logged models, oldest first
    model_name: str = MODEL_NAME
    versions: list[str] = field(default_factory=list)  # registered versions, oldest first
    staged_version: str = ""  # has STAGE and ALIAS

    @property
    def run_ids(self) -> list[str]:
        return [self.parent_run_id, *self.trial_run_ids.values(), self.baseline_run_id]

    def run_names_by_accuracy(self, descending: bool = True) -> list[str]:
        """Names of the runs that log ``accuracy``, ordered by their last value."""
        ranked = [(final_accuracy(lr), name) for name, lr in TRIALS] + [
            (final_accuracy(BASELINE_LR), BASELINE)
        ]
        return [name for _, name in sorted(ranked, reverse=descending)]


def _png_bytes() -> bytes:
    """A small line chart as PNG (matplotlib comes with mlflow)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3), dpi=80)
    lr = TRIALS[-1][1]
    ax.plot(range(STEPS), [curve(lr, s)[0] for s in range(STEPS)], color="tab:blue")
    ax.set_title("loss")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _log_curves(client: object, run_id: str, lr: float) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = []
    for step in range(STEPS):
        loss, accuracy = curve(lr, step)
        metrics += [
            Metric("loss", loss, now + step, step),
            Metric("accuracy", accuracy, now + step, step),
        ]
    client.log_batch(run_id, metrics=metrics)  # type: ignore[attr-defined]


def populate(tracking_uri: str, workdir: str) -> Populated:
    """Log the sweep, artifacts, logged models and registered versions; return their ids.

    Uses ``MlflowClient`` and the fluent API the way a user script does; the caller has pointed
    ``MLFLOW_TRACKING_URI`` at the server (``log_model`` resolves the active run through it).
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    client = MlflowClient(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    experiment_id = client.create_experiment(EXPERIMENT, tags={"team": "ui-tests"})
    mlflow.set_experiment(experiment_id=experiment_id)

    iris = load_iris(as_frame=True)
    X = iris.data
    y = iris.target
    populated = Populated(tracking_uri, experiment_id, parent_run_id="", baseline_run_id="")

    with mlflow.start_run(run_name=BASELINE) as run:
        mlflow.log_params({"lr": BASELINE_LR, "model": "logreg"})
        _log_curves(client, run.info.run_id, BASELINE_LR)
        populated.baseline_run_id = run.info.run_id

    with mlflow.start_run(run_name=PARENT) as parent:
        populated.parent_run_id = parent.info.run_id
        mlflow.log_params({"sweep": "grid", "trials": len(TRIALS)})
        for name, lr in TRIALS:
            with mlflow.start_run(run_name=name, nested=True) as child:
                run_id = child.info.run_id
                populated.trial_run_ids[name] = run_id
                mlflow.log_params({"lr": lr, "model": "logreg"})
                _log_curves(client, run_id, lr)
                if lr < 0.1:
                    continue
                # The two best trials log a model (with a signature and an input example, so the
                # model version page has a schema to show) and get registered.
                model = LogisticRegression(C=lr * 10, max_iter=300).fit(X, y)
                signature = infer_signature(X, model.predict(X))
                info = mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=signature,
                    input_example=X.head(3),
                    pip_requirements=PIP_REQUIREMENTS,
                )
                populated.model_ids.append(info.model_id)
                populated.best_run_id = run_id
        mlflow.log_metric("best_accuracy", final_accuracy(TRIALS[-1][1]))

    best = populated.best_run_id
    path = os.path.join(workdir, uuid.uuid4().hex)
    os.makedirs(os.path.join(path, "notes"))
    os.makedirs(os.path.join(path, "plots"))
    with open(os.path.join(path, TEXT_ARTIFACT), "w") as fh:
        fh.write(TEXT_CONTENT)
    with open(os.path.join(path, IMAGE_ARTIFACT), "wb") as fh:
        fh.write(_png_bytes())
    client.log_artifacts(best, path)

    client.create_registered_model(MODEL_NAME, description="Iris classifier from the UI sweep")
    for model_id in populated.model_ids:
        version = mlflow.register_model(f"models:/{model_id}", MODEL_NAME)
        populated.versions.append(str(version.version))
    populated.staged_version = populated.versions[-1]
    with warnings.catch_warnings():  # stages are deprecated, yet the version page still shows them
        warnings.simplefilter("ignore", FutureWarning)
        client.transition_model_version_stage(MODEL_NAME, populated.staged_version, STAGE)
    client.set_registered_model_alias(MODEL_NAME, ALIAS, populated.staged_version)
    return populated
