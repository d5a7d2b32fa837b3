"""Headless Chromium on MLflow's web UI: the browser, a network log, and what each page shows.

Shared by the browser tests (``test_ui_pages.py``, against metricgate) and the survey
(``survey.py``, metricgate side by side with stock MLflow), so both click the same way. Each page
function navigates, does what a person would do (expand, sort, filter, click a file), waits for the
content to appear and returns what is visible; the tests assert on it, the survey only records
which requests failed on the way.

Chromium is Debian's ``chromium`` package driven through Playwright's pip package with
``executable_path``: no browser is ever downloaded (``playwright install`` is never run).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request, Response
    from tests.browser.uidata import Populated

CHROMIUM = Path(os.environ.get("METRICGATE_TEST_CHROMIUM", "/usr/bin/chromium"))
# What works on a headless server without a GPU or network: no sandbox (root, containers), no
# QUIC, no background calls home. Playwright gives every launch a new, empty user-data-dir.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1400, "height": 900}
TIMEOUT_MS = 15_000  # for content to appear; a healthy page needs well under a second

# A returning user of the classic pages: "Model training" mode, and none of the first-visit GenAI
# popovers (the assistant panel, the detect-issues hint) covering the page. The UI keeps these in
# localStorage as JSON under "<key>_v<version>".
UI_PREFERENCES = {
    "mlflow.workflowType_v1": "machine_learning",
    "mlflow.assistant.panelOpen_v1": False,
    "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": True,
    "mlflow.detectIssues.guidanceShown_v1": True,
}
# Run at each document load of a tab (once: later routes only change the hash). Clearing first
# makes every tab start from the same state, although the tabs of a context share localStorage,
# where the UI also keeps each experiment's last view (search filter, sort, chart mode).
_FRESH_STORAGE_SCRIPT = "if (window.top === window) localStorage.clear();"
_PREFERENCES_SCRIPT = (
    "if (window.top === window) "
    f"for (const [k, v] of Object.entries({json.dumps(UI_PREFERENCES)})) "
    "localStorage.setItem(k, JSON.stringify(v));"
)

# Responses that are errors on stock MLflow 3.17.2 too, and that the UI expects: without
# authentication there is no current user (404), and the UI then shows no user menu.
EXPECTED_ERRORS = {("GET", "/ajax-api/2.0/mlflow/users/current", 404)}

# Visible signs of failure: du-bois (MLflow's design system) error alerts and toast notifications,
# and the texts of the UI's error boundaries and failed-request banners.
_ERROR_SELECTORS = (
    '[role="alert"][class*="-alert-error"]',
    '[class*="-notification-notice"]',
    '[class*="-message-error"]',
)
_ERROR_TEXTS = re.compile(
    r"Something went wrong|Response not successful|Request failed|Internal server error", re.I
)


def chromium_launch_args() -> dict[str, Any]:
    return {"executable_path": str(CHROMIUM), "headless": True, "args": list(CHROMIUM_ARGS)}


@dataclass
class Exchange:
    """One same-origin request the page made, with its outcome."""

    method: str
    url: str
    path: str  # path and query, without the origin
    status: int | None = None  # None: no response (see failure)
    failure: str | None = None
    response: Response | None = None
    request_body: str = ""

    @property
    def route(self) -> str:
        return self.path.split("?", 1)[0]

    def body_excerpt(self, limit: int = 300) -> str:
        if self.response is None:
            return self.failure or ""
        try:
            return self.response.text()[:limit]
        except Exception as exc:  # the body is gone (page navigated) or not text
            return f"<body unavailable: {exc}>"[:limit]

    def graphql_errors(self) -> list[str]:
        """Messages of a GraphQL reply's ``errors`` and ``apiError`` entries (HTTP 200 either way)."""
        if self.route != "/graphql" or self.response is None or self.status != 200:
            return []
        try:
            payload = self.response.json()
        except Exception as exc:
            return [f"not JSON: {exc}"]
        messages = [str(e.get("message", e)) for e in payload.get("errors") or []]

        def api_errors(node: Any) -> Iterator[str]:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key == "apiError" and value:
                        yield f"apiError {value.get('code')}: {value.get('message')}"
                    else:
                        yield from api_errors(value)
            elif isinstance(node, list):
                for item in node:
                    yield from api_errors(item)

        return messages + list(api_errors(payload.get("data")))

    def operation(self) -> str:
        """The GraphQL operation name, or '' for other requests."""
        if self.route != "/graphql":
            return ""
        try:
            return str(json.loads(self.request_body).get("operationName") or "")
        except ValueError:
            return ""


