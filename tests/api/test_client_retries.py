"""The artifact client's retries against a small in-process HTTP server: 429 with Retry-After,
503, and a 4xx that must not be retried."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from metricgate.client.errors import ClientError, ServerUnavailable
from metricgate.client.http import Api, RetryPolicy


async def flaky_server(answers: list[Callable[[], web.Response]]) -> tuple[TestServer, list[float]]:
    """Answers the n-th request with ``answers[n]()``; records when each arrived."""
    seen: list[float] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(time.monotonic())
        return answers[len(seen) - 1]()

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    server = TestServer(app)
    await server.start_server()
    return server, seen


async def test_retry_after_is_honoured_then_success() -> None:
    server, seen = await flaky_server([
        lambda: web.Response(status=429, headers={"Retry-After": "0.4"}),
        lambda: web.Response(status=503),
        lambda: web.json_response({"ok": True}),
    ])  # fmt: skip
    try:
        async with Api(str(server.make_url("")), policy=RetryPolicy(initial_s=0.01)) as api:
            assert await api.json("GET", "/x") == {"ok": True}
            assert api.retries == 2
        assert seen[1] - seen[0] >= 0.38  # waited as told, not its own 10 ms backoff
    finally:
        await server.close()


async def test_client_errors_are_not_retried_and_carry_the_mlflow_error() -> None:
    body = {"error_code": "INVALID_PARAMETER_VALUE", "message": "part 3 has the wrong size"}
    server, seen = await flaky_server([lambda: web.json_response(body, status=400)])
    try:
        async with Api(str(server.make_url(""))) as api:
            with pytest.raises(ClientError) as caught:
                await api.put_bytes("/p", b"abc", {}, what="part 3")
        assert len(seen) == 1
        assert caught.value.status == 400 and caught.value.error_code == "INVALID_PARAMETER_VALUE"
        assert (
            str(caught.value)
            == "part 3: HTTP 400 INVALID_PARAMETER_VALUE: part 3 has the wrong size"
        )
    finally:
        await server.close()


async def test_gives_up_after_the_attempts() -> None:
    server, seen = await flaky_server([lambda: web.Response(status=502)] * 3)
    try:
        async with Api(
            str(server.make_url("")), policy=RetryPolicy(attempts=3, initial_s=0.01)
        ) as api:
            with pytest.raises(ServerUnavailable, match="gave up after 3 attempts"):
                await api.json("POST", "/x", body={})
        assert len(seen) == 3
    finally:
        await server.close()
