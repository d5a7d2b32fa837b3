"""MLflow 3 logged-model endpoints (``/logged-models``), used by ``log_model`` and autolog."""

from __future__ import annotations

from aiohttp import web

from metricgate.api.audit import deletion_audit
from metricgate.api.codec import (
    Fields,
    decode_params,
    decode_tags,
    empty_response,
    encode_logged_model,
    json_response,
    page_response,
    read_json,
)
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.api.search_access import search_visibility
from metricgate.domain.auth.access import AllOf, Filtered, On, Target, Where
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.entities import LoggedModel
from metricgate.domain.tracking.rules import (
    parse_experiment_id,
    validate_logged_model_name,
    validate_max_results,
)

_STATUS_NUMBERS = {
    "0": "LOGGED_MODEL_STATUS_UNSPECIFIED",
    "1": "LOGGED_MODEL_PENDING",
    "2": "LOGGED_MODEL_READY",
    "3": "LOGGED_MODEL_UPLOAD_FAILED",
}
MAX_PARAMS_PER_REQUEST = 100
MAX_SEARCH_RESULTS = 1000


def _model_response(model: LoggedModel) -> web.Response:
    return json_response({"model": encode_logged_model(model)})


async def create_logged_model(request: web.Request) -> web.Response:
    fields = await read_json(request)
    params = decode_params(fields.dict_list("params"))
    if len(params) > MAX_PARAMS_PER_REQUEST:
        raise InvalidParameter(
            f"A logged model can be created with at most {MAX_PARAMS_PER_REQUEST} params; "
            f"got {len(params)}. Log the rest with logged-models/{{id}}/params."
        )
    name = fields.str("name") or None  # proto default "": the server picks a name
    validate_logged_model_name(name)
    model = await request.app[SERVICE].logged_models.create(
        experiment_id=parse_experiment_id(fields.req_str("experiment_id")),
        name=name,
        model_type=fields.str("model_type") or None,
        source_run_id=fields.str("source_run_id") or None,
        params=params,
        tags=decode_tags(fields.dict_list("tags")),
    )
    return _model_response(model)


async def get_logged_model(request: web.Request) -> web.Response:
    allow_deleted = request.query.get("allow_deleted", "false").lower() == "true"
    service = request.app[SERVICE]
    await service.metrics.wait_all_visible()  # the model's metrics arrive through the stream
    model = await service.logged_models.get(request.match_info["model_id"], allow_deleted)
    return _model_response(model)


async def finalize_logged_model(request: web.Request) -> web.Response:
    fields = await read_json(request)
    raw = fields.raw.get("status")
    if raw is None:
        raise InvalidParameter("Missing value for required parameter 'status'.")
    status = _STATUS_NUMBERS.get(str(raw), str(raw))
    model = await request.app[SERVICE].logged_models.finalize(
        request.match_info["model_id"], status
    )
    return _model_response(model)


async def delete_logged_model(request: web.Request) -> web.Response:
    model_id = request.match_info["model_id"]
    await request.app[SERVICE].logged_models.delete(model_id, audit=deletion_audit(request))
    return empty_response()


async def set_logged_model_tags(request: web.Request) -> web.Response:
    fields = await read_json(request)
    tags = decode_tags(fields.dict_list("tags"))
    await request.app[SERVICE].logged_models.set_tags(request.match_info["model_id"], tags)
    return empty_response()


async def delete_logged_model_tag(request: web.Request) -> web.Response:
    await request.app[SERVICE].logged_models.delete_tag(
        request.match_info["model_id"], request.match_info["key"]
    )
    return empty_response()


async def log_logged_model_params(request: web.Request) -> web.Response:
    fields = await read_json(request)
    params = decode_params(fields.dict_list("params"))
    await request.app[SERVICE].logged_models.log_params(request.match_info["model_id"], params)
    return empty_response()


def _order_by(fields: Fields) -> list[dict[str, object]]:
    order: list[dict[str, object]] = []
    for item in fields.dict_list("order_by"):
        entry = Fields(item)
        order.append(
            {
                "field_name": entry.req_str("field_name"),
                "ascending": entry.bool("ascending", default=True),
            }
        )
    return order


async def search_logged_models(request: web.Request) -> web.Response:
    fields = await read_json(request)
    experiment_ids = [parse_experiment_id(e) for e in fields.str_list("experiment_ids")]
    if not experiment_ids:
        raise InvalidParameter("Missing value for required parameter 'experiment_ids'.")
    seen = await search_visibility(request, ResourceType.EXPERIMENT)
    await request.app[SERVICE].metrics.wait_all_visible()
    page = await request.app[SERVICE].logged_models.search(
        experiment_ids=experiment_ids,
        filter_string=fields.str("filter") or None,
        order_by=_order_by(fields),
        max_results=validate_max_results(fields.int("max_results"), MAX_SEARCH_RESULTS, 50),
        page_token=fields.str("page_token") or None,
        visibility=seen,
    )
    return page_response(
        "models", [encode_logged_model(m) for m in page.items], page.next_page_token
    )


def _on_logged_model(level: Permission) -> On:
    """``level`` on the logged model the path's ``{model_id}`` names (its experiment's)."""
    return On(Target.LOGGED_MODEL_ID, "model_id", level, where=Where.PATH)


_CREATE = AllOf(
    (
        On(Target.EXPERIMENT_ID, "experiment_id", Permission.EDIT),
        On(Target.RUN_ID, "source_run_id", Permission.READ, optional=True),
    )
)
_EDIT, _MANAGE = _on_logged_model(Permission.EDIT), _on_logged_model(Permission.MANAGE)
_ID = "/logged-models/{model_id}"
ROUTES = [
    Route("POST", "/logged-models", create_logged_model, _CREATE),
    Route(
        "POST",
        "/logged-models/search",
        search_logged_models,
        Filtered(ResourceType.EXPERIMENT),
        abandon_on_disconnect=True,
    ),
    Route("GET", _ID, get_logged_model, _on_logged_model(Permission.READ)),
    Route("PATCH", _ID, finalize_logged_model, _EDIT),
    Route("DELETE", _ID, delete_logged_model, _MANAGE),
    Route("PATCH", f"{_ID}/tags", set_logged_model_tags, _EDIT),
    Route("DELETE", f"{_ID}/tags/{{key}}", delete_logged_model_tag, _MANAGE),
    Route("POST", f"{_ID}/params", log_logged_model_params, _EDIT),
]
