"""Unit tests for the error tree, its HTTP statuses, and how the middleware renders errors.

The reference is MLflow 3.17.2's ``ERROR_CODE_TO_HTTP_STATUS`` (mlflow/exceptions.py), which the
protocol notes (§3) reproduce.
"""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from metricgate.api.middleware import error_middleware, error_response
from metricgate.domain.errors import (
    HTTP_STATUS_BY_CODE,
    AlreadyExists,
    BadRequest,
    Conflict,
    EndpointNotFound,
    InvalidParameter,
    MetricgateError,
    NotFound,
    NotImplementedYet,
    PayloadTooLarge,
    StoreUnavailable,
    Unavailable,
)

# mlflow/exceptions.py ERROR_CODE_TO_HTTP_STATUS
MLFLOW_STATUS_BY_CODE = {
    "INTERNAL_ERROR": 500,
    "INVALID_STATE": 500,
    "DATA_LOSS": 500,
    "NOT_IMPLEMENTED": 501,
    "TEMPORARILY_UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
    "REQUEST_LIMIT_EXCEEDED": 429,
    "CANCELLED": 499,
    "RESOURCE_EXHAUSTED": 429,
    "ABORTED": 409,
    "RESOURCE_CONFLICT": 409,
    "ALREADY_EXISTS": 409,
    "NOT_FOUND": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "PERMISSION_DENIED": 403,
    "CUSTOMER_UNAUTHORIZED": 401,
    "UNAUTHENTICATED": 401,
    "BAD_REQUEST": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "INVALID_PARAMETER_VALUE": 400,
}


@pytest.mark.parametrize(
    ("cls", "code", "status"),
    [
        (MetricgateError, "INTERNAL_ERROR", 500),
        (InvalidParameter, "INVALID_PARAMETER_VALUE", 400),
        (BadRequest, "BAD_REQUEST", 400),
        (NotFound, "RESOURCE_DOES_NOT_EXIST", 404),
        (EndpointNotFound, "ENDPOINT_NOT_FOUND", 404),
        (AlreadyExists, "RESOURCE_ALREADY_EXISTS", 400),
        (Conflict, "RESOURCE_CONFLICT", 409),
        (PayloadTooLarge, "INVALID_PARAMETER_VALUE", 413),
        (NotImplementedYet, "NOT_IMPLEMENTED", 501),
        (Unavailable, "TEMPORARILY_UNAVAILABLE", 503),
        (StoreUnavailable, "TEMPORARILY_UNAVAILABLE", 503),
    ],
)
def test_error_tree(cls: type[MetricgateError], code: str, status: int) -> None:
    exc = cls("boom")
    assert exc.error_code == code
    assert exc.status == status
    assert exc.message == "boom"
    assert str(exc) == "boom"


def test_hierarchy() -> None:
    assert issubclass(BadRequest, InvalidParameter)
    assert issubclass(EndpointNotFound, NotFound)
    assert issubclass(PayloadTooLarge, InvalidParameter)
    assert issubclass(StoreUnavailable, Unavailable)
    for cls in (
        InvalidParameter,
        NotFound,
        AlreadyExists,
        Conflict,
        NotImplementedYet,
        Unavailable,
    ):
        assert issubclass(cls, MetricgateError)


def test_status_map_agrees_with_mlflow() -> None:
    for code, status in HTTP_STATUS_BY_CODE.items():
        assert MLFLOW_STATUS_BY_CODE[code] == status, code


@pytest.mark.parametrize("code", sorted(MLFLOW_STATUS_BY_CODE))
def test_every_mlflow_code_gets_mlflows_status(code: str) -> None:
    # A subclass that only sets error_code must get MLflow's status, not a default 500
    # (a 500 makes the client retry a request it should not).
    error = type("Custom", (MetricgateError,), {"error_code": code})("x")
    assert error.status == MLFLOW_STATUS_BY_CODE[code]


def test_unknown_code_is_500() -> None:
    error = type("Custom", (MetricgateError,), {"error_code": "SOMETHING_ELSE"})("x")
    assert error.status == 500


