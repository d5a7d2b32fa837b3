"""Run search through the real client: a 9-run hyperparameter sweep ranked and filtered.

The sweep: Ridge regressions on the diabetes data set over alpha x number of features, each run
logging ``val_score``. Two extra runs exercise MLflow's ordering rules: ``diverged`` logs a NaN
score (NaN sorts after every number, in both directions) and ``baseline`` logs no score at all
(runs without the key always come last). Expected results are computed here, in Python, from what
was logged; each test checks several filters and reports every mismatch at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import ViewType

ALPHAS = ("0.01", "0.1", "1.0")
N_FEATURES = (4, 7, 10)
TEAMS = ("ML-Platform", "ml-research", "Data")


@dataclass(frozen=True)
class SweepRun:
    run_id: str
    name: str
    alpha: str | None
    team: str | None
    val_score: float | None  # None: never logged; NaN: diverged
    status: str
    dataset: bool


@dataclass
class Sweep:
    experiment_id: str
    runs: list[SweepRun] = field(default_factory=list)

    @property
    def ids(self) -> set[str]:
        return {r.run_id for r in self.runs}

    def where(self, pred: Callable[[SweepRun], bool]) -> set[str]:
        return {r.run_id for r in self.runs if pred(r)}

    def by_name(self, name: str) -> SweepRun:
        return next(r for r in self.runs if r.name == name)

    def ordered_by_score(self, descending: bool) -> list[str]:
        """MLflow's order for ``metrics.val_score``: numbers, then NaN, then missing (ties: start_time DESC)."""
        scored = [r for r in self.runs if r.val_score is not None and not math.isnan(r.val_score)]
        scored.sort(key=lambda r: r.val_score, reverse=descending)  # type: ignore[arg-type, return-value]
        nan = [r for r in self.runs if r.val_score is not None and math.isnan(r.val_score)]
        missing = [r for r in self.runs if r.val_score is None]
        return [r.run_id for r in scored + nan + missing]

    @property
    def sweep_only(self) -> list[SweepRun]:
        return [r for r in self.runs if r.name.startswith("sweep-")]

    def median_threshold(self) -> float:
        scores = sorted(r.val_score for r in self.sweep_only)  # type: ignore[type-var]
        return (scores[4] + scores[5]) / 2  # type: ignore[operator]