@dataclass
class Problem:
    exchange: Exchange
    what: str  # e.g. "404", "net::ERR_CONNECTION_REFUSED", "GraphQL error"
    detail: str

    def __str__(self) -> str:
        op = self.exchange.operation()
        where = f"{self.exchange.method} {self.exchange.path[:160]}{f' ({op})' if op else ''}"
        return f"{where} -> {self.what}: {self.detail[:300]}"


class NetworkLog:
    """Every same-origin request of a page: what was asked, what came back, what is in flight."""

    def __init__(self, page: Page, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.exchanges: list[Exchange] = []
        self._by_request: dict[int, Exchange] = {}
        self._pending: dict[int, float] = {}  # request -> when it was sent
        self.last_activity = time.monotonic()
        page.on("request", self._on_request)
        page.on("response", self._on_response)
        page.on("requestfailed", self._on_failed)
        page.on("requestfinished", self._on_finished)

    def _ours(self, url: str) -> bool:
        return url.startswith(self.base_url + "/")

    def _on_request(self, request: Request) -> None:
        if not self._ours(request.url):
            return
        path = request.url[len(self.base_url) :]
        exchange = Exchange(request.method, request.url, path, request_body=request.post_data or "")
        self._by_request[id(request)] = exchange
        self.exchanges.append(exchange)
        if not path.startswith("/static-files/"):  # the UI's own code: the content waits cover it
            self._pending[id(request)] = self.last_activity = time.monotonic()

    @property
    def in_flight(self) -> int:
        """API requests sent in the last 5 s still waiting for their response.

        Older ones do not count: a request that hangs is caught by the content waits, and settling
        must not wait for it.
        """
        recent = time.monotonic() - 5.0
        return sum(1 for sent in self._pending.values() if sent > recent)

    def _answered(self, request: Request) -> Exchange | None:
        self._pending.pop(id(request), None)
        self.last_activity = time.monotonic()
        return self._by_request.get(id(request))

    def _on_response(self, response: Response) -> None:
        exchange = self._answered(response.request)
        if exchange is not None:
            exchange.status = response.status
            exchange.response = response

    def _on_finished(self, request: Request) -> None:
        self._answered(request)

    def _on_failed(self, request: Request) -> None:
        exchange = self._answered(request)
        if exchange is not None:
            exchange.failure = request.failure or "failed"

    def mark(self) -> int:
        return len(self.exchanges)

    def since(self, mark: int) -> list[Exchange]:
        return self.exchanges[mark:]

    def problems(self, since: int = 0, *, expected: bool = False) -> list[Problem]:
        """4xx/5xx responses, failed requests, GraphQL errors.

        Leaves out what stock MLflow answers the same way (``EXPECTED_ERRORS``) unless ``expected``.
        """
        found: list[Problem] = []
        for exchange in self.exchanges[since:]:
            if exchange.failure is not None:
                # The UI cancels requests it no longer needs (a page left, a newer search): not a failure.
                if "ERR_ABORTED" not in exchange.failure:
                    found.append(Problem(exchange, exchange.failure, ""))
                continue
            if exchange.status is None:
                continue
            known = (exchange.method, exchange.route, exchange.status) in EXPECTED_ERRORS
            if exchange.status >= 400 and (expected or not known):
                found.append(Problem(exchange, str(exchange.status), exchange.body_excerpt()))
            for message in exchange.graphql_errors():
                found.append(Problem(exchange, "GraphQL error", message))
        return found


@dataclass
class UiSession:
    """One browser tab on the UI of ``base_url``, with its network log and screenshots."""

    page: Page
    base_url: str
    network: NetworkLog
    screenshot_dir: Path | None = None
    shots: list[Path] = field(default_factory=list)

    def goto(self, route: str) -> None:
        """Open a hash route (``#/experiments/1/runs``); the bundle is loaded once, later routes
        only change the hash."""
        self.page.goto(f"{self.base_url}/{route}")

    def settle(self, quiet_ms: int = 500, max_ms: int = 10_000) -> None:
        """Wait until no request of ours has been in flight for ``quiet_ms`` (the UI polls, so never "networkidle")."""
        deadline = time.monotonic() + max_ms / 1000
        while time.monotonic() < deadline:
            idle = (
                self.network.in_flight == 0
                and time.monotonic() - self.network.last_activity >= quiet_ms / 1000
            )
            if idle:
                return
            self.page.wait_for_timeout(50)

    def visible_errors(self) -> list[str]:
        """Texts of error banners, toasts and error pages currently shown."""
        found: list[str] = []
        for selector in _ERROR_SELECTORS:
            for element in self.page.locator(selector).all():
                if element.is_visible():
                    found.append(element.inner_text().strip()[:300] or selector)
        body = self.page.locator("body").inner_text()
        for match in _ERROR_TEXTS.finditer(body):
            line = next((ln for ln in body.splitlines() if match.group(0) in ln), match.group(0))
            if line.strip()[:300] not in found:
                found.append(line.strip()[:300])
        return found

    def shot(self, name: str) -> Path | None:
        if self.screenshot_dir is None:
            return None
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        path = (
            self.screenshot_dir
            / f"{len(self.shots):02d}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        )
        self.page.screenshot(path=str(path))
        self.shots.append(path)
        return path


def new_context(
    browser: Browser,
    *,
    fake_clock: bool = False,
    preferences: bool = True,
    credentials: tuple[str, str] | None = None,
) -> BrowserContext:
    """A browser context (no cookies, no storage but the UI preferences, unless ``preferences`` is off).

    Tabs of one context share its HTTP cache, so the multi-MB bundle is fetched once per context.
    ``fake_clock`` installs Playwright's clock before the UI loads, so a test can fast-forward to
    the UI's 30 s auto-refresh instead of waiting for it. ``credentials`` (username, password)
    answer the server's Basic challenge the way a person answers the browser's login prompt:
    Chromium sends them only after a 401 with ``WWW-Authenticate: Basic``.
    """
    extra: dict[str, Any] = {}
    if credentials is not None:
        extra["http_credentials"] = {"username": credentials[0], "password": credentials[1]}
    context = browser.new_context(viewport=VIEWPORT, **extra)  # type: ignore[arg-type]
    context.add_init_script(_FRESH_STORAGE_SCRIPT)
    if preferences:
        context.add_init_script(_PREFERENCES_SCRIPT)
    context.set_default_timeout(TIMEOUT_MS)
    if fake_clock:
        context.clock.install()
    return context


@contextmanager
def ui_session(
    context: BrowserContext, base_url: str, screenshot_dir: Path | None = None
) -> Iterator[UiSession]:
    """A new tab in ``context``, with its own network log; closed at the end."""
    page = context.new_page()
    try:
        yield UiSession(page, base_url.rstrip("/"), NetworkLog(page, base_url), screenshot_dir)
    finally:
        page.close()


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(**chromium_launch_args())


# ---------------------------------------------------------------- pages


def experiments_list(ui: UiSession, data: Populated) -> list[str]:
    """Names in the experiments table."""
    from tests.browser import uidata

    ui.goto("#/experiments")
    ui.page.get_by_role("link", name=uidata.EXPERIMENT, exact=True).wait_for()
    ui.settle()
    return [
        a.inner_text().strip()
        for a in ui.page.locator('a[href*="#/experiments/"]').all()
        if a.inner_text().strip()
    ]


def runs_route(data: Populated) -> str:
    return f"#/experiments/{data.experiment_id}/runs"


_ROWS_JS = """() => Array.from(document.querySelectorAll('.ag-pinned-left-cols-container [role=row][row-id]'))
    .map(row => [Number(row.getAttribute('row-index')), row.getAttribute('row-id'),
                 (row.querySelector('a[href*="/runs/"]')?.innerText || '').trim()])
    .sort((a, b) => a[0] - b[0]).map(([, id, name]) => [id, name])"""


def table_rows(ui: UiSession) -> list[tuple[str, str]]:
    """(run id, run name) of the runs table's rows, top to bottom (ag-grid's pinned name column).

    Read in one evaluation: ag-grid re-renders rows while the table updates.
    """
    return [(run_id, name) for run_id, name in ui.page.evaluate(_ROWS_JS)]


def _wait_for_rows(
    ui: UiSession, predicate: Callable[[list[tuple[str, str]]], bool], what: str
) -> list[tuple[str, str]]:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    rows = table_rows(ui)
    while not predicate(rows):
        if time.monotonic() > deadline:
            raise AssertionError(f"runs table never showed {what}; it shows {rows}")
        ui.page.wait_for_timeout(100)
        rows = table_rows(ui)
    ui.settle()
    return table_rows(ui)


def matching_runs_count(ui: UiSession) -> int:
    """The "N matching runs" under the runs table."""
    text = ui.page.get_by_text(re.compile(r"\d+\s+matching runs")).first.inner_text()
    return int(re.search(r"(\d+)", text).group(1))  # type: ignore[union-attr]


def runs_table(ui: UiSession, data: Populated) -> list[tuple[str, str]]:
    """The runs table as it opens: the top-level runs (children collapsed under their parent)."""
    ui.goto(runs_route(data))
    return _wait_for_rows(
        ui, lambda rows: data.parent_run_id in {r for r, _ in rows}, "the sweep's parent run"
    )


def expand_parent(ui: UiSession, data: Populated) -> list[tuple[str, str]]:
    """Click the parent run's expander: its child runs appear under it."""
    row = ui.page.locator(
        f'.ag-pinned-left-cols-container [role=row][row-id="{data.parent_run_id}"]'
    )
    row.locator('button[data-component-id*="runnamecellrenderer"]').first.click()
    children = set(data.trial_run_ids.values())
    return _wait_for_rows(ui, lambda rows: children <= {r for r, _ in rows}, "the child runs")


def sort_by_metric(ui: UiSession, data: Populated, metric: str) -> list[tuple[str, str]]:
    """Sort: <metric> from the sort menu (descending is the menu's default)."""
    before = table_rows(ui)
    ui.page.locator('[data-testid="sort-select-dropdown"]').click()
    ui.page.locator(f'[data-testid="sort-select-{metric}"]').click()
    ui.page.keyboard.press("Escape")
    ui.page.wait_for_url(re.compile(r"orderByKey=metrics\.%60" + re.escape(metric)))
    return _wait_for_rows(
        ui, lambda rows: rows != before or len(rows) == len(before), f"a new order by {metric}"
    )


def search_runs(
    ui: UiSession, data: Populated, query: str, expect_count: int
) -> list[tuple[str, str]]:
    """Type a filter into the search box and press Enter."""
    box = ui.page.locator('[data-testid="search-box"]')
    box.fill(query)
    box.press("Enter")
    ui.page.wait_for_url(re.compile("searchFilter=" + re.escape(quote(query, safe="")[:8])))
    return _wait_for_rows(
        ui, lambda rows: len(rows) == expect_count, f"{expect_count} runs for {query!r}"
    )


_CARDS_JS = """() => Array.from(
    document.querySelectorAll('[data-testid="experiment-view-compare-runs-card"]')).map(card => {
    const plot = card.querySelector('.js-plotly-plot');
    const drawn = card.querySelectorAll('path.js-line, .bars path, .points path').length;
    const points = plot && plot.data ? Math.max(0, ...plot.data.map(t => (t.x || []).length)) : 0;
    return [(card.innerText || '').trim().split('\\n')[0], drawn > 0 ? points : 0];
})"""


def chart_cards(ui: UiSession) -> dict[str, int]:
    """Title -> points in the largest series of each chart card, 0 where nothing is drawn.

    Points come from the plotly element's own data (plotly simplifies the SVG path of a smooth
    line, so the path's segments undercount); "drawn" means the SVG has a line, bar or marker.
    """
    return {title: points for title, points in ui.page.evaluate(_CARDS_JS)}


def wait_for_charts(ui: UiSession, metrics: set[str], min_points: int) -> dict[str, int]:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    cards = chart_cards(ui)
    while not all(cards.get(m, 0) >= min_points for m in metrics):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"charts of {sorted(metrics)} never drew {min_points}+ points: {cards}"
            )
        ui.page.wait_for_timeout(100)
        cards = chart_cards(ui)
    ui.settle()
    return chart_cards(ui)


def charts_view(
    ui: UiSession, data: Populated, metrics: set[str], min_points: int
) -> dict[str, int]:
    """The runs page's chart view (the second view-mode button)."""
    ui.goto(runs_route(data))
    ui.page.locator("label:has(input[value=CHART])").click()
    ui.page.wait_for_url(re.compile("compareRunsMode=CHART"))
    return wait_for_charts(ui, metrics, min_points)


def run_route(data: Populated, run_id: str, tab: str = "") -> str:
    return f"#/experiments/{data.experiment_id}/runs/{run_id}" + (f"/{tab}" if tab else "")


def run_overview(ui: UiSession, data: Populated, run_id: str, run_name: str) -> str:
    """The run page's overview tab; returns its main text."""
    ui.goto(run_route(data, run_id))
    ui.page.get_by_role("heading", name=run_name).wait_for()
    ui.page.get_by_text("Run ID", exact=True).wait_for()
    ui.settle()
    return ui.page.locator("main").inner_text()


def run_model_metrics(
    ui: UiSession, data: Populated, run_id: str, metrics: set[str], min_points: int
) -> dict[str, int]:
    ui.goto(run_route(data, run_id, "model-metrics"))
    return wait_for_charts(ui, metrics, min_points)


@dataclass
class ArtifactView:
    text: str  # what the text preview shows
    image_size: tuple[int, int]  # natural size of the previewed image (0, 0: not loaded)


def run_artifacts(
    ui: UiSession, data: Populated, run_id: str, text_file: str, image_file: str
) -> ArtifactView:
    """The artifacts tab: open the text file, then the image, from the file tree."""
    ui.goto(run_route(data, run_id, "artifacts"))

    def open_file(path: str) -> None:
        *dirs, name = path.split("/")
        for directory in dirs:
            node = ui.page.get_by_text(directory, exact=True).first
            node.wait_for()
            if not ui.page.get_by_text(name, exact=True).count():
                node.click()
        ui.page.get_by_text(name, exact=True).first.click()

    open_file(text_file)
    preview = ui.page.locator(".mlflow-artifact-right pre code")
    preview.first.wait_for()
    ui.settle()
    text = preview.first.inner_text()
    ui.shot("artifact-text")
    open_file(image_file)
    # The UI fetches the file and shows it from a blob: URL.
    image = ui.page.locator('.mlflow-artifact-right img[src^="blob:"]').first
    image.wait_for()
    ui.page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0", arg=image.element_handle()
    )
    size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    ui.settle()
    return ArtifactView(text=text, image_size=(int(size[0]), int(size[1])))


