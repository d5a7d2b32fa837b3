"""MLflow's web UI with access control on (METRICGATE_AUTH=on, default NO_PERMISSIONS), in headless
Chromium: what ``mlflow server --app-name basic-auth`` gives a browser, metricgate must give too.

The browser is challenged (401, ``WWW-Authenticate: Basic realm="mlflow"``) and answers with
Playwright's ``http_credentials``, as a person answers the login prompt. Then an admin sees every
experiment and model; a reader sees only what they were granted, and a link to anything else shows
the UI's own permission error; the account page (every user) and the admin pages (admins: users,
roles, direct grants) load and their actions work against metricgate's auth API.

One server and one browser for the module, and one tab per user (in a browser context with that
user's credentials) that the user's tests share, so the bundle loads once per user. Every test fails
on a 4xx/5xx the stock server would not answer the same way (each names the refusals it expects)
and on an uncaught script error.
Screenshots land in ``.test-artifacts/ui/<test>/`` (or $METRICGATE_TEST_ARTIFACTS_DIR/ui).
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from tests.api.auth_support import FAST_COST_ENV
from tests.browser import uipages as pages
from tests.browser.conftest import artifacts_dir
from tests.browser.uipages import UiSession
from tests.conftest import _serve, _server_env

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.timeout(90)

ADMIN = "admin"
ADMIN_PASSWORD = "ui-admin-password-0123"
READER = "ui-reader"  # READ on the shared experiment and the shared model, nothing else
ANALYST = "ui-analyst"  # gets a role through the admin page
NEWBIE = "ui-newbie"  # created through the admin page
PASSWORD = "ui-user-password-0123"
SHARED_EXPERIMENT, SECRET_EXPERIMENT = "ui-shared-exp", "ui-secret-exp"
SHARED_MODEL, SECRET_MODEL = "ui-shared-model", "ui-secret-model"

# Refused on stock MLflow too, and handled by the UI without a visible error. With workspaces off
# stock answers this one 503 ("disabled because the server is running without workspaces
# support"); the role and user pickers of the admin pages ask for it and fall back to "default".
ALWAYS_EXPECTED = {("GET", "/ajax-api/3.0/mlflow/workspaces", 404)}
# The routes MLflow's auth app keeps for admins and role admins, which a page linked to a plain user
# must never call (metricgate makes roles/get and roles/permissions/list role-admin only, stricter
# than stock, and users/list admin-only).
ADMIN_ONLY_ROUTES = {
    "/ajax-api/2.0/mlflow/users/list",
    "/ajax-api/3.0/mlflow/roles/get",
    "/ajax-api/3.0/mlflow/roles/list",
    "/ajax-api/3.0/mlflow/roles/permissions/list",
    "/ajax-api/3.0/mlflow/roles/users/list",
}


@dataclass(frozen=True)
class World:
    url: str
    shared_id: str
    secret_id: str
    secret_run: str
    role_id: int  # a role nobody holds

    def call(
        self, method: str, path: str, user: str = ADMIN, password: str | None = None, **kw: object
    ) -> requests.Response:
        secret = password or (ADMIN_PASSWORD if user == ADMIN else PASSWORD)
        return requests.request(method, self.url + path, auth=(user, secret), timeout=20, **kw)  # type: ignore[arg-type]

    def ok(self, method: str, path: str, **kw: object) -> dict[str, object]:
        reply = self.call(method, path, **kw)
        assert reply.status_code == 200, (method, path, reply.status_code, reply.text)
        return dict(reply.json())


@pytest.fixture(scope="module")
def ui_server(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """This module's ``metricgate serve``: auth on, nothing readable without a grant."""
    home = tmp_path_factory.mktemp("ui-auth")
    env = _server_env(module_db_url, module_redis_url, home / "artifacts")
    env.update(
        METRICGATE_AUTH="on",
        METRICGATE_AUTH_ADMIN_USERNAME=ADMIN,
        METRICGATE_AUTH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        METRICGATE_AUTH_DEFAULT_PERMISSION="NO_PERMISSIONS",
        **FAST_COST_ENV,
    )
    with _serve(env, home / "live-server.log") as base_url:
        yield base_url


