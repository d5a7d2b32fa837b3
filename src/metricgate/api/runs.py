"""Run endpoints. Params/tags/inputs are written synchronously; metrics go through the sink seam."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any, TypedDict

import orjson
from aiohttp import web

from metricgate.api.audit import deletion_audit
from metricgate.api.codec import (
    Fields,
    decode_metric,
    decode_params,
    decode_plain_metric_columns,
    decode_tags,
    empty_response,
    encode_run,
    encode_run_info,
    encode_run_rows,
    json_response,
    page_response,
    read_fields,
    read_json,
)
from metricgate.api.experiments import parse_view_type
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.api.search_access import search_visibility
from metricgate.api.services import AppServices
from metricgate.domain.auth.access import AllOf, Filtered, On, Target
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.auth.visibility import UNRESTRICTED, Visibility
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.entities import Dataset, DatasetInput, ModelOutput, Param, Tag
from metricgate.domain.tracking.rules import (
    MAX_BATCH_LOG_REQUEST_BYTES,
    MAX_METRICS_PER_BATCH,
    MAX_RUNS_PER_PAGE,
    parse_experiment_id,
    validate_batch,
    validate_max_results,
    validate_metric,
    validate_param,
    validate_run_id,
    validate_tag,
)

RUN_STATUSES = ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED")
_STATUS_NUMBERS = {str(i + 1): s for i, s in enumerate(RUN_STATUSES)}


def _run_id(fields: Fields) -> str:
    run_id = fields.run_id()
    validate_run_id(run_id)
    return run_id


def _status(fields: Fields) -> str | None:
    raw = fields.raw.get("status")
    if raw is None or raw == "":
        return None
    status = _STATUS_NUMBERS.get(str(raw), str(raw))
    if status not in RUN_STATUSES:
        raise InvalidParameter(
            f"Invalid value {raw!r} for parameter 'status': expected one of {list(RUN_STATUSES)}"
        )
    return status


async def create_run(request: web.Request) -> web.Response:
    fields = await read_json(request)
    # Required, "" included: the mlflow client always sends one (the Default is "0", spelled
    # out), so an empty or missing id is a script's typo or unset variable, and filing the run
    # under the Default would hide it. Stock MLflow refuses it too (400, from a failing insert).
    experiment_id = parse_experiment_id(fields.req_str("experiment_id"))
    tags = [validate_tag(t) for t in decode_tags(fields.dict_list("tags"))]
    run = await request.app[SERVICE].runs.create(
        experiment_id=experiment_id,
        user_id=fields.str("user_id", default="") or "",
        start_time=fields.int("start_time"),
        run_name=fields.str("run_name") or None,
        tags=tags,
    )
    return json_response({"run": encode_run(run)})


async def get_run(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    return json_response({"run": await run_json(request.app[SERVICE], _run_id(fields))})


async def update_run(request: web.Request) -> web.Response:
    fields = await read_json(request)
    info = await request.app[SERVICE].runs.update(
        _run_id(fields), _status(fields), fields.int("end_time"), fields.str("run_name") or None
    )
    return json_response({"run_info": encode_run_info(info)})


async def delete_run(request: web.Request) -> web.Response:
    fields = await read_json(request)
    run_id = _run_id(fields)
    await request.app[SERVICE].runs.delete(run_id, audit=deletion_audit(request))
    return empty_response()


async def restore_run(request: web.Request) -> web.Response:
    fields = await read_json(request)
    await request.app[SERVICE].runs.restore(_run_id(fields))
    return empty_response()


async def set_tag(request: web.Request) -> web.Response:
    fields = await read_json(request)
    tag = validate_tag(Tag(fields.req_str("key"), fields.str("value", default="") or ""))
    await request.app[SERVICE].runs.set_tag(_run_id(fields), tag)
    return empty_response()


async def delete_tag(request: web.Request) -> web.Response:
    fields = await read_json(request)
    await request.app[SERVICE].runs.delete_tag(_run_id(fields), fields.req_str("key"))
    return empty_response()


async def log_parameter(request: web.Request) -> web.Response:
    fields = await read_json(request)
    run_id = _run_id(fields)
    param = validate_param(Param(fields.req_str("key"), fields.str("value", default="") or ""))
    await request.app[SERVICE].runs.log_params_and_tags(run_id, [param], [])
    return empty_response()


async def log_metric(request: web.Request) -> web.Response:
    fields = await read_json(request)
    run_id = _run_id(fields)
    metric = decode_metric(fields)
    validate_metric(metric)
    service = request.app[SERVICE]
    await service.runs.require_active(run_id)
    await service.metrics.append(run_id, [metric])
    return empty_response()


async def log_batch(request: web.Request) -> web.Response:
    fields = await read_json(request, max_bytes=MAX_BATCH_LOG_REQUEST_BYTES)
    run_id = _run_id(fields)
    raw_metrics = fields.dict_list("metrics")
    if (
        not fields.raw.get("params")
        and not fields.raw.get("tags")
        and len(raw_metrics) <= MAX_METRICS_PER_BATCH
    ):
        # The training-loop shape (plain metrics only): decoded and checked column by column.
        columns = decode_plain_metric_columns(raw_metrics)
        if columns is not None:
            service = request.app[SERVICE]
            await service.runs.require_active(run_id)
            if len(columns):
                await service.metrics.append_columns(run_id, columns)
            return empty_response()
    metrics = [decode_metric(m) for m in raw_metrics]
    params, tags = validate_batch(
        metrics, decode_params(fields.dict_list("params")), decode_tags(fields.dict_list("tags"))
    )
    service = request.app[SERVICE]
    if params or tags:
        # Checks the run and stores params and tags atomically: a changed param fails the
        # request before any of its metrics is written.
        await service.runs.log_params_and_tags(run_id, params, tags)
    else:
        await service.runs.require_active(run_id)
    if metrics:
        await service.metrics.append(run_id, metrics)
    return empty_response()


def _decode_dataset_input(item: dict[str, object]) -> DatasetInput:
    fields = Fields(item)
    raw = item.get("dataset")
    if not isinstance(raw, dict):
        raise InvalidParameter("Missing value for required parameter 'datasets.dataset'.")
    ds = Fields(raw)
    dataset = Dataset(
        name=ds.req_str("name"),
        digest=ds.req_str("digest"),
        source_type=ds.str("source_type", default="") or "",
        source=ds.str("source", default="") or "",
        schema=ds.str("schema"),
        profile=ds.str("profile"),
    )
    return DatasetInput(
        dataset=dataset, tags=tuple(decode_tags(fields.dict_list("tags"), "datasets.tags"))
    )


async def log_inputs(request: web.Request) -> web.Response:
    fields = await read_json(request)
    run_id = _run_id(fields)
    datasets = [_decode_dataset_input(d) for d in fields.dict_list("datasets")]
    model_ids = [Fields(m).req_str("model_id") for m in fields.dict_list("models")]
    await request.app[SERVICE].runs.log_inputs(run_id, datasets, model_ids)
    return empty_response()


async def log_outputs(request: web.Request) -> web.Response:
    fields = await read_json(request)
    run_id = _run_id(fields)
    outputs = []
    for item in fields.dict_list("models"):
        model = Fields(item)
        outputs.append(ModelOutput(model.req_str("model_id"), model.int("step", default=0) or 0))
    await request.app[SERVICE].runs.log_outputs(run_id, outputs)
    return empty_response()


_LOG_MODEL_FIELDS = ("artifact_path", "flavors", "utc_time_created", "run_id")


async def log_model(request: web.Request) -> web.Response:
    fields = await read_json(request)
    run_id = _run_id(fields)
    model_json = fields.req_str("model_json")
    try:
        model = orjson.loads(model_json)
    except orjson.JSONDecodeError:
        raise InvalidParameter(
            f"Malformed model info. \n {model_json[:200]} \n is not a valid JSON."
        ) from None
    missing = [f for f in _LOG_MODEL_FIELDS if not isinstance(model, dict) or f not in model]
    if missing:
        raise InvalidParameter(f"Model json is missing mandatory fields: {missing}")
    await request.app[SERVICE].runs.append_model_history(run_id, orjson.dumps(model).decode())
    return empty_response()


async def search_runs(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    seen = await search_visibility(request, ResourceType.EXPERIMENT)
    runs, token = await search_runs_page(request.app[SERVICE], fields, seen)
    return page_response("runs", runs, token)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic-GC pass while a page is encoded. A 1,000-run page builds ~30,000 dicts and
    lists, enough to trigger a young-generation pass that walks all of them although none can
    be in a cycle (they die by reference counting once the body is written); pausing saved
    2-4 ms of ~30 per page. Safe here: nothing in the block awaits, so no other request runs
    meanwhile, and the pass it skips happens at the next allocation after, over far fewer objects."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def search_runs_page(
    service: AppServices, fields: Fields, visibility: Visibility = UNRESTRICTED
) -> tuple[list[dict[str, Any]], str | None]:
    """Checks a runs/search request and runs it: the page's runs as MLflow's JSON, and the next
    page's token (None on the last). REST and GraphQL's resolvers share it. Runs of experiments
    ``visibility`` hides are not searched (their ids are dropped, silently, as stock)."""
    rows, token = await service.runs.search_rows(
        **await _search_arguments(service, fields), visibility=visibility
    )
    with _collector_paused():
        return encode_run_rows(rows), token


async def run_json(service: AppServices, run_id: str) -> dict[str, Any]:
    """A run as MLflow's JSON, once the metrics acknowledged before this read are in its latest
    values (read-your-writes). REST runs/get and GraphQL's ``mlflowGetRun`` share it."""
    validate_run_id(run_id)
    await service.metrics.wait_visible(run_id)
    return encode_run_rows(await service.runs.get_rows(run_id))[0]


