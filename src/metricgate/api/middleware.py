"""Turns every failure into MLflow's ``{"error_code", "message"}`` body with MLflow's status,
counts requests, and gives each request its id (observability.py)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import ClientPayloadError, web
from aiohttp.typedefs import Middleware
from prometheus_client import Counter

from metricgate.api.routing import client_gone
from metricgate.domain.auth.client_address import Network, from_trusted_proxy
from metricgate.domain.errors import MetricgateError, Unavailable
from metricgate.health_log import ThrottledLog
from metricgate.observability import (
    METRICS,
    REQUEST_ID_HEADER,
    current_request_id,
    new_request_id,
    set_request_id,
    valid_request_id,
)

log = logging.getLogger(__name__)
_UNAVAILABLE_LOG = ThrottledLog(log)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp raises these for transport-level problems; map them to MLflow codes.
_HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "ENDPOINT_NOT_FOUND",
    413: "INVALID_PARAMETER_VALUE",
}


# nginx's "client closed request": the client went away before its answer could be sent. Not a
# real HTTP status (nothing reaches the client); it keeps dropped clients out of both the 5xx
# rate (not our fault) and the 400s (the request was not malformed), under a numeric label.
CLIENT_CLOSED_STATUS = 499


def _caused_by_disconnect(exc: BaseException) -> bool:
    """Whether ``exc``, or what it wraps, is how aiohttp reports a connection that went away.

    aiohttp fails a pending body read with the error of ``connection_lost`` (a bare
    ``ConnectionResetError("Connection lost")`` after a FIN, the socket's error after a RST) and
    a write to a closed transport with ``ClientConnectionResetError``; a store may wrap either.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (ConnectionError, ClientPayloadError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def client_disconnected(request: web.Request, exc: BaseException) -> bool:
    """A failure that is the client's leaving, not ours: a connection error *and* the client's
    connection closed. Both, so that a reset of one of our own connections (S3, a webhook
    target) during a request whose client is still there stays a server error."""
    return _caused_by_disconnect(exc) and client_gone(request)


def _log_disconnect(request: web.Request, exc: BaseException) -> None:
    # Routine (flaky networks, killed clients, timeouts on their side): one line, no traceback.
    log.info(
        "client closed the connection during %s %s (%s: %s); request abandoned",
        request.method, request.path, type(exc).__name__, exc,
    )  # fmt: skip


def error_response(
    error_code: str,
    message: str,
    status: int,
    headers: dict[str, str] | None = None,
    extra_fields: dict[str, object] | None = None,
) -> web.Response:
    body = orjson.dumps({"error_code": error_code, "message": message, **(extra_fields or {})})
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


def _route_name(request: web.Request) -> str:
    """The route template (a bounded set), not the path: ids stay out of labels and log keys."""
    route = request.match_info.route.resource
    return route.canonical if route is not None else "unmatched"


def request_id_middleware(trusted_proxies: tuple[Network, ...]) -> Middleware:
    """Outermost: the request's id, for its logs, audit entries and answer. A trusted proxy's
    well-formed ``X-Request-Id`` is kept (one id from the edge to the database); anyone else's
    is ignored, so a client cannot pick the id its audit entries are filed under."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get(REQUEST_ID_HEADER)
        trusted = given is not None and from_trusted_proxy(request.remote, trusted_proxies)
        set_request_id(given if trusted and valid_request_id(given) else new_request_id())
        return await handler(request)

    return middleware


async def answer_request_id(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: every answer names its request, errors and streams included
    (it runs in the request's task, where the id was set)."""
    request_id = current_request_id()
    if request_id is not None:
        response.headers[REQUEST_ID_HEADER] = request_id


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts requests by route template (bounded label set) and final status."""
    name = _route_name(request)
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError as exc:
        # A handler is cancelled when its client leaves (where the server is set to cancel
        # handlers then, as aiohttp's test server is) or at shutdown; only the first is the
        # client's doing. The cancellation itself must go on.
        if client_gone(request):
            status = CLIENT_CLOSED_STATUS
            _log_disconnect(request, exc)
        raise
    finally:
        counter = _REQUEST_COUNTERS.get((name, status))
        if counter is None:  # labels() takes a lock and builds a key: do it once per pair
            counter = _REQUEST_COUNTERS[(name, status)] = METRICS.requests.labels(name, str(status))
        counter.inc()


_REQUEST_COUNTERS: dict[tuple[str, int], Counter] = {}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except MetricgateError as exc:
        if exc.status >= 500 and client_disconnected(request, exc):
            # A store that wrapped the failed body read (e.g. as "storage unavailable").
            _log_disconnect(request, exc)
            return web.Response(status=CLIENT_CLOSED_STATUS, reason="Client Closed Request")
        headers = None
        if isinstance(exc, Unavailable):
            headers = {"Retry-After": str(max(1, int(exc.retry_after_s)))}
            # Throttled per route and message: during an outage every write gets a 503, and the
            # outage itself is logged once by the loop that watches the dependency.
            _UNAVAILABLE_LOG.warning(
                (_route_name(request), exc.message),
                "%s %s unavailable: %s",
                request.method,
                request.path,
                exc.message,
            )
        return error_response(exc.error_code, exc.message, exc.status, headers, exc.extra_fields)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_ERROR_CODES.get(
            exc.status, "BAD_REQUEST" if exc.status < 500 else "INTERNAL_ERROR"
        )
        if exc.status == 404:
            message = f"No endpoint {request.method} {request.path}"
        elif exc.status == 405:
            message = f"Method {request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            message = "Request body is too large"
        else:
            message = exc.reason or "Bad request"
        return error_response(code, message, exc.status)
    except Exception as exc:
        if client_disconnected(request, exc):
            _log_disconnect(request, exc)
            # Nobody reads it; it carries the status to metrics_middleware and the access log.
            return web.Response(status=CLIENT_CLOSED_STATUS, reason="Client Closed Request")
        # Our fault: log the traceback, never send it.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("INTERNAL_ERROR", "Internal server error", 500)