@pytest.fixture(scope="module")
def world(ui_server: str) -> World:
    """Users, two experiments with a run each and two models, made by the admin over REST."""
    partial = World(ui_server, "", "", "", 0)
    for name in (READER, ANALYST):
        partial.ok(
            "POST", "/api/2.0/mlflow/users/create", json={"username": name, "password": PASSWORD}
        )
    ids = {}
    runs = {}
    for name in (SHARED_EXPERIMENT, SECRET_EXPERIMENT):
        ids[name] = str(
            partial.ok("POST", "/api/2.0/mlflow/experiments/create", json={"name": name})[
                "experiment_id"
            ]
        )
        run = partial.ok(
            "POST",
            "/api/2.0/mlflow/runs/create",
            json={"experiment_id": ids[name], "run_name": f"{name}-run"},
        )
        runs[name] = run["run"]["info"]["run_id"]  # type: ignore[index]
    for name in (SHARED_MODEL, SECRET_MODEL):
        partial.ok("POST", "/api/2.0/mlflow/registered-models/create", json={"name": name})
    for resource_type, resource_id in (
        ("experiment", ids[SHARED_EXPERIMENT]),
        ("registered_model", SHARED_MODEL),
    ):
        partial.ok(
            "POST",
            "/api/3.0/mlflow/users/permissions/grant",
            json={
                "username": READER,
                "resource_type": resource_type,
                "resource_id": resource_id,
                "permission": "READ",
            },
        )
    role = partial.ok(
        "POST", "/api/3.0/mlflow/roles/create", json={"workspace": "default", "name": "ui-ops"}
    )
    return World(
        ui_server,
        ids[SHARED_EXPERIMENT],
        ids[SECRET_EXPERIMENT],
        runs[SECRET_EXPERIMENT],
        int(role["role"]["id"]),  # type: ignore[index]
    )


@dataclass
class Tab:
    """A user's tab, kept for the module (the bundle loads once per user); each test looks only
    at what happened since it took the tab (``since``)."""

    ui: UiSession
    crashes: list[str]  # uncaught script errors since the test took the tab
    since: int = 0  # the network log's mark when the test took the tab

    @property
    def page(self) -> Page:
        return self.ui.page

    def open(self, route: str, wait_for: Locator | None = None) -> None:
        self.ui.goto(route)
        if wait_for is not None:
            wait_for.wait_for()
        self.ui.settle()

    def main(self) -> str:
        return self.page.locator("main").inner_text()

    def problems(self, *expected: tuple[str, str, int]) -> list[str]:
        """Refused or failed requests other than ``expected`` (method, route, status), and crashes."""
        allowed = ALWAYS_EXPECTED | set(expected)
        found = [
            str(p)
            for p in self.ui.network.problems(self.since, expected=True)
            if (p.exchange.method, p.exchange.route, p.exchange.status) not in allowed
        ]
        return found + [f"script error: {c}" for c in self.crashes]

    def routes(self) -> set[str]:
        return {e.route for e in self.ui.network.since(self.since)}

    def assert_clean(self, *expected: tuple[str, str, int]) -> None:
        problems = self.problems(*expected)
        shown = self.ui.visible_errors()
        assert not problems and not shown, f"problems: {problems}\nerrors shown: {shown}"


@pytest.fixture(scope="module")
def tabs(browser: Browser, world: World) -> Iterator[dict[str, Tab]]:
    """Per user, made on first use: a browser context with their credentials, and one tab in it."""
    made: dict[str, Tab] = {}
    try:
        yield made
    finally:
        for opened in made.values():
            opened.page.context.close()


