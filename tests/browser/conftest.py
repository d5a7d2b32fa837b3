"""Browser-test fixtures: one live ``metricgate serve`` per module, populated once, and headless Chromium.

The server, its database and the data written through the mlflow client are module-scoped: the
pages only read, so every test looks at the same sweep (about 5 s to write) instead of its own.
The live-refresh test writes to an experiment of its own.

Chromium is Debian's package (``scripts/test.sh`` installs it through ``metricgate.devservices``).
Where it is missing, the tests fail as root (the install should have worked) and are skipped
otherwise (a developer machine without root cannot apt-get it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest
from tests.browser.uidata import Populated, populate
from tests.browser.uipages import CHROMIUM, UiSession, launch, new_context, ui_session
from tests.conftest import LiveServer, _mlflow_pointed_at

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

REPO = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    """Where screenshots go: $METRICGATE_TEST_ARTIFACTS_DIR/ui, else .test-artifacts/ui (git-ignored)."""
    root = os.environ.get("METRICGATE_TEST_ARTIFACTS_DIR")
    return (Path(root) if root else REPO / ".test-artifacts") / "ui"


def _unavailable(reason: str) -> NoReturn:
    message = f"{reason}; run `python3 scripts/devservices.py install` (as root it apt-get installs chromium)"
    if os.geteuid() == 0:
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Chromium's path; skips (not root) or fails (root) here, before any server starts, without it."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("the playwright package is not installed (it is in the `test` extra)")
    if not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} not found")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser(chromium: Path, ui_server: str) -> Iterator[Browser]:
    """Headless Chromium (Debian's /usr/bin/chromium through Playwright; never a downloaded browser).

    Playwright's sync API keeps an event loop running in this thread until it stops, and
    pytest-asyncio cannot run the async fixtures' setup or teardown inside a running loop: hence
    the dependency on ``ui_server``, which sets those up before and tears them down after.
    """
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch(playwright)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def ui_server(module_live_server: LiveServer) -> str:
    """Base URL of the module's ``metricgate serve`` process (its own database; tests/conftest.py)."""
    return module_live_server.url


@pytest.fixture(scope="module")
def ui_mlflow(ui_server: str) -> Iterator[str]:
    """The mlflow client pointed at ``ui_server`` for the whole module."""
    with (
        pytest.MonkeyPatch.context() as monkeypatch,
        _mlflow_pointed_at(ui_server, monkeypatch) as url,
    ):
        yield url


@pytest.fixture(scope="module")
def ui_data(ui_mlflow: str, tmp_path_factory: pytest.TempPathFactory) -> Populated:
    """The sweep, artifacts, logged models and registered versions, written once through mlflow."""
    return populate(ui_mlflow, str(tmp_path_factory.mktemp("ui-data")))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.stash[_FAILED] = report.failed


_FAILED = pytest.StashKey[bool]()


@pytest.fixture(scope="module")
def browser_context(browser: Browser) -> Iterator[BrowserContext]:
    """One context for the module's tabs: the UI bundle is downloaded and compiled once."""
    context = new_context(browser)
    try:
        yield context
    finally:
        context.close()


@pytest.fixture
def ui(
    browser_context: BrowserContext, ui_server: str, request: pytest.FixtureRequest
) -> Iterator[UiSession]:
    """A new tab on the UI; its screenshots go to ``artifacts_dir()/<test name>/`` (emptied first)."""
    shots = artifacts_dir() / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    with ui_session(browser_context, ui_server, shots) as session:
        yield session
        if request.node.stash.get(_FAILED, False):
            session.shot("at-failure")