@pytest.fixture
def sweep(mlflow_tracking: str, unique_name: Callable[[str], str]) -> Sweep:
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge

    X, y = load_diabetes(return_X_y=True)
    X_train, X_val, y_train, y_val = X[:300], X[300:], y[:300], y[300:]
    train_df = pd.DataFrame(X_train, columns=[f"f{i}" for i in range(X.shape[1])]).assign(
        target=y_train
    )
    dataset = mlflow.data.from_pandas(train_df, name="diabetes-train", targets="target")

    exp = mlflow.set_experiment(unique_name("sweep"))
    result = Sweep(exp.experiment_id)
    for i in range(9):
        alpha, n_feat, team = ALPHAS[i // 3], N_FEATURES[i % 3], TEAMS[i % 3]
        model = Ridge(alpha=float(alpha)).fit(X_train[:, :n_feat], y_train)
        score = float(model.score(X_val[:, :n_feat], y_val))
        with mlflow.start_run(run_name=f"sweep-{i}") as run:
            mlflow.log_params({"alpha": alpha, "n_features": n_feat})
            mlflow.set_tag("team", team)
            mlflow.log_input(dataset, context="training")
            mlflow.log_metric("val_score", score)
        result.runs.append(
            SweepRun(run.info.run_id, f"sweep-{i}", alpha, team, score, "FINISHED", True)
        )

    with mlflow.start_run(run_name="diverged") as run:
        mlflow.log_params({"alpha": "10.0", "n_features": 10})
        mlflow.set_tag("team", "ml-ops")
        mlflow.log_metric("val_score", float("nan"))
        mlflow.end_run(status="FAILED")
    result.runs.append(
        SweepRun(run.info.run_id, "diverged", "10.0", "ml-ops", math.nan, "FAILED", False)
    )

    with mlflow.start_run(run_name="baseline") as run:
        mlflow.log_metric("train_score", 0.0)
    result.runs.append(SweepRun(run.info.run_id, "baseline", None, None, None, "FINISHED", False))

    scores = [r.val_score for r in result.sweep_only]
    assert len(set(scores)) == 9, "the sweep needs distinct scores for an unambiguous ranking"
    return result


def _search_ids(sweep: Sweep, filter_string: str) -> set[str]:
    df = mlflow.search_runs(experiment_ids=[sweep.experiment_id], filter_string=filter_string)
    return set(df["run_id"]) if len(df) else set()


def _check_filters(sweep: Sweep, cases: Iterable[tuple[str, set[str]]]) -> None:
    failures = []
    for filter_string, expected in cases:
        try:
            got = _search_ids(sweep, filter_string)
        except Exception as exc:  # report every filter, not only the first that breaks
            failures.append(f"{filter_string!r}: raised {type(exc).__name__}: {str(exc)[:300]}")
            continue
        if got != expected:
            names = {r.run_id: r.name for r in sweep.runs}
            failures.append(
                f"{filter_string!r}: expected {sorted(names[i] for i in expected)}, "
                f"got {sorted(names.get(i, i) for i in got)}"
            )
    assert not failures, "\n".join(failures)


def test_sweep_ranked_by_val_score_dataframe(sweep: Sweep) -> None:
    df = mlflow.search_runs(
        experiment_ids=[sweep.experiment_id], order_by=["metrics.val_score DESC"]
    )
    assert isinstance(df, pd.DataFrame)
    names = {r.run_id: r.name for r in sweep.runs}
    got = [names.get(i, i) for i in df["run_id"]]
    expected = [names[i] for i in sweep.ordered_by_score(descending=True)]
    assert got == expected

    # The best run is first and its row carries what was logged.
    best = max(sweep.sweep_only, key=lambda r: r.val_score)  # type: ignore[arg-type, return-value]
    row = df.iloc[0]
    assert row["run_id"] == best.run_id
    assert row["metrics.val_score"] == pytest.approx(best.val_score)
    assert row["params.alpha"] == best.alpha
    assert row["tags.team"] == best.team
    assert row["tags.mlflow.runName"] == best.name
    assert row["status"] == "FINISHED"
    assert row["experiment_id"] == sweep.experiment_id

    # Column values line up with the logged scores, row by row.
    for run_id, value in zip(df["run_id"], df["metrics.val_score"], strict=True):
        logged = next(r.val_score for r in sweep.runs if r.run_id == run_id)
        if logged is None or math.isnan(logged):
            assert value is None or (isinstance(value, float) and math.isnan(value))
        else:
            assert value == pytest.approx(logged)
    assert set(df["params.n_features"].dropna()) == {"4", "7", "10"}

    top3 = mlflow.search_runs(
        experiment_ids=[sweep.experiment_id], order_by=["metrics.val_score DESC"], max_results=3
    )
    assert list(top3["run_id"]) == sweep.ordered_by_score(descending=True)[:3]

    _check_dataframe_dtypes(sweep)
    _check_ascending_and_multi_key_order(sweep)


def _check_ascending_and_multi_key_order(sweep: Sweep) -> None:
    names = {r.run_id: r.name for r in sweep.runs}
    asc = mlflow.search_runs(
        experiment_ids=[sweep.experiment_id], order_by=["metrics.val_score ASC"]
    )
    assert [names[i] for i in asc["run_id"]] == [
        names[i] for i in sweep.ordered_by_score(descending=False)
    ]

    # params sort as strings; runs without the param come last.
    multi = mlflow.search_runs(
        experiment_ids=[sweep.experiment_id],
        order_by=["params.alpha ASC", "metrics.val_score DESC"],
    )
    with_alpha = [r for r in sweep.runs if r.alpha is not None]
    with_alpha.sort(
        key=lambda r: (
            r.alpha,
            -(
                r.val_score
                if r.val_score is not None and not math.isnan(r.val_score)
                else -math.inf
            ),
        )
    )
    expected = [r.name for r in with_alpha] + ["baseline"]
    assert [names[i] for i in multi["run_id"]] == expected

    by_name = mlflow.search_runs(
        experiment_ids=[sweep.experiment_id], order_by=["attributes.run_name DESC"]
    )
    assert [names[i] for i in by_name["run_id"]] == sorted(names.values(), reverse=True)

    by_start = mlflow.search_runs(
        experiment_ids=[sweep.experiment_id], order_by=["attributes.start_time ASC"]
    )
    starts_asc = list(by_start["start_time"])
    assert starts_asc == sorted(starts_asc)
    by_team = mlflow.search_runs(experiment_ids=[sweep.experiment_id], order_by=["tags.team DESC"])
    teams = [t for t in by_team["tags.team"]]
    assert teams[-1] is None or teams[-1] != teams[-1]  # the run without the tag comes last
    assert teams[:-1] == sorted(teams[:-1], reverse=True)

    # Default order: newest first.
    default = mlflow.search_runs(experiment_ids=[sweep.experiment_id])
    starts = list(default["start_time"])
    assert starts == sorted(starts, reverse=True)
    assert set(default["run_id"]) == sweep.ids


def test_filter_on_params_and_metrics(sweep: Sweep) -> None:
    thr = sweep.median_threshold()
    best = max(r.val_score for r in sweep.sweep_only)  # type: ignore[type-var]
    _check_filters(
        sweep,
        [
            ("params.alpha = '0.1'", sweep.where(lambda r: r.alpha == "0.1")),
            (
                "param.alpha != '0.1'",
                sweep.where(lambda r: r.alpha is not None and r.alpha != "0.1"),
            ),
            (
                "params.alpha LIKE '0.%'",
                sweep.where(lambda r: r.alpha is not None and r.alpha.startswith("0.")),
            ),
            ("parameters.n_features = '7'", {r.run_id for r in sweep.sweep_only[1::3]}),
            ("params.alpha IS NULL", {sweep.by_name("baseline").run_id}),
            ("params.alpha IS NOT NULL", sweep.ids - {sweep.by_name("baseline").run_id}),
            # A NaN score never compares greater (mlflow stores NaN as is_nan, value 0).
            (
                f"metrics.val_score > {thr!r}",
                {r.run_id for r in sweep.sweep_only if r.val_score > thr},
            ),  # type: ignore[operator]
            (
                f"metric.val_score >= {best!r}",
                {r.run_id for r in sweep.sweep_only if r.val_score == best},
            ),
            (
                f"metrics.val_score = {best!r}",
                {r.run_id for r in sweep.sweep_only if r.val_score == best},
            ),
            ("metrics.val_score > 1e9", set()),
            ("metrics.train_score = 0", {sweep.by_name("baseline").run_id}),
            ("metrics.never_logged > 0", set()),
            (
                f"params.alpha = '0.01' and metrics.val_score > {thr!r}",
                {r.run_id for r in sweep.sweep_only if r.alpha == "0.01" and r.val_score > thr},  # type: ignore[operator]
            ),
        ],
    )


def test_filter_on_attributes_tags_and_datasets(sweep: Sweep) -> None:
    picked = [sweep.runs[0].run_id, sweep.runs[4].run_id, sweep.runs[9].run_id]
    in_list = ", ".join(f"'{i}'" for i in picked)
    cases = [
        ("attributes.run_name LIKE 'sweep-%'", {r.run_id for r in sweep.sweep_only}),
        ("attributes.run_name = 'baseline'", {sweep.by_name("baseline").run_id}),
        ("run_name ILIKE 'SWEEP-1'", {sweep.by_name("sweep-1").run_id}),
        ("attributes.run_name != 'baseline'", sweep.ids - {sweep.by_name("baseline").run_id}),
        (f"attributes.run_id IN ({in_list})", set(picked)),
        (f"attributes.run_id NOT IN ({in_list})", sweep.ids - set(picked)),
        (f"attributes.run_id = '{picked[1]}'", {picked[1]}),
        ("attributes.status = 'FAILED'", {sweep.by_name("diverged").run_id}),
        ("attributes.status = 'FINISHED'", sweep.ids - {sweep.by_name("diverged").run_id}),
        ("attributes.start_time > 0", sweep.ids),
        ("attributes.end_time < 0", set()),
        ("attributes.user_id != 'nobody-at-all'", sweep.ids),
        # Alternate spellings: "created" for start_time, and the attr/run prefixes.
        ("attributes.created > 0", sweep.ids),
        ("run.status = 'FAILED'", {sweep.by_name("diverged").run_id}),
        ("attr.run_name = 'baseline'", {sweep.by_name("baseline").run_id}),
        ("tags.team = 'Data'", sweep.where(lambda r: r.team == "Data")),
        (
            "tags.team LIKE 'ML%'",
            sweep.where(lambda r: r.team is not None and r.team.startswith("ML")),
        ),
        (
            "tags.team ILIKE 'ML%'",
            sweep.where(lambda r: r.team is not None and r.team.lower().startswith("ml")),
        ),
        ("tags.team ILIKE '%research'", sweep.where(lambda r: r.team == "ml-research")),
        ("tags.team IS NULL", {sweep.by_name("baseline").run_id}),
        ("tags.team != 'Data'", sweep.where(lambda r: r.team is not None and r.team != "Data")),
        ("tags.`mlflow.runName` = 'sweep-4'", {sweep.by_name("sweep-4").run_id}),
        ("tag.mlflow.runName LIKE '%e%'", sweep.where(lambda r: "e" in r.name)),
        ("datasets.name = 'diabetes-train'", sweep.where(lambda r: r.dataset)),
        ("datasets.context = 'training'", sweep.where(lambda r: r.dataset)),
        ("datasets.name IN ('nope', 'diabetes-train')", sweep.where(lambda r: r.dataset)),
        (
            "tags.team ILIKE 'ml%' and params.alpha = '1.0' and attributes.run_name LIKE 'sweep-%'",
            sweep.where(lambda r: r.alpha == "1.0" and r.team in ("ML-Platform", "ml-research")),
        ),
    ]
    _check_filters(sweep, cases)


def test_client_search_runs_pages_with_max_results_and_token(sweep: Sweep, mlclient: Any) -> None:
    expected = [
        r
        for r in sweep.ordered_by_score(descending=True)
        if r in {x.run_id for x in sweep.sweep_only}
    ]
    collected: list[str] = []
    token = None
    sizes = []
    for _ in range(10):
        page = mlclient.search_runs(
            [sweep.experiment_id],
            filter_string="attributes.run_name LIKE 'sweep-%'",
            order_by=["metrics.val_score DESC"],
            max_results=4,
            page_token=token,
        )
        sizes.append(len(page))
        collected.extend(r.info.run_id for r in page)
        token = page.token
        if not token:
            break
    assert sizes == [4, 4, 1]
    assert collected == expected
    assert len(set(collected)) == 9

    # Pages of the whole experiment (ties in the default order are broken by run_id).
    all_ids: list[str] = []
    token = None
    for _ in range(10):
        page = mlclient.search_runs([sweep.experiment_id], max_results=5, page_token=token)
        all_ids.extend(r.info.run_id for r in page)
        token = page.token
        if not token:
            break
    assert sorted(all_ids) == sorted(sweep.ids)

    # Run objects from search carry the full data.
    first = mlclient.search_runs(
        [sweep.experiment_id], filter_string="attributes.run_name = 'sweep-0'", max_results=1
    )
    assert len(first) == 1
    run = first[0]
    assert run.data.params == {"alpha": "0.01", "n_features": "4"}
    assert run.data.tags["team"] == "ML-Platform"
    assert run.data.metrics["val_score"] == pytest.approx(sweep.by_name("sweep-0").val_score)
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["diabetes-train"]


def test_search_runs_across_experiments_and_list_output(
    sweep: Sweep, unique_name: Callable[[str], str]
) -> None:
    other = mlflow.set_experiment(unique_name("other"))
    with mlflow.start_run(run_name="sweep-other") as run:
        mlflow.log_metric("val_score", 99.0)

    runs = mlflow.search_runs(
        experiment_ids=[sweep.experiment_id, other.experiment_id],
        filter_string="attributes.run_name LIKE 'sweep-%'",
        order_by=["metrics.val_score DESC"],
        output_format="list",
    )
    assert isinstance(runs, list)
    assert next(r.info.run_id for r in runs) == run.info.run_id
    assert len(runs) == 10
    assert {r.info.experiment_id for r in runs} == {sweep.experiment_id, other.experiment_id}

    by_name = mlflow.search_runs(experiment_names=[other.name])
    assert list(by_name["run_id"]) == [run.info.run_id]

    # Deleted runs are only found when asked for.
    mlflow.delete_run(run.info.run_id)
    assert len(mlflow.search_runs(experiment_ids=[other.experiment_id])) == 0
    deleted = mlflow.search_runs(
        experiment_ids=[other.experiment_id], run_view_type=ViewType.DELETED_ONLY
    )
    assert list(deleted["run_id"]) == [run.info.run_id]


def _check_dataframe_dtypes(sweep: Sweep) -> None:
    df = mlflow.search_runs(
        experiment_ids=[sweep.experiment_id], filter_string="attributes.run_name LIKE 'sweep-%'"
    )
    assert len(df) == 9
    assert df["metrics.val_score"].dtype == np.float64
    logged = {r.run_id: r.val_score for r in sweep.sweep_only}
    assert {
        rid: pytest.approx(v) for rid, v in zip(df["run_id"], df["metrics.val_score"], strict=True)
    } == logged
    assert pd.api.types.is_datetime64_any_dtype(df["start_time"])
    assert (df["end_time"] >= df["start_time"]).all()