@pytest.fixture
def tab(
    tabs: dict[str, Tab], browser: Browser, world: World, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Tab]]:
    """``tab(username)``: that user's tab (the admin's with the admin's password), screenshots to
    ``artifacts_dir()/<test name>/``."""
    shots = artifacts_dir() / request.node.name
    shutil.rmtree(shots, ignore_errors=True)
    taken: list[Tab] = []
    failed_before = request.session.testsfailed

    def take(username: str) -> Tab:
        if username not in tabs:
            password = ADMIN_PASSWORD if username == ADMIN else PASSWORD
            context = pages.new_context(browser, credentials=(username, password))
            page = context.new_page()
            crashes: list[str] = []
            page.on("pageerror", lambda error: crashes.append(str(error)[:300]))
            tabs[username] = Tab(
                UiSession(page, world.url, pages.NetworkLog(page, world.url)), crashes
            )
        taken.append(tabs[username])
        taken[-1].since = taken[-1].ui.network.mark()
        taken[-1].crashes.clear()
        taken[-1].ui.screenshot_dir = shots
        taken[-1].ui.shots = []
        return taken[-1]

    yield take
    # The call's report is logged before teardown: a new failure is this test's.
    if request.session.testsfailed > failed_before:
        for opened in taken:
            opened.ui.shot("at-failure")


def link(page: Page, name: str) -> Locator:
    return page.get_by_role("link", name=name, exact=True)


# ---------------------------------------------------------------- the challenge


def test_browser_is_challenged_for_basic_credentials(browser: Browser, world: World) -> None:
    context = pages.new_context(browser)
    try:
        page = context.new_page()
        # Headless Chromium has nobody to ask: it gives up on the challenge.
        with pytest.raises(Exception, match="ERR_INVALID_AUTH_CREDENTIALS"):
            page.goto(world.url + "/")
        reply = context.request.get(world.url + "/")
        assert reply.status == 401
        assert reply.headers["www-authenticate"] == 'Basic realm="mlflow"'
        # The UI's own files stay public, as in stock: the challenge guards the data.
        assert context.request.get(world.url + "/static-files/favicon.ico").status == 200
    finally:
        context.close()


# ---------------------------------------------------------------- tracking and registry pages


def test_admin_sees_every_experiment_and_model(tab: Callable[[str], Tab], world: World) -> None:
    t = tab(ADMIN)
    t.open("#/experiments", link(t.page, SECRET_EXPERIMENT))
    t.ui.shot("experiments")
    assert {SHARED_EXPERIMENT, SECRET_EXPERIMENT, "Default"} <= set(t.main().splitlines())

    t.open(f"#/experiments/{world.secret_id}/runs", link(t.page, f"{SECRET_EXPERIMENT}-run"))
    t.open("#/models", link(t.page, SECRET_MODEL))
    t.ui.shot("models")
    assert SHARED_MODEL in t.main()
    t.open(f"#/models/{SECRET_MODEL}", t.page.get_by_role("heading", name=SECRET_MODEL))
    t.assert_clean()


def test_reader_sees_only_what_they_may_read(tab: Callable[[str], Tab], world: World) -> None:
    t = tab(READER)
    t.open("#/experiments", link(t.page, SHARED_EXPERIMENT))
    t.ui.shot("experiments")
    shown = t.main()
    assert SECRET_EXPERIMENT not in shown and "Default" not in shown
    t.open("#/models", link(t.page, SHARED_MODEL))
    assert SECRET_MODEL not in t.main()
    t.open(f"#/experiments/{world.shared_id}/runs", link(t.page, f"{SHARED_EXPERIMENT}-run"))
    t.assert_clean()

    # A link to an experiment without a grant: the UI's permission page, from the 403s stock
    # gives too (experiments/get needs READ; search-datasets READ on every id).
    t.open(
        f"#/experiments/{world.secret_id}/runs", t.page.get_by_text("Permission denied", exact=True)
    )
    t.ui.shot("secret-experiment")
    assert "You don't have permissions to open requested experiment." in t.main()
    assert f"{SECRET_EXPERIMENT}-run" not in t.page.locator("body").inner_text()
    # A model without a grant: the registry's own "Permission denied for <name>".
    t.open(f"#/models/{SECRET_MODEL}", t.page.get_by_text(f"Permission denied for {SECRET_MODEL}"))
    t.ui.shot("secret-model")
    # A run link ("View run at ..."): GraphQL's mlflowGetRun is null when denied, as in stock,
    # and the run page keeps showing its loading state; nothing of the run comes through.
    t.open(
        f"#/experiments/{world.secret_id}/runs/{world.secret_run}",
        t.page.get_by_text(re.compile("Run page loading|Permission denied")).first,
    )
    assert f"{SECRET_EXPERIMENT}-run" not in t.page.locator("body").inner_text()
    assert not t.problems(
        ("GET", "/ajax-api/2.0/mlflow/experiments/get", 403),
        ("POST", "/ajax-api/2.0/mlflow/experiments/search-datasets", 403),
        ("GET", "/ajax-api/2.0/mlflow/registered-models/get", 403),
    )


