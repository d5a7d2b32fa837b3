"""Every route declares its access rule, and the rules of MLflow's endpoints are MLflow's.

The app is built without I/O (a placeholder service: nothing runs at build time), so the checks
see exactly what ``create_app`` registers: every (method, canonical path) aiohttp holds has one
rule; the rules of the stock endpoints match docs/design-auth.md A4, with any deliberate
difference listed in ``DRIFT`` with its reason; and each ``On(...)`` names a parameter its
handler actually reads (best effort: the name appears quoted in the handler's source or in
the metricgate functions it calls).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Iterator
from typing import Any, cast

import pytest
from aiohttp import web

from metricgate.api import app as app_module
from metricgate.api import (
    artifacts,
    experiments,
    health,
    ingest_status,
    logged_models,
    metrics,
    multipart,
    registry,
    registry_history,
    runs,
    ui_endpoints,
    uploads,
    webhooks,
)
from metricgate.api.app import create_app
from metricgate.api.codec import Fields
from metricgate.api.graphql import ROUTES as GRAPHQL_ROUTES
from metricgate.api.routing import ACCESS_RULES, Route, RuleKey, rule_key
from metricgate.config import Settings
from metricgate.domain.auth.access import (
    AccessRule,
    AllOf,
    Filtered,
    On,
    Public,
    Target,
    Where,
)
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.service import Service

READ, EDIT, MANAGE = Permission.READ, Permission.EDIT, Permission.MANAGE
EXP, RUN, LOGGED, MODEL = (
    Target.EXPERIMENT_ID,
    Target.RUN_ID,
    Target.LOGGED_MODEL_ID,
    Target.MODEL_NAME,
)

# A rule reduced to what A4 states: (kind, target or resource type, level) per part; an AllOf
# is its parts in order, the resource the route acts on first.
Shape = tuple[tuple[str, object, object], ...]


def shape(rule: AccessRule) -> Shape:
    if isinstance(rule, AllOf):
        return tuple(part for r in rule.rules for part in shape(r))
    if isinstance(rule, On):
        return (("On", rule.target, rule.level),)
    if isinstance(rule, Filtered):
        return (("Filtered", rule.resource_type, None),)
    return ((type(rule).__name__, None, None),)


def on(target: Target, level: Permission, *also: tuple[Target, Permission]) -> Shape:
    return (("On", target, level), *(("On", t, lv) for t, lv in also))


ANY_USER: Shape = (("Authenticated", None, None),)
ADMIN: Shape = (("Admin", None, None),)
PUBLIC: Shape = (("Public", None, None),)


def filtered(resource_type: ResourceType) -> Shape:
    return (("Filtered", resource_type, None),)


def _mlflow(method: str, path: str) -> list[RuleKey]:
    return [(method, f"{prefix}{path}") for prefix in ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow")]


def _artifacts(method: str, path: str) -> list[RuleKey]:
    prefixes = ("/api/2.0/mlflow-artifacts", "/ajax-api/2.0/mlflow-artifacts")
    return [(method, f"{prefix}{path}") for prefix in prefixes]


# MLflow 3.17.2's per-endpoint requirement (docs/design-auth.md A4; mlflow/server/auth's
# BEFORE_REQUEST_HANDLERS and friends) for every stock endpoint this server routes.
_STOCK: list[tuple[list[RuleKey], Shape]] = [
    (_mlflow("POST", "/experiments/create"), ANY_USER),
    (_mlflow("GET", "/experiments/get"), on(EXP, READ)),
    (_mlflow("GET", "/experiments/get-by-name"), on(Target.EXPERIMENT_NAME, READ)),
    (_mlflow("POST", "/experiments/update"), on(EXP, EDIT)),
    (_mlflow("POST", "/experiments/set-experiment-tag"), on(EXP, EDIT)),
    (_mlflow("POST", "/experiments/delete-experiment-tag"), on(EXP, EDIT)),
    (_mlflow("POST", "/experiments/delete"), on(EXP, MANAGE)),
    (_mlflow("POST", "/experiments/restore"), on(EXP, MANAGE)),
    (_mlflow("POST", "/experiments/search"), filtered(ResourceType.EXPERIMENT)),
    (_mlflow("GET", "/experiments/search"), filtered(ResourceType.EXPERIMENT)),
    (_mlflow("POST", "/experiments/search-datasets"), on(EXP, READ)),
    (_mlflow("POST", "/runs/create"), on(EXP, EDIT)),
    (_mlflow("GET", "/runs/get"), on(RUN, READ)),
    (_mlflow("GET", "/metrics/get-history"), on(RUN, READ)),
    (_mlflow("GET", "/artifacts/list"), on(RUN, READ)),
    (_mlflow("POST", "/runs/update"), on(RUN, EDIT)),
    (_mlflow("POST", "/runs/log-parameter"), on(RUN, EDIT)),
    (_mlflow("POST", "/runs/set-tag"), on(RUN, EDIT)),
    (_mlflow("POST", "/runs/delete-tag"), on(RUN, EDIT)),
    (_mlflow("POST", "/runs/log-model"), on(RUN, EDIT)),
    # _validate_can_update_run_and_models: the run, and every logged model the request names.
    (_mlflow("POST", "/runs/log-metric"), on(RUN, EDIT, (LOGGED, EDIT))),
    (_mlflow("POST", "/runs/log-batch"), on(RUN, EDIT, (LOGGED, EDIT))),
    (_mlflow("POST", "/runs/log-inputs"), on(RUN, EDIT, (LOGGED, EDIT))),
    (_mlflow("POST", "/runs/outputs"), on(RUN, EDIT, (LOGGED, EDIT))),
    (_mlflow("POST", "/runs/delete"), on(RUN, MANAGE)),
    (_mlflow("POST", "/runs/restore"), on(RUN, MANAGE)),
    (_mlflow("POST", "/runs/search"), filtered(ResourceType.EXPERIMENT)),
    (_mlflow("GET", "/runs/search"), filtered(ResourceType.EXPERIMENT)),
    (_mlflow("GET", "/metrics/get-history-bulk-interval"), on(RUN, READ)),
    ([("GET", "/get-artifact"), ("GET", "/ajax-api/2.0/mlflow/get-artifact")], on(RUN, READ)),
    (_artifacts("GET", "/artifacts"), on(Target.ARTIFACT_PATH, READ)),
    (_artifacts("GET", "/artifacts/{path}"), on(Target.ARTIFACT_PATH, READ)),
    (_artifacts("GET", "/presigned/{path}"), on(Target.ARTIFACT_PATH, READ)),
    (_artifacts("PUT", "/artifacts/{path}"), on(Target.ARTIFACT_PATH, EDIT)),
    (_artifacts("DELETE", "/artifacts/{path}"), on(Target.ARTIFACT_PATH, MANAGE)),
    *(
        (_artifacts(method, f"/mpu/{step}/{{path}}"), on(Target.ARTIFACT_PATH, EDIT))
        for method, step in (("POST", "create"), ("POST", "complete"), ("POST", "abort"))
    ),
    (_artifacts("PUT", "/mpu/part/{path}"), on(Target.ARTIFACT_PATH, EDIT)),
    (_mlflow("POST", "/registered-models/create"), ANY_USER),
    (_mlflow("GET", "/registered-models/get"), on(MODEL, READ)),
    (_mlflow("POST", "/registered-models/rename"), on(MODEL, EDIT)),
    (_mlflow("PATCH", "/registered-models/update"), on(MODEL, EDIT)),
    (_mlflow("POST", "/registered-models/set-tag"), on(MODEL, EDIT)),
    (_mlflow("DELETE", "/registered-models/delete-tag"), on(MODEL, EDIT)),
    (_mlflow("DELETE", "/registered-models/delete"), on(MODEL, MANAGE)),
    (_mlflow("POST", "/registered-models/alias"), on(MODEL, EDIT)),
    (_mlflow("DELETE", "/registered-models/alias"), on(MODEL, MANAGE)),
    (_mlflow("GET", "/registered-models/alias"), on(MODEL, READ)),
    (_mlflow("POST", "/registered-models/get-latest-versions"), on(MODEL, READ)),
    (_mlflow("GET", "/registered-models/get-latest-versions"), on(MODEL, READ)),
    (_mlflow("GET", "/registered-models/search"), filtered(ResourceType.REGISTERED_MODEL)),
    # validate_can_create_model_version: EDIT on the model, READ on its run, its logged model
    # and a models:/ source.
    (
        _mlflow("POST", "/model-versions/create"),
        on(MODEL, EDIT, (RUN, READ), (LOGGED, READ), (Target.MODEL_SOURCE, READ)),
    ),
    (_mlflow("GET", "/model-versions/get"), on(MODEL, READ)),
    (_mlflow("GET", "/model-versions/get-download-uri"), on(MODEL, READ)),
    (_mlflow("PATCH", "/model-versions/update"), on(MODEL, EDIT)),
    (_mlflow("POST", "/model-versions/transition-stage"), on(MODEL, EDIT)),
    (_mlflow("POST", "/model-versions/set-tag"), on(MODEL, EDIT)),
    (_mlflow("DELETE", "/model-versions/delete"), on(MODEL, MANAGE)),
    (_mlflow("DELETE", "/model-versions/delete-tag"), on(MODEL, MANAGE)),
    (_mlflow("GET", "/model-versions/search"), filtered(ResourceType.REGISTERED_MODEL)),
    ([("GET", "/model-versions/get-artifact")], on(MODEL, READ)),
    # validate_can_create_logged_model: EDIT on the experiment, READ on source_run_id.
    (_mlflow("POST", "/logged-models"), on(EXP, EDIT, (RUN, READ))),
    (_mlflow("POST", "/logged-models/search"), filtered(ResourceType.EXPERIMENT)),
    (_mlflow("GET", "/logged-models/{model_id}"), on(LOGGED, READ)),
    (_mlflow("GET", "/logged-models/{model_id}/artifacts/files"), on(LOGGED, READ)),
    (_mlflow("GET", "/logged-models/{model_id}/artifacts/directories"), on(LOGGED, READ)),
    (_mlflow("PATCH", "/logged-models/{model_id}"), on(LOGGED, EDIT)),
    (_mlflow("PATCH", "/logged-models/{model_id}/tags"), on(LOGGED, EDIT)),
    (_mlflow("POST", "/logged-models/{model_id}/params"), on(LOGGED, EDIT)),
    (_mlflow("DELETE", "/logged-models/{model_id}"), on(LOGGED, MANAGE)),
    (_mlflow("DELETE", "/logged-models/{model_id}/tags/{key}"), on(LOGGED, MANAGE)),
    # is_unprotected_route: health, server-info and the static bundle; _allow_authenticated:
    # /, /version, ui-telemetry, gateway-proxy, users/current.
    ([("GET", "/health")], PUBLIC),
    ([("GET", "/api/3.0/mlflow/server-info"), ("GET", "/ajax-api/3.0/mlflow/server-info")], PUBLIC),
    ([("GET", "/static-files/{path}"), ("HEAD", "/static-files/{path}")], PUBLIC),
    ([("GET", "/"), ("HEAD", "/"), ("GET", "/version")], ANY_USER),
    ([("GET", "/ajax-api/3.0/mlflow/ui-telemetry")], ANY_USER),
    ([("POST", "/ajax-api/3.0/mlflow/ui-telemetry")], ANY_USER),
    (_mlflow("GET", "/gateway-proxy") + _mlflow("POST", "/gateway-proxy"), ANY_USER),
    (_mlflow("GET", "/users/current"), ANY_USER),
    # Self-authorising in stock: any user reaches it, resolvers null out what they deny.
    ([("GET", "/graphql"), ("POST", "/graphql")], ANY_USER),
]
STOCK_LEVELS: dict[RuleKey, Shape] = {key: want for keys, want in _STOCK for key in keys}

# Stock endpoints whose rule here differs from stock on purpose: key -> (our shape, reason).
# Empty today; an entry is the place to say why, and the test fails on a stale one.
DRIFT: dict[RuleKey, tuple[Shape, str]] = {}

# metricgate's own endpoints (docs/design-auth.md B4).
OWN_LEVELS: list[tuple[list[RuleKey], Shape]] = [
    ([("GET", "/metrics"), ("GET", "/ready")], PUBLIC),
    ([("GET", "/metricgate/ingest"), ("GET", "/api/2.0/metricgate/ingest/status")], ANY_USER),
    ([("GET", "/api/2.0/metricgate/openapi.json")], ANY_USER),
    (
        [("GET", f"{p}/2.0/metricgate/registry/history") for p in ("/api", "/ajax-api")],
        on(MODEL, READ),
    ),
    ([("POST", "/api/2.0/metricgate/uploads")], on(RUN, EDIT)),
    ([("GET", "/api/2.0/metricgate/uploads/{upload_id}")], on(Target.UPLOAD_ID, READ)),
    (
        [
            (
                "PUT",
                "/api/2.0/metricgate/uploads/{upload_id}/files/{file_index}/parts/{part_number}",
            ),
            ("POST", "/api/2.0/metricgate/uploads/{upload_id}/complete"),
            ("DELETE", "/api/2.0/metricgate/uploads/{upload_id}"),
        ],
        on(Target.UPLOAD_ID, EDIT),
    ),
    (
        [
            ("POST", "/api/2.0/metricgate/artifact-references"),
            ("DELETE", "/api/2.0/metricgate/artifact-references"),
        ],
        on(RUN, EDIT),
    ),
    ([("GET", "/api/2.0/metricgate/artifact-references")], on(RUN, READ)),
    # Approvals (api/approvals.py): the handler checks the request's model, the policy's level
    # and the requester after loading the request; policies are admins'.
    ([("GET", "/api/2.0/metricgate/approvals")], filtered(ResourceType.REGISTERED_MODEL)),
    (
        [
            ("GET", "/api/2.0/metricgate/approvals/{request_id}"),
            ("POST", "/api/2.0/metricgate/approvals/{request_id}/approve"),
            ("POST", "/api/2.0/metricgate/approvals/{request_id}/reject"),
            ("POST", "/api/2.0/metricgate/approvals/{request_id}/cancel"),
        ],
        ANY_USER,
    ),
    (
        [
            ("POST", "/api/2.0/metricgate/approval-policies"),
            ("GET", "/api/2.0/metricgate/approval-policies"),
            ("DELETE", "/api/2.0/metricgate/approval-policies/{policy_id}"),
        ],
        ADMIN,
    ),
    # The audit log is admins'; setting and listing a resource's grants need MANAGE on it
    # (api/audit.py, api/permissions_admin.py).
    ([("GET", f"{p}/2.0/metricgate/audit") for p in ("/api", "/ajax-api")], ADMIN),
    (
        [
            (method, f"{p}/2.0/metricgate/permissions/{name}")
            for p in ("/api", "/ajax-api")
            for method, name in (("POST", "set"), ("GET", "who"))
        ],
        (("Manages", None, None),),
    ),
]


@pytest.fixture(scope="module")
def app() -> web.Application:
    # Nothing touches the service while the app is built; it is only stored.
    return create_app(Settings(), service=cast(Service, object()))


@pytest.fixture(scope="module")
def rules(app: web.Application) -> dict[RuleKey, AccessRule]:
    return app[ACCESS_RULES]


def test_a_route_without_a_rule_does_not_construct() -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    with pytest.raises(TypeError):
        Route("GET", "/x", handler)  # type: ignore[call-arg]  # the missing rule is the point


def test_every_registered_route_has_exactly_one_rule(
    app: web.Application, rules: dict[RuleKey, AccessRule]
) -> None:
    keys = [rule_key(route) for route in app.router.routes()]
    assert len(keys) == len(set(keys)), "a (method, path) registered twice"
    assert set(keys) == set(rules)
    assert len(keys) > 200  # the whole table: both prefixes of every MLflow route


def test_a_route_added_without_a_rule_fails_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    unrouted = dict(app_module.UNROUTED_RULES)
    del unrouted[("GET", "/static-files/{path}")]
    monkeypatch.setattr(app_module, "UNROUTED_RULES", unrouted)
    with pytest.raises(RuntimeError, match=r"GET /static-files/\{path\} has no access rule"):
        create_app(Settings(), service=cast(Service, object()))


def test_stock_endpoints_need_what_mlflow_needs(rules: dict[RuleKey, AccessRule]) -> None:
    missing = sorted(set(STOCK_LEVELS) - set(rules))
    assert not missing, f"stock endpoints in STOCK_LEVELS that are not routed: {missing}"
    differ = {
        key: shape(rules[key])
        for key, want in STOCK_LEVELS.items()
        if shape(rules[key]) != want and DRIFT.get(key, ((), ""))[0] != shape(rules[key])
    }
    assert not differ, f"rules that drift from MLflow without a DRIFT entry: {differ}"
    stale = [key for key in DRIFT if shape(rules[key]) == STOCK_LEVELS[key]]
    assert not stale, f"DRIFT entries that no longer drift: {stale}"


def test_own_endpoints_follow_the_design(rules: dict[RuleKey, AccessRule]) -> None:
    for keys, want in OWN_LEVELS:
        for key in keys:
            assert shape(rules[key]) == want, key
    webhooks = [key for key in rules if "/metricgate/webhooks" in key[1]]
    assert len(webhooks) == 8
    assert all(shape(rules[key]) == ADMIN for key in webhooks)


def test_only_probes_and_static_files_are_public(rules: dict[RuleKey, AccessRule]) -> None:
    public = sorted(key for key, rule in rules.items() if isinstance(rule, Public))
    assert public == sorted(
        [
            ("GET", "/ajax-api/3.0/mlflow/server-info"),
            ("GET", "/api/3.0/mlflow/server-info"),
            ("GET", "/health"),
            ("GET", "/metrics"),
            ("GET", "/ready"),
            ("GET", "/static-files/{path}"),
            ("HEAD", "/static-files/{path}"),
        ]
    )


# ---------------------------------------------------------------- each On names what is read


def _parts(rule: AccessRule) -> list[On]:
    if isinstance(rule, AllOf):
        return list(rule.rules)
    return [rule] if isinstance(rule, On) else []


def _sources(code: types.CodeType, namespace: dict[str, Any], seen: set[object]) -> Iterator[str]:
    """The source of ``code``'s function and, transitively, of the metricgate functions and
    ``Fields`` readers (``fields.run_id()``) it names."""
    for name in code.co_names:
        target = namespace.get(name)
        method = getattr(Fields, name, None)
        if inspect.isfunction(method) and method not in seen:
            seen.add(method)
            yield inspect.getsource(method)
        if inspect.isfunction(target) and target.__module__.startswith("metricgate."):
            if target not in seen:
                seen.add(target)
                yield inspect.getsource(target)
                yield from _sources(target.__code__, target.__globals__, seen)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # comprehensions, nested functions
            yield from _sources(const, namespace, seen)


def reads(handler: Any) -> str:
    handler = inspect.unwrap(handler)
    return "\n".join(
        [inspect.getsource(handler), *_sources(handler.__code__, handler.__globals__, {handler})]
    )


def _declared_routes() -> Iterator[Route]:
    yield from (
        experiments.ROUTES
        + runs.ROUTES
        + metrics.ROUTES
        + logged_models.ROUTES
        + artifacts.ROUTES
        + artifacts.TRACKING_ROUTES
        + multipart.ROUTES
        + registry.ROUTES
        + registry_history.ROUTES
        + health.ROUTES
        + health.SERVER_INFO_ROUTES
        + webhooks.ROUTES
        + uploads.ROUTES
        + ui_endpoints.ROUTES
        + GRAPHQL_ROUTES
        + ingest_status.ROUTES
        + ingest_status.PAGE_ROUTES
    )


ON_ROUTES = [
    pytest.param(route, part, id=f"{route.method} {route.path} {part.param}")
    for route in _declared_routes()
    for part in _parts(route.access)
]


def test_the_on_rules_are_checked() -> None:
    assert len(ON_ROUTES) > 80


@pytest.mark.parametrize(("route", "part"), ON_ROUTES)
def test_each_on_names_a_parameter_its_handler_reads(route: Route, part: On) -> None:
    source = reads(route.handler)
    names = [part.param] + [n for n in (part.fallback, part.item) if n is not None]
    for name in names:
        assert f'"{name}"' in source, f"{route.handler.__name__} never reads {name!r}"
    if part.where is Where.PATH:
        assert f"{{{part.param}" in route.path, f"{route.path} has no {{{part.param}}} part"
    else:
        assert f"{{{part.param}" not in route.path
    if part.where is Where.QUERY:
        # Read from the query string whatever the method, or a GET's fields.
        assert "request.query" in source or route.method == "GET"
