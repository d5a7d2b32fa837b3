"""``GET|POST /graphql``: what MLflow's web UI sends its GraphQL operations to.

Answers as stock MLflow 3.17.2 does (mlflow/server/handlers.py ``_graphql``): HTTP 200 with
``{"data": ..., "errors": [<message>, ...] | null}`` (errors are bare message strings, not
GraphQL's ``{message, locations, path}`` objects) for every well-formed request, validation,
limit and syntax errors included. Stock answers a syntax error, a batched (JSON list) body or a
body without ``query`` with a bare 500; here a syntax error is an ordinary ``errors`` entry, and
a body that is not one GraphQL request is a 400 in MLflow's error format (as GraphQL over HTTP
asks for a request that is not well-formed, and as stock answers a non-JSON Content-Type).
"""

from __future__ import annotations

import functools
import logging
from inspect import isawaitable
from typing import Any

import orjson
from aiohttp import web
from graphql import DocumentNode, GraphQLError, execute, parse, validate

from metricgate.api.access import resource_access
from metricgate.api.codec import check_json_content_type
from metricgate.api.graphql.executor import execution_context_class
from metricgate.api.graphql.limits import QueryTooComplex, check_document
from metricgate.api.graphql.resolvers import RESOLVERS, Context
from metricgate.api.graphql.schema import Schema, load_sdl
from metricgate.api.keys import SERVICE
from metricgate.api.routing import Route
from metricgate.api.search_access import search_access
from metricgate.domain.auth.access import Authenticated
from metricgate.domain.errors import BadRequest, MetricgateError

log = logging.getLogger(__name__)

SCHEMA = Schema(load_sdl(), RESOLVERS)
_EXECUTION_CONTEXT = execution_context_class(SCHEMA)

# Parser bounds, before the selection limits (limits.py) look at the document: the UI's largest
# operation has ~200 tokens and stock's introspection query ~300; a 4 MiB body of tokens would
# otherwise be parsed in full.
MAX_QUERY_CHARS = 100_000
MAX_QUERY_TOKENS = 10_000

# The UI sends the same few documents over and over (charts poll): parse and validate once.
_PREPARED_CACHE_SIZE = 256
_CACHEABLE_CHARS = 20_000


def _read_json_request(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("Malformed JSON in request body") from None
    if isinstance(body, list):
        raise BadRequest(
            "Batched GraphQL requests are not supported: send one operation per request."
        )
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object with a 'query'.")
    return body


async def _graphql_request(request: web.Request) -> tuple[str, dict[str, Any] | None, str | None]:
    """(query, variables, operationName) from a JSON body, or from the query string of a GET."""
    if request.method == "GET":
        body: dict[str, Any] = dict(request.query)
        if body.get("variables"):
            try:
                body["variables"] = orjson.loads(body["variables"])
            except orjson.JSONDecodeError:
                raise BadRequest("'variables' must be a JSON object.") from None
        else:
            body["variables"] = None
    else:
        check_json_content_type(request)
        body = _read_json_request(await request.read())
    query, variables, operation_name = (
        body.get("query"),
        body.get("variables"),
        body.get("operationName"),
    )
    if not isinstance(query, str) or not query.strip():
        raise BadRequest("Missing value for required parameter 'query'.")
    if variables is not None and not isinstance(variables, dict):
        raise BadRequest("'variables' must be a JSON object.")
    if operation_name is not None and not isinstance(operation_name, str):
        raise BadRequest("'operationName' must be a string.")
    return query, variables, operation_name


def _prepare(query: str) -> tuple[DocumentNode | None, list[str]]:
    """The parsed document, or the messages saying why it cannot run."""
    if len(query) > MAX_QUERY_CHARS:
        return None, [f"Query exceeds maximum length of {MAX_QUERY_CHARS} characters"]
    try:
        document = parse(query, max_tokens=MAX_QUERY_TOKENS)
        check_document(document)
    except GraphQLError as exc:
        return None, [exc.message]
    except QueryTooComplex as exc:
        return None, [str(exc)]
    errors = validate(SCHEMA.graphql, document)
    if errors:
        return None, [e.message for e in errors]
    return document, []


_prepare_cached = functools.lru_cache(maxsize=_PREPARED_CACHE_SIZE)(_prepare)


def _error_message(error: GraphQLError) -> str:
    """What the client sees for one error: ours are MLflow messages, a bug says no more than that."""
    original = error.original_error
    if original is None or isinstance(original, GraphQLError) or error.path is None:
        return error.message  # a request error (variables, operation name), worded by graphql-core
    if isinstance(original, MetricgateError):
        return original.message
    log.error("GraphQL field %s failed", ".".join(map(str, error.path)), exc_info=original)
    return "Internal server error"


async def run_graphql(
    context: Context, query: str, variables: dict[str, Any] | None, operation_name: str | None
) -> dict[str, Any]:
    """``{"data", "errors"}`` of one GraphQL request, as stock renders it."""
    document, messages = (_prepare_cached if len(query) <= _CACHEABLE_CHARS else _prepare)(query)
    if document is None:
        return {"data": None, "errors": messages}
    result = execute(
        SCHEMA.graphql,
        document,
        context_value=context,
        variable_values=variables,
        operation_name=operation_name,
        execution_context_class=_EXECUTION_CONTEXT,
    )
    if isawaitable(result):
        result = await result
    errors = [_error_message(e) for e in result.errors] if result.errors else None
    return {"data": result.data, "errors": errors}


async def graphql(request: web.Request) -> web.Response:
    query, variables, operation_name = await _graphql_request(request)
    # One view of the caller's grants for the fields and the searches: one re-read at most.
    access = search_access(request)
    context = Context(request.app[SERVICE], resource_access(request, access), access)
    try:
        body = await run_graphql(context, query, variables, operation_name)
    finally:
        context.close()
    return web.Response(body=orjson.dumps(body), content_type="application/json")


# Stock serves it at /graphql only (not under /ajax-api); the UI resolves "graphql" against "/".
# Any user; resolvers decide per field (a denied one is null), as stock's GraphQL middleware.
ROUTES = [
    Route("POST", "/graphql", graphql, Authenticated(), abandon_on_disconnect=True),
    Route("GET", "/graphql", graphql, Authenticated(), abandon_on_disconnect=True),
]
