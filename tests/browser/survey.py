"""Survey: the same UI pages on metricgate and on stock MLflow; which requests fail only on metricgate.

    .venv/bin/python -m tests.browser.survey [--out /tmp/ui-survey.md] [--shots DIR]

Starts a private PostgreSQL and Redis (``metricgate.devservices``), a ``metricgate serve`` on them,
and a stock ``mlflow server`` (SQLite, local artifact root) from the same virtualenv, writes the
same data to both through the mlflow client (``uidata.populate``), then visits every page with
the browser tests' own page functions (``uipages``), each in a new tab. The report lists, per page,
every request that failed (4xx/5xx, network error, GraphQL error) on metricgate but not on stock,
the page actions that failed only on metricgate, and error banners shown only on metricgate.
Ids are replaced by ``<id>`` so the two servers' requests compare. Not a test: a tool that tells
the people adding endpoints what is still missing.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.browser import uidata
from tests.browser import uipages as pages
from tests.browser.uidata import Populated
from tests.browser.uipages import UiSession
from tests.stock_mlflow import running_process, stock_mlflow_server

from scripts import devservices

_ID = re.compile(r"(m-)?[0-9a-f]{32}")


@dataclass
class Visit:
    name: str
    action: Callable[[UiSession, Populated], Any]
    preferences: bool = True  # False: a first-time visitor (GenAI mode, popovers)


def _compared(data: Populated) -> list[str]:
    return [data.trial_run_ids[name] for name, _ in uidata.TRIALS[-3:]]


def _runs_table_actions(ui: UiSession, data: Populated) -> Any:
    pages.runs_table(ui, data)
    pages.expand_parent(ui, data)
    pages.sort_by_metric(ui, data, "accuracy")
    return pages.search_runs(ui, data, "metrics.accuracy > 0.65", expect_count=4)


def _run_tab(tab: str) -> Callable[[UiSession, Populated], Any]:
    def visit(ui: UiSession, data: Populated) -> Any:
        ui.goto(pages.run_route(data, data.best_run_id, tab))
        ui.page.get_by_role("heading", name=uidata.TRIALS[-1][0]).wait_for()
        ui.settle()

    return visit


def _metric_page(ui: UiSession, data: Populated) -> Any:
    """The metric page (a metric's history for several runs; linked from older run pages)."""
    runs = json.dumps([data.best_run_id, data.baseline_run_id])
    ui.goto(
        f"#/metric/accuracy?runs={runs}&metric={quote(json.dumps('accuracy'))}"
        f"&experiments={json.dumps([data.experiment_id])}&plot_metric_keys={quote(json.dumps(['accuracy']))}"
    )
    ui.page.locator(".js-plotly-plot").first.wait_for()
    ui.settle()


def _compare_versions(ui: UiSession, data: Populated) -> Any:
    runs = {
        version: data.trial_run_ids[name]
        for version, (name, _) in zip(data.versions, uidata.TRIALS[-2:], strict=False)
    }
    ui.goto(
        f"#/compare-model-versions?name={json.dumps(quote(data.model_name))}&runs={json.dumps(runs)}"
    )
    ui.page.get_by_text(re.compile(r"Comparing \d+ Versions")).wait_for()
    ui.settle()


def _artifact_view_mode(ui: UiSession, data: Populated) -> Any:
    """The runs page's third view mode (evaluation tables from the runs' artifacts)."""
    pages.runs_table(ui, data)
    ui.page.locator("label:has(input[value=ARTIFACT])").click()
    ui.page.get_by_text("Compare:", exact=False).first.wait_for()
    ui.settle()


def _first_visit(route: Callable[[Populated], str]) -> Callable[[UiSession, Populated], Any]:
    def visit(ui: UiSession, data: Populated) -> Any:
        ui.goto(route(data))
        ui.page.wait_for_timeout(1500)
        ui.settle()

    return visit


VISITS = [
    Visit("experiments list", pages.experiments_list),
    Visit("runs table (expand, sort, filter)", _runs_table_actions),
    Visit(
        "charts view", lambda ui, d: pages.charts_view(ui, d, {"accuracy", "loss"}, uidata.STEPS)
    ),
    Visit(
        "run overview", lambda ui, d: pages.run_overview(ui, d, d.best_run_id, uidata.TRIALS[-1][0])
    ),
    Visit(
        "run model metrics",
        lambda ui, d: pages.run_model_metrics(
            ui, d, d.best_run_id, {"accuracy", "loss"}, uidata.STEPS
        ),
    ),
    Visit("run system metrics", _run_tab("system-metrics")),
    Visit("run traces tab", _run_tab("traces")),
    Visit(
        "run artifacts",
        lambda ui, d: pages.run_artifacts(
            ui, d, d.best_run_id, uidata.TEXT_ARTIFACT, uidata.IMAGE_ARTIFACT
        ),
    ),
    Visit("compare 3 runs", lambda ui, d: pages.compare_runs(ui, d, _compared(d))),
    Visit("logged models list", pages.logged_models_list),
    Visit("logged model page", lambda ui, d: pages.logged_model_page(ui, d, d.model_ids[-1])),
    Visit("registered models", pages.registered_models),
    Visit("registered model", pages.registered_model),
    Visit("model version", lambda ui, d: pages.model_version(ui, d, d.staged_version)),
    Visit(
        "logged model artifacts",
        lambda ui, d: pages.logged_model_artifacts(ui, d, d.model_ids[-1], "MLmodel"),
    ),
    Visit("metric page", _metric_page),
    Visit("compare model versions", _compare_versions),
    Visit("runs: artifact view mode", _artifact_view_mode),
    Visit("first visit: home", _first_visit(lambda d: "#/"), preferences=False),
    Visit(
        "first visit: experiment (GenAI overview)",
        _first_visit(lambda d: f"#/experiments/{d.experiment_id}"),
        preferences=False,
    ),
    Visit(
        "first visit: traces",
        _first_visit(lambda d: f"#/experiments/{d.experiment_id}/traces"),
        preferences=False,
    ),
]


@dataclass
class Outcome:
    problems: dict[tuple[str, str, str], str] = field(
        default_factory=dict
    )  # (method, route, what) -> detail
    action_error: str = ""
    shown: list[str] = field(default_factory=list)
    requests: int = 0
    text: list[str] = field(default_factory=list)  # the page's visible text, normalised


def _normalise(path: str) -> str:
    return _ID.sub("<id>", path)


# What differs between two servers holding the same data: ids, clocks, random run colours,
# artifact locations, the script that logged the data.
_VOLATILE = [
    (_ID, "<id>"),
    (re.compile(r"#[0-9a-f]{6}\b"), "<colour>"),
    (re.compile(r"\d\d/\d\d/\d{4}, \d\d:\d\d:\d\d [AP]M"), "<time>"),
    (re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?"), "<time>"),
    (re.compile(r"\b(a few|\d+) (seconds?|minutes?|hours?) ago\b"), "<ago>"),
    (re.compile(r"\b\d+(\.\d+)?(ms|s|min)\b"), "<duration>"),
    (re.compile(r"(mlflow-artifacts:|file://|/tmp/)\S*"), "<location>"),
    (re.compile(r"\b(pytest|survey\.py|__main__\.py|-m)\b"), "<source>"),
]


def _visible_text(ui: UiSession) -> list[str]:
    text = ui.page.locator("body").inner_text()
    for pattern, replacement in _VOLATILE:
        text = pattern.sub(replacement, text)
    return [line.strip() for line in text.splitlines() if line.strip()]


def _key(problem: pages.Problem) -> tuple[str, str, str]:
    exchange = problem.exchange
    route = _normalise(exchange.route)
    op = exchange.operation()
    return (exchange.method, route + (f" ({op})" if op else ""), problem.what)


def survey(browser: Any, data: Populated, shots: Path | None) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    for preferences in (True, False):
        context = pages.new_context(browser, preferences=preferences)
        try:
            for visit in (v for v in VISITS if v.preferences == preferences):
                outcome = Outcome()
                with pages.ui_session(context, data.base_url, shots) as ui:
                    try:
                        visit.action(ui, data)
                    except (
                        Exception
                    ) as exc:  # a page that does not render is a finding, not a crash
                        outcome.action_error = str(exc).strip().splitlines()[0][:300]
                    ui.settle()
                    ui.shot(visit.name)
                    outcome.shown = ui.visible_errors()
                    outcome.text = _visible_text(ui)
                    for problem in ui.network.problems(expected=True):
                        outcome.problems.setdefault(
                            _key(problem), problem.detail.replace("\n", " ")[:200]
                        )
                    outcome.requests = len(ui.network.exchanges)
                outcomes[visit.name] = outcome
        finally:
            context.close()
    return outcomes


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report(mg: dict[str, Outcome], stock: dict[str, Outcome]) -> str:
    lines = [
        "# UI survey: metricgate vs stock MLflow 3.17.2",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M:%S')} by `python -m tests.browser.survey`. "
        "Same data on both (tests/browser/uidata.py), "
        "same page actions (tests/browser/uipages.py). Ids are shown as `<id>`.",
        "",
        "## Requests that fail on metricgate but not on stock",
        "",
        "| page | method | path | metricgate | body excerpt |",
        "|---|---|---|---|---|",
    ]
    only_mg = 0
    for name, outcome in mg.items():
        theirs = stock.get(name, Outcome()).problems
        for (method, route, what), detail in outcome.problems.items():
            if (method, route, what) in theirs:
                continue
            only_mg += 1
            lines.append(
                f"| {_md(name)} | {method} | `{_md(route)}` | {_md(what)} | {_md(detail)} |"
            )
    if not only_mg:
        lines.append("| (none) | | | | |")
    lines += [
        "",
        "## Page actions and error banners",
        "",
        "| page | metricgate | stock |",
        "|---|---|---|",
    ]
    for name, outcome in mg.items():
        other = stock.get(name, Outcome())

        def state(o: Outcome) -> str:
            parts = []
            if o.action_error:
                parts.append(f"action failed: {o.action_error}")
            if o.shown:
                parts.append("shown: " + "; ".join(o.shown))
            return _md(" / ".join(parts) or f"ok ({o.requests} requests)")

        lines.append(f"| {_md(name)} | {state(outcome)} | {state(other)} |")
    lines += ["", "## Visible text that differs (ids, times, colours and locations normalised)", ""]
    differing = 0
    for name, outcome in mg.items():
        other = stock.get(name, Outcome())
        diff = list(
            difflib.unified_diff(other.text, outcome.text, "stock", "metricgate", n=1, lineterm="")
        )[2:]
        if diff:
            differing += 1
            shown_diff = diff[:30] + (
                [f"... {len(diff) - 30} more lines"] if len(diff) > 30 else []
            )
            lines += [f"### {name}", "", "```diff", *shown_diff, "```", ""]
    if not differing:
        lines.append("(none)")
    lines += [
        "",
        "## Failing on both (stock's own behaviour, for reference)",
        "",
        "| page | method | path | status |",
        "|---|---|---|---|",
    ]
    for name, outcome in mg.items():
        for key in outcome.problems:
            if key in stock.get(name, Outcome()).problems:
                lines.append(f"| {_md(name)} | {key[0]} | `{_md(key[1])}` | {_md(key[2])} |")
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def metricgate_server(tmp: Path) -> Iterator[str]:
    with devservices.temporary_postgres() as pg, devservices.temporary_redis() as redis:
        devservices.create_database(pg, "metricgate")
        port = devservices.find_free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("METRICGATE_")}
        env.update(
            METRICGATE_DATABASE_URL=pg.url("metricgate"),
            METRICGATE_REDIS_URL=redis.url,
            METRICGATE_ARTIFACTS_URI=f"file://{tmp}/mg-artifacts",
        )
        cmd = [
            sys.executable,
            "-m",
            "metricgate",
            "serve",
            "--migrate",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        url = f"http://127.0.0.1:{port}"
        with running_process(cmd, env, tmp / "metricgate.log", url + "/health"):
            yield url


@contextlib.contextmanager
def stock_server(tmp: Path) -> Iterator[str]:
    root = tmp / "stock"
    root.mkdir()
    with stock_mlflow_server(root) as url:
        yield url


def _populate(url: str, tmp: Path) -> Populated:
    import mlflow
    from mlflow.tracking import fluent

    os.environ["MLFLOW_TRACKING_URI"] = url
    try:
        return uidata.populate(url, str(tmp))
    finally:
        fluent._active_experiment_id = (
            None  # set_experiment's global; the next server has its own ids
        )
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.browser.survey",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/ui-survey.md"))
    parser.add_argument(
        "--shots", type=Path, default=None, help="save a screenshot per page and server here"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="ui-survey-") as tmp_name:
        tmp = Path(tmp_name)
        with metricgate_server(tmp) as mg_url, stock_server(tmp) as stock_url:
            mg_data = _populate(mg_url, tmp)
            stock_data = _populate(stock_url, tmp)
            with sync_playwright() as playwright:
                browser = pages.launch(playwright)
                try:
                    mg = survey(browser, mg_data, args.shots / "metricgate" if args.shots else None)
                    stock = survey(
                        browser, stock_data, args.shots / "stock" if args.shots else None
                    )
                finally:
                    browser.close()
    text = report(mg, stock)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