# ---------------------------------------------------------------- the account page


def test_account_page_menu_and_logout(tab: Callable[[str], Tab], world: World) -> None:
    t = tab(READER)
    t.open("#/account", t.page.get_by_text(f"Logged in as {READER}"))
    t.page.get_by_role("tab", name="Permissions").click()
    rows = t.page.get_by_role("row")
    rows.filter(has_text=f"experiment:{world.shared_id}").wait_for()
    t.ui.settle()
    t.ui.shot("account-permissions")
    assert rows.filter(has_text=f"experiment:{world.shared_id}").inner_text().split() == [
        f"experiment:{world.shared_id}",
        "READ",
        "Direct",
    ]
    assert rows.filter(has_text=f"registered_model:{SHARED_MODEL}").count() == 1

    # The account menu offers a plain user no admin page.
    t.page.get_by_role("button", name=f"Account menu for {READER}").click()
    items = [item.inner_text() for item in t.page.get_by_role("menuitem").all()]
    assert items == ["Account", "Logout"], items
    t.assert_clean()
    assert not t.routes() & ADMIN_ONLY_ROUTES, t.routes() & ADMIN_ONLY_ROUTES

    # Logout replaces the browser's cached credentials with throwaway ones: it needs the 401.
    with t.page.expect_response(
        lambda r: r.url.endswith("/users/current") and r.status == 401
    ) as answer:
        t.page.get_by_role("menuitem", name="Logout").click()
    assert answer.value.headers["www-authenticate"] == 'Basic realm="mlflow"'
    t.page.wait_for_url(re.compile(r"/#?/?$"))


def test_change_own_password(tab: Callable[[str], Tab], world: World) -> None:
    new_password = "ui-changed-password-4567"
    current = "/api/2.0/mlflow/users/current"
    t = tab(READER)
    t.open("#/account", t.page.get_by_text(f"Logged in as {READER}"))
    t.page.get_by_role("button", name="Change password").click()
    dialog = t.page.get_by_role("dialog")
    dialog.locator('[data-component-id="account.current_password"]').fill(PASSWORD)
    dialog.locator('[data-component-id="account.new_password"]').fill(new_password)
    dialog.locator('[data-component-id="account.confirm_password"]').fill(new_password)
    try:
        with t.page.expect_response(
            lambda r: r.url.endswith("/users/current") and r.status == 401
        ) as out:
            with t.page.expect_response(lambda r: r.url.endswith("/update-password")) as changed:
                dialog.locator(
                    '[data-component-id="account.change_password_modal.footer.ok"]'
                ).click()
            assert changed.value.status == 200, changed.value.text()
        # Then the UI logs out (throwaway credentials, which need the 401) so the browser asks again.
        assert out.value.headers["www-authenticate"] == 'Basic realm="mlflow"'
        assert world.call("GET", current, READER, new_password).ok
        assert world.call("GET", current, READER, PASSWORD).status_code == 401
        assert not t.problems(("GET", "/ajax-api/2.0/mlflow/users/current", 401))
    finally:
        # Back to the password the reader's browser context answers the challenge with, and a
        # fresh load: the logout left the throwaway credentials in the browser's cache. The
        # logout ends by navigating to the root; a reload racing that navigation fails with
        # "not attached to an active page", so wait for it first (it never comes if the test
        # failed before the logout: then the short wait just ends).
        world.ok(
            "PATCH",
            "/api/2.0/mlflow/users/update-password",
            json={"username": READER, "password": PASSWORD},
        )
        with contextlib.suppress(PlaywrightError):
            t.page.wait_for_url(f"{world.url}/", timeout=5_000)
        t.page.goto(f"{world.url}/")


