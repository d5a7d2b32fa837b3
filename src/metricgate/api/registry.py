"""MLflow model-registry endpoints (``registered-models/*``, ``model-versions/*``).

Handlers decode, take the audit context from ``audit_from`` and call ``RegistryService``; every
write goes through the service's single choke point (see metricgate.registry.service).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from metricgate.api.access import creator_granted, creator_of
from metricgate.api.audit import deletion_audit
from metricgate.api.auth_common import forget_cached
from metricgate.api.codec import (
    Fields,
    decode_tags,
    empty_response,
    json_response,
    page_response,
    read_fields,
)
from metricgate.api.keys import SERVICE
from metricgate.api.registry_codec import audit_from, encode_model_version, encode_registered_model
from metricgate.api.routing import Route
from metricgate.api.search_access import search_visibility
from metricgate.domain.auth.access import AllOf, Authenticated, Filtered, On, Target
from metricgate.domain.auth.permissions import Permission, ResourceType
from metricgate.domain.auth.visibility import Visibility
from metricgate.domain.registry.entities import ModelVersion, RegisteredModel
from metricgate.domain.tracking.entities import Page, Tag
from metricgate.domain.tracking.rules import validate_max_results
from metricgate.registry.service import RegistryService

MAX_MODELS_PER_PAGE = 1000
DEFAULT_MODELS_PER_PAGE = 100
# The client asks for 10000 versions per page; MLflow's threshold is 200000.
MAX_VERSIONS_PER_PAGE = 200_000
DEFAULT_VERSIONS_PER_PAGE = 10_000


def _registry(request: web.Request) -> RegistryService:
    return request.app[SERVICE].registry


def _model(rm: RegisteredModel) -> web.Response:
    return json_response({"registered_model": encode_registered_model(rm)})


def _version(mv: ModelVersion) -> web.Response:
    return json_response({"model_version": encode_model_version(mv)})


def _tag(fields: Fields) -> Tag:
    return Tag(fields.req_str("key"), fields.str("value") or "")


class _Search(Protocol):
    def __call__(
        self,
        filter_string: str | None,
        order_by: list[str],
        max_results: int,
        page_token: str | None,
        *,
        visibility: Visibility,
    ) -> Awaitable[Page]: ...


async def _search(
    request: web.Request,
    search: _Search,
    field: str,
    encode: Callable[[Any], dict[str, Any]],
    limit: int,
    default: int,
) -> web.Response:
    """The shared body of registered-models/search and model-versions/search: only models
    (versions of models) the caller may read."""
    fields = await read_fields(request)
    max_results = validate_max_results(fields.int("max_results"), limit, default)
    page = await search(
        fields.str("filter") or None,
        fields.str_list("order_by"),
        max_results,
        fields.str("page_token") or None,
        visibility=await search_visibility(request, ResourceType.REGISTERED_MODEL),
    )
    return page_response(field, [encode(item) for item in page.items], page.next_page_token)


# ---------------------------------------------------------------- registered models


async def create_registered_model(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    creator = creator_of(request)
    model = await _registry(request).create_registered_model(
        audit_from(request, fields),
        fields.str("name"),
        decode_tags(fields.dict_list("tags")),
        fields.str("description"),
        creator,
    )
    creator_granted(request, creator)
    return _model(model)


async def get_registered_model(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    return _model(await _registry(request).get_registered_model(fields.str("name")))


async def rename_registered_model(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    model = await _registry(request).rename_registered_model(
        audit_from(request, fields), fields.str("name"), fields.str("new_name")
    )
    # The model's grants moved with it (grant_epoch): they hold on the new name here at once.
    await forget_cached(request, credentials=False)
    return _model(model)


async def update_registered_model(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    model = await _registry(request).update_registered_model(
        audit_from(request, fields), fields.str("name"), fields.str("description")
    )
    return _model(model)


async def delete_registered_model(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    name = fields.str("name")
    await _registry(request).delete_registered_model(
        audit_from(request, fields), name, audit_log=deletion_audit(request)
    )
    await forget_cached(request, credentials=False)  # its grants went with it
    return empty_response()


async def search_registered_models(request: web.Request) -> web.Response:
    return await _search(
        request, _registry(request).search_registered_models, "registered_models", encode_registered_model,
        MAX_MODELS_PER_PAGE, DEFAULT_MODELS_PER_PAGE,
    )  # fmt: skip


async def set_registered_model_tag(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    await _registry(request).set_registered_model_tag(
        audit_from(request, fields), fields.str("name"), _tag(fields)
    )
    return empty_response()


async def delete_registered_model_tag(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    await _registry(request).delete_registered_model_tag(
        audit_from(request, fields), fields.str("name"), fields.str("key")
    )
    return empty_response()


async def get_latest_versions(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    found = await _registry(request).get_latest_versions(
        fields.str("name"), fields.str_list("stages")
    )
    return json_response({"model_versions": [encode_model_version(mv) for mv in found]})


async def set_alias(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    await _registry(request).set_alias(
        audit_from(request, fields), fields.str("name"), fields.str("alias"), fields.str("version")
    )
    return empty_response()


async def delete_alias(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    await _registry(request).delete_alias(
        audit_from(request, fields), fields.str("name"), fields.str("alias")
    )
    return empty_response()


async def get_version_by_alias(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    return _version(
        await _registry(request).get_version_by_alias(fields.str("name"), fields.str("alias"))
    )


# ---------------------------------------------------------------- model versions


async def create_model_version(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    version = await _registry(request).create_model_version(
        audit_from(request, fields),
        name=fields.str("name"),
        source=fields.str("source"),
        run_id=fields.str("run_id") or None,
        tags=decode_tags(fields.dict_list("tags")),
        run_link=fields.str("run_link") or None,
        description=fields.str("description"),
        model_id=fields.str("model_id") or None,
    )
    return _version(version)


async def get_model_version(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    return _version(
        await _registry(request).get_model_version(fields.str("name"), fields.str("version"))
    )


async def update_model_version(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    version = await _registry(request).update_model_version(
        audit_from(request, fields),
        fields.str("name"),
        fields.str("version"),
        fields.str("description"),
    )
    return _version(version)


async def delete_model_version(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    name, version = fields.str("name"), fields.str("version")
    await _registry(request).delete_model_version(
        audit_from(request, fields), name, version, audit_log=deletion_audit(request)
    )
    return empty_response()


async def transition_stage(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    version = await _registry(request).transition_stage(
        audit_from(request, fields),
        fields.str("name"),
        fields.str("version"),
        fields.str("stage", required=True),
        bool(fields.bool("archive_existing_versions", default=False)),
    )
    return _version(version)


async def search_model_versions(request: web.Request) -> web.Response:
    return await _search(
        request, _registry(request).search_model_versions, "model_versions", encode_model_version,
        MAX_VERSIONS_PER_PAGE, DEFAULT_VERSIONS_PER_PAGE,
    )  # fmt: skip


async def get_download_uri(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    version = await _registry(request).get_model_version(fields.str("name"), fields.str("version"))
    return json_response({"artifact_uri": version.storage_location})


async def set_model_version_tag(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    await _registry(request).set_model_version_tag(
        audit_from(request, fields), fields.str("name"), fields.str("version"), _tag(fields)
    )
    return empty_response()


async def delete_model_version_tag(request: web.Request) -> web.Response:
    fields = await read_fields(request)
    await _registry(request).delete_model_version_tag(
        audit_from(request, fields), fields.str("name"), fields.str("version"), fields.str("key")
    )
    return empty_response()


_RM = "/registered-models"
_MV = "/model-versions"
# A version takes its registered model's permission (stock's version tier falls back to it).
_READ, _EDIT, _MANAGE = (
    On(Target.MODEL_NAME, "name", level)
    for level in (Permission.READ, Permission.EDIT, Permission.MANAGE)
)
_SEARCH = Filtered(ResourceType.REGISTERED_MODEL)
# EDIT on the model, and READ on what the version is made from (stock's
# validate_can_create_model_version): its run, its logged model, a models:/ source.
_CREATE_VERSION = AllOf(
    (
        _EDIT,
        On(Target.RUN_ID, "run_id", Permission.READ, optional=True),
        On(Target.LOGGED_MODEL_ID, "model_id", Permission.READ, optional=True),
        On(Target.MODEL_SOURCE, "source", Permission.READ, optional=True),
    )
)
ROUTES = [
    Route("POST", f"{_RM}/create", create_registered_model, Authenticated()),
    Route("GET", f"{_RM}/get", get_registered_model, _READ),
    Route("POST", f"{_RM}/rename", rename_registered_model, _EDIT),
    Route("PATCH", f"{_RM}/update", update_registered_model, _EDIT),
    Route("DELETE", f"{_RM}/delete", delete_registered_model, _MANAGE),
    Route("GET", f"{_RM}/search", search_registered_models, _SEARCH, abandon_on_disconnect=True),
    Route("POST", f"{_RM}/set-tag", set_registered_model_tag, _EDIT),
    Route("DELETE", f"{_RM}/delete-tag", delete_registered_model_tag, _EDIT),
    # The client falls back to GET when POST answers ENDPOINT_NOT_FOUND; serve both.
    Route("POST", f"{_RM}/get-latest-versions", get_latest_versions, _READ),
    Route("GET", f"{_RM}/get-latest-versions", get_latest_versions, _READ),
    Route("POST", f"{_RM}/alias", set_alias, _EDIT),
    Route("DELETE", f"{_RM}/alias", delete_alias, _MANAGE),
    Route("GET", f"{_RM}/alias", get_version_by_alias, _READ),
    Route("POST", f"{_MV}/create", create_model_version, _CREATE_VERSION),
    Route("GET", f"{_MV}/get", get_model_version, _READ),
    Route("PATCH", f"{_MV}/update", update_model_version, _EDIT),
    Route("DELETE", f"{_MV}/delete", delete_model_version, _MANAGE),
    Route("GET", f"{_MV}/search", search_model_versions, _SEARCH, abandon_on_disconnect=True),
    Route("POST", f"{_MV}/transition-stage", transition_stage, _EDIT),
    Route("GET", f"{_MV}/get-download-uri", get_download_uri, _READ),
    Route("POST", f"{_MV}/set-tag", set_model_version_tag, _EDIT),
    Route("DELETE", f"{_MV}/delete-tag", delete_model_version_tag, _MANAGE),
]