class _SearchArguments(TypedDict):
    experiment_ids: list[int]
    filter_string: str | None
    view_type: str
    max_results: int
    order_by: list[str]
    page_token: str | None


async def _search_arguments(service: AppServices, fields: Fields) -> _SearchArguments:
    """A runs/search request's checked arguments, once every acknowledged write is readable."""
    experiment_ids = [parse_experiment_id(e) for e in fields.str_list("experiment_ids")]
    max_results = validate_max_results(fields.int("max_results"), MAX_RUNS_PER_PAGE, 1000)
    arguments: _SearchArguments = {
        "experiment_ids": experiment_ids,
        "filter_string": fields.str("filter") or None,
        "view_type": parse_view_type(fields, "run_view_type"),
        "max_results": max_results,
        "order_by": fields.str_list("order_by"),
        "page_token": fields.str("page_token") or None,
    }
    # A search may filter or sort on any run's metrics: see every write acknowledged so far.
    # Only after the request is known to be valid: a bad one should not wait on the flusher.
    await service.metrics.wait_all_visible()
    return arguments


def _on_run(level: Permission) -> On:
    """``level`` on the run that ``run_id`` (or the legacy ``run_uuid``) names."""
    return On(Target.RUN_ID, "run_id", level, fallback="run_uuid")