def test_unavailable_retry_after() -> None:
    assert Unavailable("down").retry_after_s == 1
    assert Unavailable("down", retry_after_s=7).retry_after_s == 7
    assert StoreUnavailable("db", retry_after_s=2).retry_after_s == 2


# ---------------------------------------------------------------- rendering


def _body(resp: web.StreamResponse) -> dict[str, object]:
    assert isinstance(resp, web.Response)
    assert resp.content_type == "application/json"
    return orjson.loads(resp.body)  # type: ignore[arg-type]


def test_error_response() -> None:
    resp = error_response("RESOURCE_DOES_NOT_EXIST", "Run with id=x not found", 404)
    assert resp.status == 404
    assert _body(resp) == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "Run with id=x not found",
    }


async def _render(
    exc: BaseException, method: str = "POST", path: str = "/api/2.0/mlflow/runs/create"
) -> web.StreamResponse:
    request = make_mocked_request(method, path, loop=asyncio.get_running_loop())

    async def handler(_: web.Request) -> web.StreamResponse:
        raise exc

    return await error_middleware(request, handler)


@pytest.mark.parametrize(
    "exc",
    [
        InvalidParameter("bad"),
        BadRequest("Malformed JSON in request body"),
        NotFound("Run with id=abc not found"),
        EndpointNotFound("nope"),
        AlreadyExists("Experiment(name=x) already exists."),
        Conflict("conflict"),
        PayloadTooLarge("too large"),
        NotImplementedYet("later"),
        MetricgateError("internal"),
    ],
)
async def test_middleware_renders_metricgate_errors(exc: MetricgateError) -> None:
    resp = await _render(exc)
    assert resp.status == exc.status
    assert _body(resp) == {"error_code": exc.error_code, "message": exc.message}
    assert "Retry-After" not in resp.headers


async def test_middleware_unavailable_sets_retry_after() -> None:
    resp = await _render(StoreUnavailable("database is unavailable, retry later", retry_after_s=2))
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "2"
    assert _body(resp)["error_code"] == "TEMPORARILY_UNAVAILABLE"
    resp = await _render(Unavailable("busy", retry_after_s=0))
    assert resp.headers["Retry-After"] == "1"


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (web.HTTPNotFound(), 404, "ENDPOINT_NOT_FOUND"),
        (web.HTTPMethodNotAllowed("PUT", ["POST"]), 405, "ENDPOINT_NOT_FOUND"),
        (
            web.HTTPRequestEntityTooLarge(max_size=10, actual_size=20),
            413,
            "INVALID_PARAMETER_VALUE",
        ),
        (web.HTTPBadRequest(), 400, "BAD_REQUEST"),
        (web.HTTPForbidden(), 403, "BAD_REQUEST"),
        (web.HTTPInternalServerError(), 500, "INTERNAL_ERROR"),
    ],
)
async def test_middleware_renders_http_exceptions(
    exc: web.HTTPException, status: int, code: str
) -> None:
    resp = await _render(exc, "PUT", "/api/2.0/mlflow/nope")
    assert resp.status == status
    body = _body(resp)
    assert body["error_code"] == code
    assert isinstance(body["message"], str) and body["message"]


async def test_middleware_passes_redirects_through() -> None:
    with pytest.raises(web.HTTPFound):
        await _render(web.HTTPFound("/elsewhere"))


async def test_middleware_hides_unexpected_exceptions(caplog: pytest.LogCaptureFixture) -> None:
    resp = await _render(RuntimeError("secret dsn postgresql://user:pw@host/db"))
    assert resp.status == 500
    body = _body(resp)
    assert body == {"error_code": "INTERNAL_ERROR", "message": "Internal server error"}
    assert "postgresql" not in orjson.dumps(body).decode()


async def test_middleware_passes_success_through() -> None:
    request = make_mocked_request("GET", "/health", loop=asyncio.get_running_loop())

    async def handler(_: web.Request) -> web.StreamResponse:
        return web.Response(text="OK")

    resp = await error_middleware(request, handler)
    assert resp.status == 200
