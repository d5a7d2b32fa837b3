"""MLflow's web UI, served by metricgate, in headless Chromium: every classic page shows the data.

The data is written once per module through the unmodified mlflow client (``uidata.populate``);
each test opens a page in a fresh tab, does what a person would do, and asserts what is visible.
Every test also fails on a 4xx/5xx or failed request (except what stock MLflow answers the same
way, ``uipages.EXPECTED_ERRORS``), on a GraphQL error, and on any error banner or toast.
Screenshots land in ``.test-artifacts/ui/<test>/`` (or $METRICGATE_TEST_ARTIFACTS_DIR/ui).
"""

from __future__ import annotations

import shutil
import time
from typing import TYPE_CHECKING

import pytest
from tests.browser import uidata
from tests.browser import uipages as pages
from tests.browser.conftest import artifacts_dir
from tests.browser.uidata import Populated
from tests.browser.uipages import UiSession

if TYPE_CHECKING:
    from playwright.sync_api import Browser

pytestmark = pytest.mark.timeout(90)

CHARTED = {"accuracy", "loss"}


def assert_clean(ui: UiSession) -> None:
    """No failed essential request, no GraphQL error, no error shown, since the tab opened."""
    problems = [str(p) for p in ui.network.problems()]
    shown = ui.visible_errors()
    assert not problems and not shown, (
        "failed requests:\n  "
        + "\n  ".join(problems or ["none"])
        + "\nerrors shown:\n  "
        + "\n  ".join(shown or ["none"])
    )


def names(rows: list[tuple[str, str]]) -> list[str]:
    return [name for _, name in rows]


def test_experiments_list(ui: UiSession, ui_data: Populated) -> None:
    shown = pages.experiments_list(ui, ui_data)
    ui.shot("experiments")
    assert uidata.EXPERIMENT in shown
    assert_clean(ui)


def test_runs_table_nesting_sort_and_filter(ui: UiSession, ui_data: Populated) -> None:
    # As it opens: the two top-level runs, the sweep's children folded under their parent.
    rows = pages.runs_table(ui, ui_data)
    ui.shot("runs-table")
    assert sorted(names(rows)) == sorted([uidata.PARENT, uidata.BASELINE])
    assert pages.matching_runs_count(ui) == len(ui_data.run_ids)

    rows = pages.expand_parent(ui, ui_data)
    ui.shot("runs-expanded")
    assert set(names(rows)) == {uidata.PARENT, uidata.BASELINE, *ui_data.trial_run_ids}
    parent_at = names(rows).index(uidata.PARENT)
    assert set(names(rows)[parent_at + 1 : parent_at + 1 + len(uidata.TRIALS)]) == set(
        ui_data.trial_run_ids
    )

    # Sorted by the last accuracy, best first; the parent logs no accuracy and goes last.
    rows = pages.sort_by_metric(ui, ui_data, "accuracy")
    ui.shot("runs-sorted-by-accuracy")
    assert names(rows) == [*ui_data.run_names_by_accuracy(), uidata.PARENT]

    # A filter keeps exactly the runs above the threshold, still sorted.
    threshold = 0.65
    rows = pages.search_runs(ui, ui_data, f"metrics.accuracy > {threshold}", expect_count=4)
    ui.shot("runs-filtered")
    expected = [
        n for n in ui_data.run_names_by_accuracy() if uidata.final_accuracy(_lr(n)) > threshold
    ]
    assert names(rows) == expected
    assert pages.matching_runs_count(ui) == len(expected)
    assert_clean(ui)


def _lr(run_name: str) -> float:
    return dict(uidata.TRIALS).get(run_name, uidata.BASELINE_LR)


def test_charts_view(ui: UiSession, ui_data: Populated) -> None:
    cards = pages.charts_view(ui, ui_data, CHARTED, min_points=uidata.STEPS)
    ui.shot("charts")
    for metric in CHARTED:
        assert cards[metric] == uidata.STEPS, cards
    assert_clean(ui)


def test_run_overview(ui: UiSession, ui_data: Populated) -> None:
    best = ui_data.best_run_id
    text = pages.run_overview(ui, ui_data, best, uidata.TRIALS[-1][0])
    ui.shot("run-overview")
    assert best in text
    assert uidata.PARENT in text  # "Parent run"
    assert "Finished" in text
    # Params and latest metrics, as the table shows them.
    assert "lr\n0.3" in text
    assert f"accuracy\n{uidata.final_accuracy(uidata.TRIALS[-1][1])}" in text
    # The logged model and the registered version it became.
    assert "Logged models (1)" in text
    assert ui_data.model_name in text and f"v{ui_data.staged_version}" in text
    assert_clean(ui)


def test_run_model_metrics(ui: UiSession, ui_data: Populated) -> None:
    cards = pages.run_model_metrics(
        ui, ui_data, ui_data.best_run_id, CHARTED, min_points=uidata.STEPS
    )
    ui.shot("run-model-metrics")
    assert {m: cards[m] for m in CHARTED} == {m: uidata.STEPS for m in CHARTED}
    assert_clean(ui)


def test_run_artifacts(ui: UiSession, ui_data: Populated) -> None:
    view = pages.run_artifacts(
        ui, ui_data, ui_data.best_run_id, uidata.TEXT_ARTIFACT, uidata.IMAGE_ARTIFACT
    )
    ui.shot("artifact-image")
    assert view.text.strip() == uidata.TEXT_CONTENT.strip()
    assert view.image_size == (320, 240)  # uidata's 4x3 in figure at 80 dpi
    assert_clean(ui)


