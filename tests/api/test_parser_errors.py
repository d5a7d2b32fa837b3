"""What a request that aiohttp's HTTP parser refuses gets (issue 11 "Also"; docs/errors.md).

These answers come from aiohttp before any handler or middleware runs, so they are not MLflow's
JSON error body: a plain-text 400 (the parser's reason) and a closed connection. They are pinned
here over raw sockets (an HTTP client would refuse to send most of them): the status, that the
body is not pretending to be JSON, and that the server answers the next request as usual. The
limits are aiohttp's defaults, which ``metricgate serve`` does not change (server.py builds its
``AppRunner`` without parser arguments); the test server uses the same runner and parser.

One contrast is pinned too: a body over ``METRICGATE_MAX_BODY_BYTES`` is refused by the
application (413), so it does get MLflow's JSON error body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from tests.conftest import fresh_database

from metricgate.api.app import create_app
from metricgate.config import Settings
from metricgate.health_log import quiet_library_logs


@pytest.fixture
def client(module_client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """One app and database for the module (tests/conftest.py ``module_client``)."""
    return module_client


# aiohttp's defaults (web_protocol.RequestHandler): what docs/errors.md states.
MAX_LINE_SIZE = 8190
MAX_FIELD_SIZE = 8190
MAX_HEADERS = 128

DEADLINE_S = 20.0


@dataclass
class RawReply:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after answering

    def __repr__(self) -> str:
        return f"<{self.status} {self.headers.get('content-type')!r} {self.body[:200]!r} closed={self.closed}>"


async def exchange(client: TestClient[Any, Any], raw: bytes) -> RawReply:
    """Send ``raw`` on a new connection; read one response (and whether the server then closes)."""

    async def _go() -> RawReply:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        try:
            writer.write(raw)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {
                k.strip().lower(): v.strip()
                for k, _, v in (line.partition(":") for line in lines[1:] if line)
            }
            length = int(headers.get("content-length", "0"))
            body = await reader.readexactly(length)
            try:
                rest = await asyncio.wait_for(reader.read(1), 2.0)
                closed = rest == b""
            except TimeoutError:
                closed = False
            return RawReply(status, headers, body, closed)
        finally:
            writer.close()

    return await asyncio.wait_for(_go(), DEADLINE_S)


def _request(
    line: str = "GET /health HTTP/1.1", headers: list[str] | None = None, body: bytes = b""
) -> bytes:
    # Connection: close, so that a well-formed request's connection ends after its answer too
    # and ``closed`` says something only about the malformed ones.
    head = [line, "Host: test", "Connection: close", *(headers if headers is not None else [])]
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Served:
    client: TestClient[Any, Any]
    settings: Settings


@pytest.fixture(scope="module")
async def served(
    pg_server_url: str,
    migrated_template: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Served]:
    """One server for the module: no request here reaches a store."""
    root: Path = tmp_path_factory.mktemp("parser-errors")
    async with fresh_database(pg_server_url, migrated_template) as db:
        settings = Settings.from_env(
            {}, database_url=db, redis_url=redis_url, artifacts_uri=(root / "a").as_uri()
        )
        async with TestClient(TestServer(create_app(settings))) as client:
            yield Served(client, settings)


# (id, raw request); each must be a plain-text 400 from the parser.
PARSER_400: list[tuple[str, bytes]] = [
    ("request-line-too-long", _request(f"GET /health?q={'a' * (MAX_LINE_SIZE + 10)} HTTP/1.1")),
    (
        "url-too-long-on-api",
        _request(f"GET /api/2.0/mlflow/runs/get?run_id={'a' * (MAX_LINE_SIZE + 10)} HTTP/1.1"),
    ),
    ("header-value-too-long", _request(headers=[f"X-Big: {'a' * (MAX_FIELD_SIZE + 10)}"])),
    ("header-name-too-long", _request(headers=[f"X-{'a' * (MAX_FIELD_SIZE + 10)}: 1"])),
    ("too-many-headers", _request(headers=[f"X-H{i}: 1" for i in range(MAX_HEADERS + 10)])),
    (
        "content-length-not-a-number",
        _request("POST /api/2.0/mlflow/runs/create HTTP/1.1", ["Content-Length: abc"]),
    ),
    (
        "content-length-negative",
        _request("POST /api/2.0/mlflow/runs/create HTTP/1.1", ["Content-Length: -1"]),
    ),
    (
        "content-length-twice-differing",
        _request(
            "POST /api/2.0/mlflow/runs/create HTTP/1.1",
            ["Content-Length: 2", "Content-Length: 3"],
            b"{}",
        ),
    ),
    (
        "content-length-and-chunked",
        _request(
            "POST /api/2.0/mlflow/runs/create HTTP/1.1",
            ["Content-Length: 2", "Transfer-Encoding: chunked"],
            b"{}",
        ),
    ),
    (
        "chunk-size-not-hex",
        _request(
            "POST /api/2.0/mlflow/runs/create HTTP/1.1",
            ["Transfer-Encoding: chunked", "Content-Type: application/json"],
            b"zz\r\n{}\r\n0\r\n\r\n",
        ),
    ),
    (
        "transfer-encoding-unknown",
        _request("POST /api/2.0/mlflow/runs/create HTTP/1.1", ["Transfer-Encoding: gzip"], b"{}"),
    ),
    ("method-with-bad-characters", _request("G(T /health HTTP/1.1")),
    ("space-in-target", _request("GET /hea lth HTTP/1.1")),
    ("not-http", _request("GET /health FOO/1.1")),
    ("header-without-colon", _request(headers=["NoColonHere"])),
    ("nul-in-header", _request(headers=["X-A: a\x00b"])),
    ("obsolete-line-folding", _request(headers=["X-A: a", " folded"])),
]


@pytest.mark.parametrize("raw", [r for _, r in PARSER_400], ids=[i for i, _ in PARSER_400])
async def test_parser_refusals_are_plain_text_400s(served: Served, raw: bytes) -> None:
    client = served.client
    reply = await exchange(client, raw)
    assert reply.status == 400, reply
    # aiohttp's own answer: text, not MLflow's JSON (no handler ran).
    assert reply.headers.get("content-type", "").startswith("text/plain"), reply
    assert reply.closed, reply  # the parser's state is unknown after an error: the connection ends
    # The server is unharmed: the next request on a new connection is answered as usual.
    after = await exchange(client, _request())
    assert (after.status, after.body) == (200, b"OK"), after


async def test_limits_are_aiohttps_defaults(served: Served) -> None:
    """Just under each limit still works (docs/errors.md quotes them)."""
    client = served.client
    # The request line holds method, target and version: leave room for "GET " and " HTTP/1.1".
    target = "/health?q=" + "a" * (MAX_LINE_SIZE - len("GET /health?q= HTTP/1.1") - 8)
    assert (await exchange(client, _request(f"GET {target} HTTP/1.1"))).status == 200
    assert (
        await exchange(client, _request(headers=[f"X-Big: {'a' * (MAX_FIELD_SIZE - 100)}"]))
    ).status == 200
    assert (
        await exchange(client, _request(headers=[f"X-H{i}: 1" for i in range(MAX_HEADERS - 10)]))
    ).status == 200


async def test_body_over_the_limit_is_an_mlflow_error(served: Served) -> None:
    """Unlike the parser's refusals, the body limit is the application's: 413 in MLflow's format."""
    client = served.client
    size = served.settings.http.max_body_bytes + 1
    raw = _request("POST /api/2.0/mlflow/runs/log-batch HTTP/1.1",
                   ["Content-Type: application/json", f"Content-Length: {size}"], b"x" * size)  # fmt: skip
    reply = await exchange(client, raw)
    assert reply.status == 413, reply
    assert reply.headers.get("content-type", "").startswith("application/json"), reply
    body = orjson.loads(reply.body)
    assert body == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "Request body is too large",
    }, reply
    assert (await exchange(client, _request())).status == 200


async def test_parser_refusals_are_logged_as_one_info_line(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    """The client's mistake is not our error: no ERROR and no traceback per refused request
    (health_log.ClientProtocolErrorFilter, installed by `metricgate serve` and `flush`)."""
    quiet_library_logs()
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        for _, raw in PARSER_400[:6]:
            assert (await exchange(served.client, raw)).status == 400
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "aiohttp logged nothing: the filter was not tested"
    assert all(r.levelno == logging.INFO and not r.exc_info for r in records), [
        (r.levelname, r.getMessage()) for r in records
    ]
    assert all("Error handling request" in r.getMessage() for r in records)
