"""What each root field does: the REST endpoint's checks, store call and JSON encoder.

A root field's ``input`` is the REST request (camelCase keys; ``Fields`` gets the snake_case
names the REST decoders read) and its value is the REST response's JSON, which the schema's
plain getters read field by field. MLflow errors do not fail the field: the UI reads them from
the response's ``apiError`` (``{code, message}``, e.g. RESOURCE_DOES_NOT_EXIST shows its "not
found" page), so a missing run is ``{"run": null, "apiError": {...}}`` with no GraphQL error.

With auth on, a field the caller may not read is null, as stock's GraphQLAuthorizationMiddleware
resolves it: READ on the experiment (a run's, for runs, their metrics and artifacts) or on the
registered model, decided as the REST routes' rules are (api/access.py). mlflowSearchRuns and
mlflowSearchDatasets narrow the requested experiments to the readable ones (none left: null, as
stock). The model-version searches (the root field and a run's ``modelVersions``) filter in the
SQL as the REST searches do (api/search_access.py, docs/design-auth.md B5): full pages, where
stock drops unreadable versions after the query.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLObjectType, GraphQLResolveInfo, get_named_type

from metricgate.api.access import ResourceAccess
from metricgate.api.artifacts import run_artifact_listing
from metricgate.api.codec import Fields, encode_experiment, encode_metric_series
from metricgate.api.graphql.loaders import BatchLoader
from metricgate.api.graphql.schema import snake_case
from metricgate.api.metrics import bulk_interval_series
from metricgate.api.registry import DEFAULT_VERSIONS_PER_PAGE, MAX_VERSIONS_PER_PAGE
from metricgate.api.registry_codec import encode_model_version
from metricgate.api.runs import run_json, search_runs_page
from metricgate.api.services import AppServices
from metricgate.api.ui_support import dataset_summaries
from metricgate.auth.authenticator import CallerAccess
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.auth.visibility import UNRESTRICTED, Visibility
from metricgate.domain.errors import InvalidParameter, MetricgateError, Unavailable
from metricgate.domain.tracking.rules import parse_experiment_id, validate_max_results

log = logging.getLogger(__name__)

Json = dict[str, Any]
Operation = Callable[["Context", Fields], Awaitable[Json | None]]

_EXPERIMENT = ResourceType.EXPERIMENT
_MODEL = ResourceType.REGISTERED_MODEL

# Run ids per model-version search when a page of runs asks for its versions (an IN list).
_RUNS_PER_VERSION_SEARCH = 500


@dataclass
class Context:
    """Per request: the service, the caller's access and search visibility (None: nothing is
    checked, auth off or an admin) and the loaders that batch nested lookups."""

    service: AppServices
    access: ResourceAccess | None = None
    searches: CallerAccess | None = None
    experiments: BatchLoader[str, Json | None] = field(init=False)
    model_versions: BatchLoader[str, list[Json]] = field(init=False)

    def __post_init__(self) -> None:
        self.experiments = BatchLoader(self._fetch_experiments, lambda: None)
        self.model_versions = BatchLoader(self._fetch_model_versions, list)

    def close(self) -> None:
        self.experiments.close()
        self.model_versions.close()

    async def can_read(self, resource_type: ResourceType, resource_id: str) -> bool:
        access = self.access
        return access is None or await access.allows(resource_type, resource_id, Permission.READ)

    async def can_read_run(self, run_id: str) -> bool:
        access = self.access
        return access is None or await access.allows_run(run_id, Permission.READ)

    async def visibility(self, resource_type: ResourceType) -> Visibility:
        """What a search of ``resource_type`` may return to the caller (in its SQL)."""
        searches = self.searches
        return UNRESTRICTED if searches is None else await searches.visibility(resource_type)

    async def readable_experiments(self, fields: Fields) -> Fields | None:
        """The request with its ``experiment_ids`` narrowed to the readable ones (stock's
        GraphQL search does so); None when some were asked for and none is readable."""
        asked = fields.str_list("experiment_ids")
        if self.access is None or not asked:
            return fields
        kept = [e for e in asked if await self.can_read(_EXPERIMENT, str(parse_experiment_id(e)))]
        if not kept:
            return None
        raw = fields.raw
        assert isinstance(raw, dict)  # resolve() builds it from the field's input object
        return Fields({**raw, "experiment_ids": kept})

    async def _fetch_experiments(self, experiment_ids: list[str]) -> dict[str, Json | None]:
        found = await self.service.experiments.get_many(
            [parse_experiment_id(i) for i in experiment_ids]
        )
        return {e.experiment_id: encode_experiment(e) for e in found}

    async def _fetch_model_versions(self, run_ids: list[str]) -> dict[str, list[Json]]:
        """Versions whose run_id is one of ``run_ids``, in the registry search's default order
        (name, newest version first): what stock's per-run ``run_id='<id>'`` search returns."""
        by_run: dict[str, list[Json]] = defaultdict(list)
        # A run readable through its experiment can name versions of a model the caller may
        # not read: stock filters this nested field as it does the search.
        seen = await self.visibility(_MODEL)
        for start in range(0, len(run_ids), _RUNS_PER_VERSION_SEARCH):
            # Run ids come from stored runs and match [\w-]+, so they need no quoting.
            listed = ", ".join(f"'{r}'" for r in run_ids[start : start + _RUNS_PER_VERSION_SEARCH])
            token: str | None = None
            while True:
                page = await self.service.registry.search_model_versions(
                    f"run_id IN ({listed})", [], MAX_VERSIONS_PER_PAGE, token, visibility=seen
                )
                for mv in page.items:
                    by_run[mv.run_id].append(encode_model_version(mv))
                token = page.next_page_token
                if not token:
                    break
        return by_run


