"""Turns every failure into MLflow's ``{"error_code", "message"}`` body with MLflow's status."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from metricgate.errors import MetricgateError, Unavailable
from prometheus_client import Counter

from metricgate.observability import METRICS

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# aiohttp raises these for transport-level problems; map them to MLflow codes.
_HTTP_ERROR_CODES = {
    400: "BAD_REQUEST",
    404: "ENDPOINT_NOT_FOUND",
    405: "ENDPOINT_NOT_FOUND",
    413: "INVALID_PARAMETER_VALUE",
}


def error_response(
    error_code: str, message: str, status: int, headers: dict[str, str] | None = None
) -> web.Response:
    body = orjson.dumps({"error_code": error_code, "message": message})
    return web.Response(body=body, status=status, content_type="application/json", headers=headers)


@web.middleware
async def metrics_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts requests by route template (bounded label set) and final status."""
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unmatched"
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
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
        headers = None
        if isinstance(exc, Unavailable):
            headers = {"Retry-After": str(max(1, int(exc.retry_after_s)))}
            log.warning("%s %s unavailable: %s", request.method, request.path, exc.message)
        return error_response(exc.error_code, exc.message, exc.status, headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _HTTP_ERROR_CODES.get(exc.status, "BAD_REQUEST" if exc.status < 500 else "INTERNAL_ERROR")
        if exc.status == 404:
            message = f"No endpoint {request.method} {request.path}"
        elif exc.status == 405:
            message = f"Method {request.method} is not allowed on {request.path}"
        elif exc.status == 413:
            message = "Request body is too large"
        else:
            message = exc.reason or "Bad request"
        return error_response(code, message, exc.status)
    except Exception:
        # Our fault: log the traceback, never send it.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response("INTERNAL_ERROR", "Internal server error", 500)
