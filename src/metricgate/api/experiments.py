"""Experiment endpoints: decode -> store -> encode; no SQL here."""

from __future__ import annotations

from aiohttp import web

from metricgate.api.access import creator_granted, creator_of
from metricgate.api.audit import deletion_audit
from metricgate.api.codec import (
    Fields,
    decode_tags,
    empty_response,
    encode_experiment,
    json_response,
    page_response,
    read_fields,
    read_json,
)
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.api.search_access import search_visibility
from metricgate.domain.auth.access import Authenticated, Filtered, On, Target
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.entities import Tag
from metricgate.domain.tracking.rules import (
    MAX_EXPERIMENTS_PER_PAGE,
    parse_experiment_id,
    validate_experiment_name,
    validate_experiment_tag,
    validate_max_results,
)

VIEW_TYPES = ("ACTIVE_ONLY", "DELETED_ONLY", "ALL")
_VIEW_TYPE_NUMBERS = {"1": "ACTIVE_ONLY", "2": "DELETED_ONLY", "3": "ALL"}


def parse_view_type(fields: Fields, name: str) -> str:
    """Enums arrive by name, or by number from clients that send proto enums as ints."""
    raw = fields.raw.get(name)
    if raw is None or raw == "":
        return "ACTIVE_ONLY"
    value = _VIEW_TYPE_NUMBERS.get(str(raw), str(raw).upper())
    if value not in VIEW_TYPES:
        raise InvalidParameter(
            f"Invalid value {raw!r} for parameter '{name}': expected one of {list(VIEW_TYPES)}"
        )
    return value


def _experiment_id(fields: Fields) -> int:
    return parse_experiment_id(fields.req_str("experiment_id"))


async def create_experiment(request: web.Request) -> web.Response:
    fields = await read_json(request)
    name = fields.req_str("name")
    validate_experiment_name(name)
    tags = decode_tags(fields.dict_list("tags"))
    for tag in tags:
        validate_experiment_tag(tag)
    location = fields.str("artifact_location") or None
    creator = creator_of(request)
    experiment_id = await request.app[SERVICE].experiments.create(name, location, tags, creator)
    creator_granted(request, creator)
    return json_response({"experiment_id": experiment_id})


async def get_experiment(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    experiment = await request.app[SERVICE].experiments.get(_experiment_id(fields))
    return json_response({"experiment": encode_experiment(experiment)})


async def get_experiment_by_name(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    experiment = await request.app[SERVICE].experiments.get_by_name(
        fields.req_str("experiment_name")
    )
    return json_response({"experiment": encode_experiment(experiment)})


async def search_experiments(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    max_results = validate_max_results(fields.int("max_results"), MAX_EXPERIMENTS_PER_PAGE, 1000)
    page = await request.app[SERVICE].experiments.search(
        view_type=parse_view_type(fields, "view_type"),
        filter_string=fields.str("filter") or None,
        order_by=fields.str_list("order_by"),
        max_results=max_results,
        page_token=fields.str("page_token") or None,
        visibility=await search_visibility(request, ResourceType.EXPERIMENT),
    )
    return page_response(
        "experiments", [encode_experiment(e) for e in page.items], page.next_page_token
    )


async def update_experiment(request: web.Request) -> web.Response:
    fields = await read_json(request)
    experiment_id = _experiment_id(fields)
    new_name = fields.str("new_name")
    if new_name is not None:
        validate_experiment_name(new_name)
        await request.app[SERVICE].experiments.rename(experiment_id, new_name)
    return empty_response()


async def delete_experiment(request: web.Request) -> web.Response:
    fields = await read_json(request)
    service = request.app[SERVICE]
    experiment_id = _experiment_id(fields)
    await service.experiments.delete(experiment_id, audit=deletion_audit(request))
    service.runs.forget_active_runs()  # its runs were deleted with it
    return empty_response()


async def restore_experiment(request: web.Request) -> web.Response:
    fields = await read_json(request)
    await request.app[SERVICE].experiments.restore(_experiment_id(fields))
    return empty_response()


async def set_experiment_tag(request: web.Request) -> web.Response:
    fields = await read_json(request)
    tag = Tag(fields.req_str("key"), fields.str("value", default="") or "")
    validate_experiment_tag(tag)
    await request.app[SERVICE].experiments.set_tag(_experiment_id(fields), tag)
    return empty_response()


async def delete_experiment_tag(request: web.Request) -> web.Response:
    fields = await read_json(request)
    await request.app[SERVICE].experiments.delete_tag(_experiment_id(fields), fields.req_str("key"))
    return empty_response()


def _on_experiment(level: Permission) -> On:
    return On(Target.EXPERIMENT_ID, "experiment_id", level)


_SEARCH = Filtered(ResourceType.EXPERIMENT)
ROUTES = [
    Route("POST", "/experiments/create", create_experiment, Authenticated()),
    Route("GET", "/experiments/get", get_experiment, _on_experiment(Permission.READ)),
    Route(
        "GET",
        "/experiments/get-by-name",
        get_experiment_by_name,
        On(Target.EXPERIMENT_NAME, "experiment_name", Permission.READ),
    ),
    Route("POST", "/experiments/search", search_experiments, _SEARCH, abandon_on_disconnect=True),
    Route("GET", "/experiments/search", search_experiments, _SEARCH, abandon_on_disconnect=True),
    Route("POST", "/experiments/update", update_experiment, _on_experiment(Permission.EDIT)),
    Route("POST", "/experiments/delete", delete_experiment, _on_experiment(Permission.MANAGE)),
    Route("POST", "/experiments/restore", restore_experiment, _on_experiment(Permission.MANAGE)),
    Route(
        "POST",
        "/experiments/set-experiment-tag",
        set_experiment_tag,
        _on_experiment(Permission.EDIT),
    ),
    Route(
        "POST",
        "/experiments/delete-experiment-tag",
        delete_experiment_tag,
        _on_experiment(Permission.EDIT),
    ),
]