# ---------------------------------------------------------------- the admin pages


def _edit_access(t: Tab, username: str, change: Callable[[Locator], None]) -> None:
    """User page -> Edit access -> ``change`` -> Review changes -> Apply changes."""
    t.open(f"#/admin/users/{username}", t.page.get_by_role("button", name="Edit access"))
    t.page.get_by_role("button", name="Edit access").click()
    dialog = t.page.get_by_role("dialog")
    change(dialog)
    dialog.locator('[data-component-id="admin.edit_access_modal.review"]').click()
    dialog.locator('[data-component-id="admin.edit_access_modal.confirm"]').click()
    dialog.wait_for(state="hidden")
    t.ui.settle()


def _permissions_tab(t: Tab) -> str:
    t.page.get_by_role("tab", name="Permissions").click()
    t.ui.settle()
    return t.main()


def test_admin_creates_grants_revokes_promotes_and_deletes_a_user(
    tab: Callable[[str], Tab], world: World
) -> None:
    t = tab(ADMIN)
    t.open("#/admin", link(t.page, READER))
    assert {ADMIN, READER, ANALYST} <= {a.inner_text() for a in t.page.get_by_role("link").all()}

    t.page.get_by_role("button", name="Create User").click()
    dialog = t.page.get_by_role("dialog")
    dialog.locator('[data-component-id="admin.create_user_modal.username"]').fill(NEWBIE)
    dialog.locator('[data-component-id="admin.create_user_modal.password"]').fill(PASSWORD)
    dialog.locator('[data-component-id="admin.create_user_modal.submit"]').click()
    link(t.page, NEWBIE).wait_for()
    t.ui.shot("user-created")
    assert world.call("GET", "/api/2.0/mlflow/users/current", NEWBIE).ok
    secret = f"/api/2.0/mlflow/experiments/get?experiment_id={world.secret_id}"
    assert world.call("GET", secret, NEWBIE).status_code == 403

    def grant(dialog: Locator) -> None:
        dialog.get_by_role("combobox", name="Experiment, no option selected").click()
        t.page.get_by_role("option").filter(has_text=SECRET_EXPERIMENT).click()
        dialog.locator("#admin-direct-permission-level").click()
        t.page.get_by_role("option", name="EDIT", exact=True).click()
        dialog.locator('[data-component-id="admin.direct_permissions.add"]').click()

    _edit_access(t, NEWBIE, grant)
    shown = _permissions_tab(t)
    t.ui.shot("granted")
    assert f"experiment:{world.secret_id}\nEDIT\nDirect" in shown
    assert world.call("GET", secret, NEWBIE).ok

    def revoke_and_make_admin(dialog: Locator) -> None:
        dialog.get_by_role("button", name=f"Remove experiment {world.secret_id}").click()
        dialog.get_by_role("switch").click()

    _edit_access(t, NEWBIE, revoke_and_make_admin)
    shown = _permissions_tab(t)
    t.ui.shot("revoked-and-admin")
    assert f"experiment:{world.secret_id}" not in shown
    newbie = world.ok("GET", "/api/2.0/mlflow/users/current", user=NEWBIE)["user"]
    assert newbie["is_admin"] is True  # type: ignore[index]
    roles = world.ok("GET", f"/api/3.0/mlflow/users/roles/list?username={NEWBIE}")["roles"]
    assert not [p for r in roles for p in r["permissions"]]  # type: ignore[attr-defined]

    t.open("#/admin", link(t.page, NEWBIE))
    t.page.get_by_role("checkbox", name=f"Select user {NEWBIE}").click()
    t.page.get_by_role("button", name="Delete").click()
    t.page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    link(t.page, NEWBIE).wait_for(state="detached")
    t.ui.settle()
    assert world.call("GET", "/api/2.0/mlflow/users/current", NEWBIE).status_code == 401
    t.assert_clean()