# ---------------------------------------------------------------- root fields


async def _get_experiment(ctx: Context, fields: Fields) -> Json | None:
    experiment_id = parse_experiment_id(fields.req_str("experiment_id"))
    if not await ctx.can_read(_EXPERIMENT, str(experiment_id)):
        return None
    return {"experiment": encode_experiment(await ctx.service.experiments.get(experiment_id))}


async def _get_run(ctx: Context, fields: Fields) -> Json | None:
    run_id = fields.run_id()
    if not await ctx.can_read_run(run_id):
        return None
    return {"run": await run_json(ctx.service, run_id)}


async def _search_runs(ctx: Context, fields: Fields) -> Json | None:
    readable = await ctx.readable_experiments(fields)
    if readable is None:
        return None
    runs, token = await search_runs_page(ctx.service, readable, await ctx.visibility(_EXPERIMENT))
    return {"runs": runs, "next_page_token": token or ""}


async def _bulk_interval(ctx: Context, fields: Fields) -> Json | None:
    # Every run or nothing, as stock (and REST's 403): the chart shows no partial answer.
    for run_id in fields.str_list("run_ids"):
        if not await ctx.can_read_run(run_id):
            return None
    return {"metrics": encode_metric_series(await bulk_interval_series(ctx.service, fields))}


async def _list_artifacts(ctx: Context, fields: Fields) -> Json | None:
    if not await ctx.can_read_run(fields.run_id()):
        return None
    return await run_artifact_listing(ctx.service, fields)


async def _search_model_versions(ctx: Context, fields: Fields) -> Json:
    max_results = validate_max_results(
        fields.int("max_results"), MAX_VERSIONS_PER_PAGE, DEFAULT_VERSIONS_PER_PAGE
    )
    page = await ctx.service.registry.search_model_versions(
        fields.str("filter") or None,
        fields.str_list("order_by"),
        max_results,
        fields.str("page_token") or None,
        visibility=await ctx.visibility(_MODEL),
    )
    versions = [encode_model_version(mv) for mv in page.items]
    return {"model_versions": versions, "next_page_token": page.next_page_token or ""}


async def _search_datasets(ctx: Context, fields: Fields) -> Json | None:
    readable = await ctx.readable_experiments(fields)
    if readable is None:
        return None
    return {"dataset_summaries": await dataset_summaries(ctx.service, readable)}


def _mlflow_field(operation: Operation) -> Callable[..., Awaitable[Json | None]]:
    """A root field calling an MLflow operation; its errors go into the response's ``apiError``,
    a denial (the operation's None) makes the field null."""

    async def resolve(
        _root: Any, info: GraphQLResolveInfo, input: dict[str, Any] | None = None
    ) -> Json | None:
        fields = Fields({snake_case(k): v for k, v in (input or {}).items()})
        try:
            if _has_nul(fields.raw):
                # PostgreSQL text cannot hold it; refused up front, as the REST decoder does.
                raise InvalidParameter("String values may not contain the NUL character (\\u0000).")
            return await operation(info.context, fields)
        except MetricgateError as exc:
            if isinstance(exc, Unavailable):
                log.warning("GraphQL %s unavailable: %s", info.field_name, exc.message)
            response_type = get_named_type(info.return_type)
            assert isinstance(response_type, GraphQLObjectType)
            payload: Json = {snake_case(name): None for name in response_type.fields}
            # ApiError is no protobuf message in stock either: what we do not know is null.
            payload["api_error"] = {
                "code": exc.error_code,
                "message": exc.message,
                "help_url": None,
                "trace_id": None,
                "error_details": None,
            }
            return payload

    return resolve


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _echo(_root: Any, _info: GraphQLResolveInfo, inputString: str | None = None) -> Json:
    return {"output": inputString}


# ---------------------------------------------------------------- nested fields


def _run_experiment(run: Json, info: GraphQLResolveInfo) -> Awaitable[Json | None]:
    context: Context = info.context
    return context.experiments.load(run["info"]["experiment_id"])


def _run_model_versions(run: Json, info: GraphQLResolveInfo) -> Awaitable[list[Json]]:
    context: Context = info.context
    # Asked for now, not when awaited: a page of runs' versions is one batch.
    return context.model_versions.load(run["info"]["run_id"])


RESOLVERS: dict[tuple[str, str], Callable[..., Any]] = {
    ("Query", "mlflowGetExperiment"): _mlflow_field(_get_experiment),
    ("Query", "mlflowGetRun"): _mlflow_field(_get_run),
    ("Query", "mlflowSearchRuns"): _mlflow_field(_search_runs),
    ("Query", "mlflowGetMetricHistoryBulkInterval"): _mlflow_field(_bulk_interval),
    ("Query", "mlflowListArtifacts"): _mlflow_field(_list_artifacts),
    ("Query", "mlflowSearchModelVersions"): _mlflow_field(_search_model_versions),
    ("Query", "test"): _echo,
    ("Mutation", "mlflowSearchRuns"): _mlflow_field(_search_runs),
    ("Mutation", "mlflowSearchDatasets"): _mlflow_field(_search_datasets),
    ("Mutation", "testMutation"): _echo,
    ("MlflowRunExtension", "experiment"): _run_experiment,
    ("MlflowRunExtension", "modelVersions"): _run_model_versions,
}