def compare_route(data: Populated, run_ids: list[str]) -> str:
    runs = quote(json.dumps(run_ids, separators=(",", ":")))
    experiments = quote(json.dumps([data.experiment_id], separators=(",", ":")))
    return f"#/compare-runs?runs={runs}&experiments={experiments}"


@dataclass
class CompareView:
    heading: str
    axes: list[str]  # parallel coordinates axis titles
    lines: int  # runs drawn: values per axis in the plot's data
    text: str


def compare_runs(ui: UiSession, data: Populated, run_ids: list[str]) -> CompareView:
    ui.goto(compare_route(data, run_ids))
    ui.page.get_by_text(re.compile(rf"Comparing {len(run_ids)} Runs")).wait_for()
    ui.page.locator(".parcoords text.axis-title").first.wait_for()
    ui.settle()
    axes = [
        t.text_content().strip() for t in ui.page.locator(".parcoords text.axis-title").all()
    ]  # SVG text
    heading = ui.page.get_by_text(re.compile(r"Comparing \d+ Runs")).first.inner_text()
    lines = ui.page.locator(".js-plotly-plot:has(.parcoords)").first.evaluate(
        "el => Math.min(...el.data[0].dimensions.map(d => d.values.length))"
    )
    return CompareView(heading, axes, int(lines), ui.page.locator("main").inner_text())