def test_admin_creates_and_edits_a_role(tab: Callable[[str], Tab], world: World) -> None:
    t = tab(ADMIN)
    t.open("#/admin", link(t.page, READER))
    t.page.get_by_role("tab", name="Roles").click()
    t.page.get_by_role("button", name="Create Role").click()
    dialog = t.page.get_by_role("dialog")
    dialog.locator('[data-component-id="admin.create_role_modal.name"]').fill("ui-analysts")
    dialog.locator('[data-component-id="admin.create_role_modal.description"]').fill("first")
    dialog.get_by_role("button", name="Permissions").click()
    dialog.locator('input[name="admin-role-permission-form-scope"][value="specific"]').check()
    dialog.get_by_role("combobox", name="Experiment, no option selected").click()
    t.page.get_by_role("option").filter(has_text=SHARED_EXPERIMENT).click()
    dialog.locator('[data-component-id="admin.role_permissions.add"]').click()
    dialog.get_by_role("button", name="Assign users").click()
    dialog.locator('[aria-label^="Users, multiselectable"]').click()
    t.page.get_by_role("option").filter(has_text=ANALYST).click()
    t.page.keyboard.press("Escape")  # closes the user picker, not the dialog
    dialog.locator('[data-component-id="admin.create_role_modal.submit"]').click()
    link(t.page, "ui-analysts").click()

    t.page.get_by_role("button", name="Edit role").wait_for()
    t.ui.settle()
    t.ui.shot("role")
    assert f"experiment\n{world.shared_id}\nREAD" in t.main()
    t.page.get_by_role("tab", name="Assigned users").click()
    t.page.get_by_role("cell", name=ANALYST, exact=True).wait_for()
    analyst_roles = world.ok("GET", f"/api/3.0/mlflow/users/roles/list?username={ANALYST}")
    assert "ui-analysts" in {r["name"] for r in analyst_roles["roles"]}  # type: ignore[attr-defined]

    t.page.get_by_role("button", name="Edit role").click()
    dialog.locator('[data-component-id="admin.edit_role_modal.description"]').fill("second")
    dialog.locator('[data-component-id="admin.edit_role_modal.review"]').click()
    dialog.locator('[data-component-id="admin.edit_role_modal.confirm"]').click()
    dialog.wait_for(state="hidden")
    t.page.get_by_text("second", exact=True).wait_for()

    t.open("#/admin", link(t.page, READER))
    t.page.get_by_role("tab", name="Roles").click()
    t.page.get_by_role("row").filter(has_text="ui-analysts").get_by_role("checkbox").click()
    t.page.get_by_role("button", name="Delete").click()
    t.page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    link(t.page, "ui-analysts").wait_for(state="detached")
    t.ui.settle()
    analyst_roles = world.ok("GET", f"/api/3.0/mlflow/users/roles/list?username={ANALYST}")
    assert "ui-analysts" not in {r["name"] for r in analyst_roles["roles"]}  # type: ignore[attr-defined]
    t.assert_clean()


def test_plain_user_typing_an_admin_url(tab: Callable[[str], Tab], world: World) -> None:
    """Not linked for a plain user (no "Manage" in the menu), but a typed URL must not crash.

    metricgate refuses both calls (403): users/list is admin-only, roles/get role-admin only.
    Stock, with workspaces off, answers both 200 for any user holding a role in the workspace.
    """
    t = tab(READER)
    t.open(f"#/admin/roles/{world.role_id}", t.page.get_by_text("Permission denied", exact=True))
    t.ui.shot("role")
    t.open("#/admin", t.page.get_by_text("Failed to load users"))
    t.ui.shot("admin")
    assert not t.problems(
        ("GET", "/ajax-api/3.0/mlflow/roles/get", 403),
        ("GET", "/ajax-api/2.0/mlflow/users/list", 403),
    )
