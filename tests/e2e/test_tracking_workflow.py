"""A user's tracking script, run with the real mlflow client against a live server.

Covers the fluent API (set_experiment, start_run, log_param(s)/metric(s)/set_tag(s)), run status at
the end of a ``with`` block, metric history, non-finite values, artifacts up and down, dataset
inputs, nested runs, and run lifecycle changes through ``MlflowClient``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import RunStatus, ViewType
from mlflow.exceptions import MlflowException

# mlflow's SQL store clamps +/-inf to the largest double; a server may also keep true infinities.
_FLOAT_MAX = 1.7976931348623157e308


def _is_pos_inf(value: float) -> bool:
    return value == math.inf or value == _FLOAT_MAX


def _is_neg_inf(value: float) -> bool:
    return value == -math.inf or value == -_FLOAT_MAX


def test_fluent_run_logs_params_metrics_tags_and_finishes(
    mlflow_tracking: str, experiment: Any, mlclient: Any
) -> None:
    with mlflow.start_run(
        run_name="first-run", description="baseline **run**", tags={"origin": "ci"}
    ) as run:
        mlflow.log_param("lr", 0.01)
        # Keys may hold slashes, spaces, dots, dashes and colons.
        mlflow.log_metric("val/loss", 0.5)
        mlflow.log_param("optimizer.beta-1 x:y", "0.9")
        mlflow.log_params({"epochs": 3, "optimizer": "adam", "layers": [64, 32]})
        # Re-logging a param with the same value is accepted (idempotent).
        mlflow.log_param("lr", 0.01)
        mlflow.log_params({"lr": 0.01, "epochs": 3})
        mlflow.log_metric("loss", 1.5, step=0)
        mlflow.log_metric("loss", 0.75, step=1)
        mlflow.log_metric("loss", 0.25, step=2)
        mlflow.log_metrics({"acc": 0.875, "f1": 0.8125}, step=2)
        mlflow.set_tag("team", "ml-platform")
        mlflow.set_tags({"stage": "dev", "owner": "alice", "note": "naïve ✓ 模型"})
        mlflow.log_param("dataset path", "s3://bucket/ü/データ.csv")
        active = mlflow.active_run()
        assert active is not None and active.info.run_id == run.info.run_id
        assert active.info.status == "RUNNING"
    assert mlflow.active_run() is None

    fetched = mlclient.get_run(run.info.run_id)
    info = fetched.info
    assert info.run_id == run.info.run_id
    assert info.experiment_id == experiment.experiment_id
    assert info.run_name == "first-run"
    assert info.status == "FINISHED"
    assert info.lifecycle_stage == "active"
    assert info.start_time > 0
    assert info.end_time is not None and info.end_time >= info.start_time
    assert info.artifact_uri.rstrip("/").endswith(f"{run.info.run_id}/artifacts")

    data = fetched.data
    assert data.params == {
        "lr": "0.01",
        "epochs": "3",
        "optimizer": "adam",
        "layers": "[64, 32]",
        "dataset path": "s3://bucket/ü/データ.csv",
        "optimizer.beta-1 x:y": "0.9",
    }
    # run.data.metrics is the latest value per key (highest step).
    assert data.metrics == {"loss": 0.25, "acc": 0.875, "f1": 0.8125, "val/loss": 0.5}
    assert data.tags["team"] == "ml-platform"
    assert data.tags["stage"] == "dev"
    assert data.tags["owner"] == "alice"
    assert data.tags["note"] == "naïve ✓ 模型"
    assert data.tags["mlflow.runName"] == "first-run"
    assert data.tags["origin"] == "ci"
    assert data.tags["mlflow.note.content"] == "baseline **run**"
    # The fluent API adds the user and source tags on create.
    assert "mlflow.user" in data.tags
    assert data.tags.get("mlflow.source.type") == "LOCAL"

    # Keys with special characters are searchable with backticks.
    found = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string="metrics.`val/loss` < 1 and params.`optimizer.beta-1 x:y` = '0.9'",
        output_format="list",
    )
    assert [r.info.run_id for r in found] == [run.info.run_id]
    assert mlflow.last_active_run().info.run_id == run.info.run_id

    # The experiment the run lives in is the one set by name.
    assert mlclient.get_experiment(info.experiment_id).name == experiment.name


def test_default_experiment_and_run_statuses(
    mlflow_tracking: str, mlclient: Any, unique_name: Any
) -> None:
    # No experiment set yet: the client uses experiment "0" without asking the server first.
    with mlflow.start_run() as default_run:
        mlflow.log_param("where", "default")
    fetched = mlclient.get_run(default_run.info.run_id)
    assert fetched.info.experiment_id == "0"
    assert fetched.data.params == {"where": "default"}
    default = mlclient.get_experiment("0")
    assert default.name == "Default"
    assert default.lifecycle_stage == "active"

    mlflow.set_experiment(unique_name("statuses"))
    with pytest.raises(RuntimeError, match="training diverged"):
        with mlflow.start_run() as run:
            mlflow.log_metric("loss", 3.0)
            raise RuntimeError("training diverged")
    fetched = mlclient.get_run(run.info.run_id)
    assert fetched.info.status == "FAILED"
    assert fetched.info.end_time is not None and fetched.info.end_time >= fetched.info.start_time
    assert fetched.data.metrics == {"loss": 3.0}

    run = mlflow.start_run()
    try:
        assert run.info.run_name  # the server picks a name when none is given
        assert run.info.status == "RUNNING"
    finally:
        mlflow.end_run(status="KILLED")
    fetched = mlclient.get_run(run.info.run_id)
    assert fetched.info.status == "KILLED"
    assert fetched.info.end_time is not None
    assert fetched.info.run_name == run.info.run_name
    assert fetched.data.tags["mlflow.runName"] == run.info.run_name

    # Resuming an ended run: RUNNING while open, FINISHED again at the end, new data kept.
    with mlflow.start_run(run_id=run.info.run_id) as resumed:
        assert resumed.info.run_id == run.info.run_id
        assert mlclient.get_run(run.info.run_id).info.status == "RUNNING"
        mlflow.log_metric("after_resume", 1.0)
    again = mlclient.get_run(run.info.run_id)
    assert again.info.status == "FINISHED"
    assert again.info.end_time >= fetched.info.end_time
    assert again.data.metrics == {"after_resume": 1.0}


def test_metric_history_steps_and_latest_value(
    mlflow_tracking: str, experiment: Any, mlclient: Any, rest: Any
) -> None:
    with mlflow.start_run() as run:
        for step in range(30):
            mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
        # Logged later but at a lower step: the "latest" metric is still the highest step.
        mlflow.log_metric("loss", 42.0, step=3)
        mlflow.log_metrics({"lr": 0.1}, step=0)
        mlflow.log_metrics({"lr": 0.05}, step=10)
        # Asynchronous logging (a background thread batching through runs/log-batch).
        ops = [
            mlflow.log_metric("async_metric", float(i), step=i, synchronous=False) for i in range(5)
        ]
        for op in ops:
            op.wait()
    run_id = run.info.run_id

    history = mlclient.get_metric_history(run_id, "loss")
    assert len(history) == 31
    assert all(m.key == "loss" for m in history)
    by_step: dict[int, list[float]] = {}
    for m in history:
        by_step.setdefault(m.step, []).append(m.value)
        assert m.timestamp > 0
    assert sorted(by_step) == list(range(30))
    assert sorted(by_step[3]) == [0.25, 42.0]
    assert by_step[29] == [pytest.approx(1.0 / 30)]

    lr = sorted((m.step, m.value) for m in mlclient.get_metric_history(run_id, "lr"))
    assert lr == [(0, 0.1), (10, 0.05)]

    latest = mlclient.get_run(run_id).data.metrics
    assert latest["loss"] == pytest.approx(1.0 / 30)
    assert latest["lr"] == 0.05

    # "Latest" = highest step, then highest timestamp, then highest value (MLflow's rule).
    other = mlclient.create_run(experiment.experiment_id).info.run_id
    mlclient.log_metric(other, "tie", 1.0, timestamp=2000, step=5)
    mlclient.log_metric(other, "tie", 0.5, timestamp=3000, step=5)
    mlclient.log_metric(other, "tie", 9.0, timestamp=9000, step=4)
    assert mlclient.get_run(other).data.metrics["tie"] == 0.5
    mlclient.log_metric(other, "tie", 0.75, timestamp=3000, step=5)
    assert mlclient.get_run(other).data.metrics["tie"] == 0.75
    mlclient.log_metric(other, "tie", 0.25, timestamp=3000, step=5)
    assert mlclient.get_run(other).data.metrics["tie"] == 0.75
    assert len(mlclient.get_metric_history(other, "tie")) == 5
    # Re-sending an identical point is deduplicated.
    mlclient.log_metric(other, "tie", 0.25, timestamp=3000, step=5)
    assert len(mlclient.get_metric_history(other, "tie")) == 5

    # Metrics can name the dataset they were computed on.
    eval_ds = mlflow.data.from_pandas(pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1]}), name="eval-set")
    with mlflow.start_run(run_id=other):
        mlflow.log_metric("eval_acc", 0.8, dataset=eval_ds)
    (point,) = mlclient.get_metric_history(other, "eval_acc")
    assert (point.value, point.dataset_name, point.dataset_digest) == (
        0.8,
        "eval-set",
        eval_ds.digest,
    )

    assert mlclient.get_metric_history(run_id, "never-logged") == []
    asynced = sorted((m.step, m.value) for m in mlclient.get_metric_history(run_id, "async_metric"))
    assert asynced == [(i, float(i)) for i in range(5)]

    # The wire-level history pages: max_results + next_page_token, as the client loops over them.
    seen: list[tuple[int, float]] = []
    token = None
    pages = 0
    while True:
        query = {"run_id": run_id, "metric_key": "loss", "max_results": 10}
        if token:
            query["page_token"] = token
        resp = rest.get("metrics/get-history", query)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        pages += 1
        assert len(body["metrics"]) <= 10
        seen.extend((m["step"], m["value"]) for m in body["metrics"])
        token = body.get("next_page_token")
        if not token or pages > 10:
            break
    assert pages == 4
    assert sorted(seen) == sorted((m.step, m.value) for m in history)


def test_nan_and_infinity_round_trip(mlflow_tracking: str, experiment: Any, mlclient: Any) -> None:
    with mlflow.start_run() as run:
        mlflow.log_metric("nan_metric", float("nan"))
        mlflow.log_metric("pos_inf", float("inf"))
        mlflow.log_metric("neg_inf", float("-inf"))
        mlflow.log_metrics({"batch_nan": float("nan"), "batch_inf": float("inf"), "finite": 1.5})
    run_id = run.info.run_id

    metrics = mlclient.get_run(run_id).data.metrics
    assert math.isnan(metrics["nan_metric"])
    assert math.isnan(metrics["batch_nan"])
    assert _is_pos_inf(metrics["pos_inf"])
    assert _is_pos_inf(metrics["batch_inf"])
    assert _is_neg_inf(metrics["neg_inf"])
    assert metrics["finite"] == 1.5

    (nan_point,) = mlclient.get_metric_history(run_id, "nan_metric")
    assert math.isnan(nan_point.value)
    (inf_point,) = mlclient.get_metric_history(run_id, "pos_inf")
    assert _is_pos_inf(inf_point.value)
    (ninf_point,) = mlclient.get_metric_history(run_id, "neg_inf")
    assert _is_neg_inf(ninf_point.value)

    df = mlflow.search_runs(experiment_ids=[experiment.experiment_id])
    assert list(df["run_id"]) == [run_id]
    assert math.isnan(df["metrics.nan_metric"].iloc[0])
    assert _is_pos_inf(df["metrics.pos_inf"].iloc[0])


def test_artifacts_upload_list_and_download(
    mlflow_tracking: str, experiment: Any, mlclient: Any, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "nested" / "deeper").mkdir(parents=True)
    binary = bytes(range(256)) * 64
    (src / "weights.bin").write_bytes(binary)
    (src / "nested" / "notes.md").write_text("# notes\nüñïçødé ✓\n", encoding="utf-8")
    (src / "nested" / "deeper" / "empty.txt").write_bytes(b"")
    single = tmp_path / "summary.json"
    single.write_text('{"accuracy": 0.97}')
    odd = tmp_path / "my report (final) ü.txt"
    odd.write_text("odd name")
    big = tmp_path / "big.bin"
    big_bytes = np.random.default_rng(0).bytes(6 * 1024 * 1024 + 7)
    big.write_bytes(big_bytes)

    with mlflow.start_run() as run:
        mlflow.log_artifact(str(single))
        mlflow.log_artifact(str(single), artifact_path="reports")
        mlflow.log_artifacts(str(src), artifact_path="bundle")
        mlflow.log_text("hello from log_text", "texts/hello.txt")
        mlflow.log_dict({"a": 1, "b": [1, 2]}, "config.json")
        mlflow.log_artifact(str(odd), artifact_path="odd dir")
        mlflow.log_artifact(str(big), artifact_path="large")
        # log_table appends: it downloads the existing file and uploads the union.
        mlflow.log_table(
            data={"epoch": [1, 2], "loss": [0.5, 0.25]}, artifact_file="tables/progress.json"
        )
        mlflow.log_table(data={"epoch": [3], "loss": [0.125]}, artifact_file="tables/progress.json")
    run_id = run.info.run_id

    root = {f.path: f for f in mlclient.list_artifacts(run_id)}
    assert set(root) == {
        "summary.json",
        "reports",
        "bundle",
        "texts",
        "config.json",
        "odd dir",
        "large",
        "tables",
    }
    assert root["bundle"].is_dir and root["reports"].is_dir and root["texts"].is_dir
    assert not root["summary.json"].is_dir
    assert root["summary.json"].file_size == single.stat().st_size

    bundle = {f.path: f for f in mlclient.list_artifacts(run_id, "bundle")}
    assert set(bundle) == {"bundle/weights.bin", "bundle/nested"}
    assert bundle["bundle/weights.bin"].file_size == len(binary)
    assert bundle["bundle/nested"].is_dir
    nested = {f.path for f in mlclient.list_artifacts(run_id, "bundle/nested")}
    assert nested == {"bundle/nested/notes.md", "bundle/nested/deeper"}

    # Listing a file, or a path that does not exist, gives nothing.
    assert mlclient.list_artifacts(run_id, "summary.json") == []
    assert mlclient.list_artifacts(run_id, "no/such/dir") == []
    assert [(f.path, f.file_size) for f in mlclient.list_artifacts(run_id, "odd dir")] == [
        ("odd dir/my report (final) ü.txt", odd.stat().st_size)
    ]
    assert [(f.path, f.file_size) for f in mlclient.list_artifacts(run_id, "large")] == [
        ("large/big.bin", len(big_bytes))
    ]

    # A whole directory comes back byte for byte.
    out = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="bundle", dst_path=str(tmp_path / "dl")
        )
    )
    assert (out / "weights.bin").read_bytes() == binary
    assert (out / "nested" / "notes.md").read_bytes() == (src / "nested" / "notes.md").read_bytes()
    assert (out / "nested" / "deeper" / "empty.txt").read_bytes() == b""

    # Single files, through both spellings of the download API.
    one = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="reports/summary.json", dst_path=str(tmp_path / "one")
    )
    assert Path(one).read_bytes() == single.read_bytes()
    via_uri = mlflow.artifacts.download_artifacts(
        artifact_uri=f"runs:/{run_id}/texts/hello.txt", dst_path=str(tmp_path / "uri")
    )
    assert Path(via_uri).read_text() == "hello from log_text"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json") == {"a": 1, "b": [1, 2]}
    assert mlflow.artifacts.load_text(f"runs:/{run_id}/summary.json") == '{"accuracy": 0.97}'
    table = mlflow.load_table("tables/progress.json", run_ids=[run_id])
    assert sorted(zip(table["epoch"], table["loss"], strict=True)) == [
        (1, 0.5),
        (2, 0.25),
        (3, 0.125),
    ]
    odd_back = mlflow.artifacts.download_artifacts(
        run_id=run_id,
        artifact_path="odd dir/my report (final) ü.txt",
        dst_path=str(tmp_path / "odd"),
    )
    assert Path(odd_back).read_text() == "odd name"
    big_back = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="large/big.bin", dst_path=str(tmp_path / "big")
    )
    assert Path(big_back).read_bytes() == big_bytes

    # The whole run, root included.
    everything = Path(mlclient.download_artifacts(run_id, "", str(tmp_path / "all")))
    files = sorted(str(p.relative_to(everything)) for p in everything.rglob("*") if p.is_file())
    assert files == sorted(
        [
            "summary.json",
            "reports/summary.json",
            "bundle/weights.bin",
            "bundle/nested/notes.md",
            "bundle/nested/deeper/empty.txt",
            "texts/hello.txt",
            "config.json",
            "odd dir/my report (final) ü.txt",
            "large/big.bin",
            "tables/progress.json",
        ]
    )

    # A path that was never uploaded is an error, and nothing is written locally.
    with pytest.raises(Exception) as excinfo:
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="absent.txt", dst_path=str(tmp_path / "none")
        )
    assert not (tmp_path / "none" / "absent.txt").exists()
    assert "absent.txt" in str(excinfo.value) or "404" in str(excinfo.value)


def test_log_input_dataset_round_trip(mlflow_tracking: str, experiment: Any, mlclient: Any) -> None:
    df = pd.DataFrame(
        {"x1": [1.0, 2.0, 3.0, 4.0], "x2": [0.5, 0.25, 0.125, 0.0625], "target": [0, 1, 0, 1]}
    )
    train = mlflow.data.from_pandas(df, name="toy-train", targets="target")
    evals = mlflow.data.from_pandas(df.iloc[:2], name="toy-eval", targets="target")
    with mlflow.start_run() as run:
        mlflow.log_input(train, context="training")
        mlflow.log_input(evals, context="evaluation", tags={"split": "holdout"})

    inputs = mlclient.get_run(run.info.run_id).inputs.dataset_inputs
    by_name = {d.dataset.name: d for d in inputs}
    assert set(by_name) == {"toy-train", "toy-eval"}

    got = by_name["toy-train"]
    assert got.dataset.digest == train.digest
    assert got.dataset.source_type == train.source._get_source_type()
    assert got.dataset.schema == train._to_mlflow_entity().schema
    assert got.dataset.profile == train._to_mlflow_entity().profile
    assert {t.key: t.value for t in got.tags} == {"mlflow.data.context": "training"}

    got_eval = by_name["toy-eval"]
    assert got_eval.dataset.digest == evals.digest
    assert {t.key: t.value for t in got_eval.tags} == {
        "mlflow.data.context": "evaluation",
        "split": "holdout",
    }

    # The dataset can be rebuilt from what the server returned.
    source = mlflow.data.get_source(got)
    assert source._get_source_type() == got.dataset.source_type

    # Logging the same dataset again (same name and digest) adds nothing: MLflow's
    # SqlAlchemyStore._log_inputs_impl only creates an input (and its tags) when the
    # (dataset, run) edge is new, so the first context stays.
    with mlflow.start_run(run_id=run.info.run_id):
        mlflow.log_input(train, context="evaluation", tags={"late": "tag"})
    again = mlclient.get_run(run.info.run_id).inputs.dataset_inputs
    assert sorted(d.dataset.name for d in again) == ["toy-eval", "toy-train"]
    relogged = next(d for d in again if d.dataset.name == "toy-train")
    assert {t.key: t.value for t in relogged.tags} == {"mlflow.data.context": "training"}


def test_nested_runs_record_parent(mlflow_tracking: str, experiment: Any, mlclient: Any) -> None:
    with mlflow.start_run(run_name="parent") as parent:
        with mlflow.start_run(run_name="child-a", nested=True) as child_a:
            mlflow.log_metric("score", 1.0)
        with mlflow.start_run(run_name="child-b", nested=True) as child_b:
            mlflow.log_metric("score", 2.0)
    parent_id = parent.info.run_id
    for child in (child_a, child_b):
        fetched = mlclient.get_run(child.info.run_id)
        assert fetched.data.tags["mlflow.parentRunId"] == parent_id
        assert fetched.info.status == "FINISHED"
    assert mlclient.get_run(parent_id).info.status == "FINISHED"

    children = mlflow.search_runs(
        experiment_ids=[experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        order_by=["metrics.score ASC"],
    )
    assert list(children["run_id"]) == [child_a.info.run_id, child_b.info.run_id]
    assert list(children["tags.mlflow.runName"]) == ["child-a", "child-b"]


def test_update_run_name_status_tags_and_long_values(
    mlflow_tracking: str, experiment: Any, mlclient: Any
) -> None:
    run = mlclient.create_run(
        experiment.experiment_id,
        run_name="before",
        tags={"keep": "1", "drop": "2"},
        start_time=1_600_000_000_123,
    )
    run_id = run.info.run_id
    assert run.info.run_name == "before"
    assert run.info.start_time == 1_600_000_000_123
    assert mlclient.get_run(run_id).info.start_time == 1_600_000_000_123
    assert run.info.status == "RUNNING"

    mlclient.update_run(run_id, name="after")
    fetched = mlclient.get_run(run_id)
    assert fetched.info.run_name == "after"
    assert fetched.data.tags["mlflow.runName"] == "after"
    assert fetched.info.status == "RUNNING"

    # Renaming through the tag, as older clients and the UI do.
    mlclient.set_tag(run_id, "mlflow.runName", "via-tag")
    assert mlclient.get_run(run_id).info.run_name == "via-tag"

    mlclient.delete_tag(run_id, "drop")
    tags = mlclient.get_run(run_id).data.tags
    assert "drop" not in tags
    assert tags["keep"] == "1"

    mlclient.set_terminated(run_id, status="FAILED")
    done = mlclient.get_run(run_id)
    assert done.info.status == RunStatus.to_string(RunStatus.FAILED)
    assert done.info.end_time is not None and done.info.end_time >= done.info.start_time

    # Status can still be changed after the run ended (e.g. a scheduler marking it KILLED).
    mlclient.update_run(run_id, status="KILLED")
    assert mlclient.get_run(run_id).info.status == "KILLED"

    # MLflow servers truncate over-long param (6000) and tag (8000) values by default.
    mlclient.log_param(run_id, "long_param", "p" * 7000)
    mlclient.set_tag(run_id, "long_tag", "t" * 9000)
    data = mlclient.get_run(run_id).data
    assert data.params["long_param"] == "p" * 6000
    assert data.tags["long_tag"] == "t" * 8000


def test_delete_and_restore_run_with_view_types(
    mlflow_tracking: str, experiment: Any, mlclient: Any
) -> None:
    exp_id = experiment.experiment_id
    with mlflow.start_run(run_name="keeper") as keeper:
        mlflow.log_metric("m", 1.0)
    with mlflow.start_run(run_name="goner") as goner:
        mlflow.log_metric("m", 2.0)

    mlclient.delete_run(goner.info.run_id)
    assert mlclient.get_run(goner.info.run_id).info.lifecycle_stage == "deleted"

    def ids(view: int) -> set[str]:
        return {r.info.run_id for r in mlclient.search_runs([exp_id], run_view_type=view)}

    assert ids(ViewType.ACTIVE_ONLY) == {keeper.info.run_id}
    assert ids(ViewType.DELETED_ONLY) == {goner.info.run_id}
    assert ids(ViewType.ALL) == {keeper.info.run_id, goner.info.run_id}
    # The pandas API defaults to active runs only.
    assert list(mlflow.search_runs([exp_id])["run_id"]) == [keeper.info.run_id]

    # A deleted run is read-only.
    with pytest.raises(MlflowException) as excinfo:
        mlclient.log_metric(goner.info.run_id, "m", 3.0)
    assert excinfo.value.error_code == "INVALID_PARAMETER_VALUE"

    mlclient.restore_run(goner.info.run_id)
    restored = mlclient.get_run(goner.info.run_id)
    assert restored.info.lifecycle_stage == "active"
    assert restored.data.metrics == {"m": 2.0}
    assert ids(ViewType.ACTIVE_ONLY) == {keeper.info.run_id, goner.info.run_id}
    assert ids(ViewType.DELETED_ONLY) == set()
    mlclient.log_metric(goner.info.run_id, "m", 3.0, step=1)
    assert mlclient.get_run(goner.info.run_id).data.metrics == {"m": 3.0}


def test_client_log_batch_splits_large_batches(
    mlflow_tracking: str, experiment: Any, mlclient: Any
) -> None:
    from mlflow.entities import Metric, Param, RunTag

    run = mlclient.create_run(experiment.experiment_id)
    run_id = run.info.run_id
    ts = 1_700_000_000_000
    metrics = [Metric("series", float(i), ts + i, i) for i in range(1500)]
    params = [Param(f"p{i:03d}", str(i)) for i in range(150)]
    tags = [RunTag(f"t{i:03d}", f"v{i}") for i in range(120)]
    # The client splits this into several requests under the server's limits.
    mlclient.log_batch(run_id, metrics=metrics, params=params, tags=tags)
    mlclient.set_terminated(run_id)

    fetched = mlclient.get_run(run_id)
    assert len(fetched.data.params) == 150
    assert fetched.data.params["p149"] == "149"
    user_tags = {k: v for k, v in fetched.data.tags.items() if not k.startswith("mlflow.")}
    assert len(user_tags) == 120 and user_tags["t119"] == "v119"
    assert fetched.data.metrics == {"series": 1499.0}
    history = mlclient.get_metric_history(run_id, "series")
    assert sorted((m.step, m.value, m.timestamp) for m in history) == [
        (i, float(i), ts + i) for i in range(1500)
    ]