def logged_models_list(ui: UiSession, data: Populated) -> str:
    ui.goto(f"#/experiments/{data.experiment_id}/models")
    ui.page.locator(f'a[href*="/models/{data.model_ids[-1]}"]').first.wait_for()
    ui.settle()
    return ui.page.locator("main").inner_text()


def logged_model_page(ui: UiSession, data: Populated, model_id: str) -> str:
    ui.goto(f"#/experiments/{data.experiment_id}/models/{model_id}")
    ui.page.get_by_text(model_id).first.wait_for()
    ui.settle()
    return ui.page.locator("main").inner_text()


def logged_model_artifacts(ui: UiSession, data: Populated, model_id: str, file_name: str) -> str:
    """The logged model's artifacts tab: click ``file_name`` (top level) and return its preview."""
    ui.goto(f"#/experiments/{data.experiment_id}/models/{model_id}/artifacts")
    ui.page.get_by_text(file_name, exact=True).first.click()
    preview = ui.page.locator(".mlflow-artifact-right pre code")
    preview.first.wait_for()
    ui.settle()
    return preview.first.inner_text()


def registered_models(ui: UiSession, data: Populated) -> str:
    ui.goto("#/models")
    ui.page.get_by_role("link", name=data.model_name, exact=True).wait_for()
    ui.settle()
    return ui.page.locator("main").inner_text()


def registered_model(ui: UiSession, data: Populated) -> str:
    ui.goto(f"#/models/{quote(data.model_name)}")
    ui.page.get_by_role("link", name=f"Version {data.versions[-1]}").first.wait_for()
    ui.settle()
    return ui.page.locator("main").inner_text()


def model_version(ui: UiSession, data: Populated, version: str) -> str:
    """The version page with its schema's inputs expanded."""
    ui.goto(f"#/models/{quote(data.model_name)}/versions/{version}")
    ui.page.get_by_text(f"Version {version}", exact=True).first.wait_for()
    inputs = ui.page.get_by_text(re.compile(r"^Inputs \(\d+\)$")).first
    inputs.wait_for()
    inputs.click()
    ui.settle()
    return ui.page.locator("main").inner_text()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")