def _logging_to(models: str | None) -> AllOf:
    """EDIT on the run, and on the experiment of every logged model the request's metrics or
    inputs name (stock's ``_validate_can_update_run_and_models``): ``model_id`` itself, or each
    object's ``model_id`` in the list ``models``."""
    if models is None:
        model = On(Target.LOGGED_MODEL_ID, "model_id", Permission.EDIT, optional=True)
    else:
        model = On(Target.LOGGED_MODEL_ID, models, Permission.EDIT, item="model_id", optional=True)
    return AllOf((_on_run(Permission.EDIT), model))


_EDIT, _SEARCH = _on_run(Permission.EDIT), Filtered(ResourceType.EXPERIMENT)
ROUTES = [
    Route(
        "POST",
        "/runs/create",
        create_run,
        On(Target.EXPERIMENT_ID, "experiment_id", Permission.EDIT),
    ),
    Route("GET", "/runs/get", get_run, _on_run(Permission.READ)),
    Route("POST", "/runs/update", update_run, _EDIT),
    Route("POST", "/runs/delete", delete_run, _on_run(Permission.MANAGE)),
    Route("POST", "/runs/restore", restore_run, _on_run(Permission.MANAGE)),
    Route("POST", "/runs/set-tag", set_tag, _EDIT),
    Route("POST", "/runs/delete-tag", delete_tag, _EDIT),
    Route("POST", "/runs/log-parameter", log_parameter, _EDIT),
    Route("POST", "/runs/log-metric", log_metric, _logging_to(None)),
    Route("POST", "/runs/log-batch", log_batch, _logging_to("metrics")),
    Route("POST", "/runs/log-inputs", log_inputs, _logging_to("models")),
    Route("POST", "/runs/outputs", log_outputs, _logging_to("models")),
    Route("POST", "/runs/log-model", log_model, _EDIT),
    Route("POST", "/runs/search", search_runs, _SEARCH, abandon_on_disconnect=True),
    Route("GET", "/runs/search", search_runs, _SEARCH, abandon_on_disconnect=True),
]