def test_compare_three_runs(ui: UiSession, ui_data: Populated) -> None:
    compared = [ui_data.trial_run_ids[name] for name, _ in uidata.TRIALS[-3:]]
    view = pages.compare_runs(ui, ui_data, compared)
    ui.shot("compare-runs")
    assert view.heading.startswith("Comparing 3 Runs")
    # The parallel coordinates plot: the runs' param and one of their metrics as axes (which metric
    # is first depends on the order of a run's metrics in runs/search, which MLflow leaves open).
    assert view.axes[0] == "lr" and view.axes[1] in CHARTED and len(view.axes) == 2, view.axes
    assert view.lines == 3
    for run_id in compared:
        assert run_id in view.text
    for name, _ in uidata.TRIALS[-3:]:
        assert name in view.text
    assert_clean(ui)


def test_logged_models(ui: UiSession, ui_data: Populated) -> None:
    text = pages.logged_models_list(ui, ui_data)
    ui.shot("logged-models")
    assert text.count("Ready") == len(ui_data.model_ids)
    for (
        version
    ) in ui_data.versions:  # each model's registered version, in the Registered models column
        assert f"{ui_data.model_name}\nv{version}" in text
    best_name = uidata.TRIALS[-1][0]
    assert best_name in text  # the source run

    model_id = ui_data.model_ids[-1]
    text = pages.logged_model_page(ui, ui_data, model_id)
    ui.shot("logged-model")
    assert f"Model ID\n{model_id}" in text
    assert "Status\nReady" in text
    assert f"Source run\n{best_name}" in text
    assert "lr\n0.3" in text
    assert f"{ui_data.model_name}\nv{ui_data.staged_version}" in text

    # Its artifacts tab lists the model's files; MLmodel opens with its content.
    mlmodel = pages.logged_model_artifacts(ui, ui_data, model_id, "MLmodel")
    ui.shot("logged-model-artifacts")
    assert f"model_id: {model_id}" in mlmodel
    assert f"run_id: {ui_data.best_run_id}" in mlmodel
    assert "sklearn:" in mlmodel
    assert_clean(ui)


def test_registered_models(ui: UiSession, ui_data: Populated) -> None:
    text = pages.registered_models(ui, ui_data)
    ui.shot("registered-models")
    latest = ui_data.versions[-1]
    assert f"{ui_data.model_name}\nVersion {latest}" in text
    assert f"@\xa0{uidata.ALIAS}" in text

    text = pages.registered_model(ui, ui_data)
    ui.shot("registered-model")
    assert "Iris classifier from the UI sweep" in text  # the description
    for version in ui_data.versions:
        assert f"Version {version}" in text
    assert f"@\xa0{uidata.ALIAS}" in text
    assert_clean(ui)


def test_model_version(ui: UiSession, ui_data: Populated) -> None:
    text = pages.model_version(ui, ui_data, ui_data.staged_version)
    ui.shot("model-version")
    assert f"Stage (deprecated)\n:\n{uidata.STAGE}" in text
    assert f"Aliases\n:\n@\xa0{uidata.ALIAS}" in text
    assert f"Source Run\n:\n{uidata.TRIALS[-1][0]}" in text
    # The signature's input schema: the four iris features, and one output.
    assert f"Inputs ({len(uidata.FEATURES)})" in text and "Outputs (1)" in text
    for feature in uidata.FEATURES:
        assert f"{feature} (required)\ndouble" in text
    assert_clean(ui)


def test_live_refresh(browser: Browser, ui_server: str, ui_mlflow: str, ui_data: Populated) -> None:
    """Points and a run logged while the page is open appear with the UI's own 30 s auto-refresh.

    Playwright's clock stands in for the wait: it is installed before the UI loads and fast-forwarded
    past the refresh interval, so the UI's timers fire as they would after 30 s.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient(ui_mlflow)
    experiment_id = client.create_experiment(uidata.LIVE_EXPERIMENT)
    live = Populated(ui_mlflow, experiment_id, parent_run_id="", baseline_run_id="")
    first = client.create_run(experiment_id, run_name="live-run").info.run_id
    now = int(time.time() * 1000)

    def log(run_id: str, steps: range) -> None:
        client.log_batch(
            run_id, metrics=[Metric("live_loss", 1.0 / (s + 1), now + s, s) for s in steps]
        )

    log(first, range(10))
    shots = artifacts_dir() / "test_live_refresh"
    shutil.rmtree(shots, ignore_errors=True)
    context = pages.new_context(browser, fake_clock=True)
    try:
        with pages.ui_session(context, ui_server, shots) as ui:
            cards = pages.charts_view(ui, live, {"live_loss"}, min_points=10)
            ui.shot("live-before")
            assert cards["live_loss"] == 10
            assert names(pages.table_rows(ui)) == ["live-run"]

            log(first, range(10, 60))
            second = client.create_run(experiment_id, run_name="late-run").info.run_id
            log(second, range(5))
            ui.page.clock.fast_forward(31_000)

            cards = pages.wait_for_charts(ui, {"live_loss"}, min_points=60)
            ui.shot("live-after")
            assert cards["live_loss"] == 60
            assert sorted(names(pages.table_rows(ui))) == ["late-run", "live-run"]
            assert_clean(ui)
    finally:
        context.close()
