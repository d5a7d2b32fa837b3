"""A client that goes away while its request body is arriving is not a server error (issue 11 §4).

Every way a handler reads a body (``read_json``: log-batch, log-metric; the raw GraphQL body; the
streamed artifact PUT; MLflow's proxied multipart part; the resumable upload part) is driven over
a real server socket: the request line, headers announcing a long body (Content-Length or
chunked), part of the body, then the connection is closed (FIN) or reset (RST). Each case asserts
that the request is counted as ``status="499"`` (nginx's "client closed request"), never
``"500"``; that nothing is logged at ERROR or with a traceback; and that nothing partial was stored.

Two servers, because aiohttp surfaces the disconnect differently in each: production's
(``server.serve``: the handler keeps running and its body read raises ``ConnectionResetError``)
and aiohttp's test server (``handler_cancellation=True``: the handler is cancelled).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from tests.api.conftest import Api, now_ms

import upload_client as uc
from metricgate.api.app import create_app
from metricgate.config import Settings
from metricgate.server import serve
from scripts import devservices


@pytest.fixture
def client(module_client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """One app and database for the module (tests/conftest.py ``module_client``)."""
    return module_client


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

REQUESTS = "metricgate_http_requests_total"
ANNOUNCED_BYTES = 1_000_000
PART = 64 * 1024
DISCONNECT_WAIT_S = 10.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Small upload parts (64 KiB): the test sends a quarter of one, then goes away.
    uploads = dataclasses.replace(
        settings.uploads, min_part_bytes=PART, max_part_bytes=4 * PART, sweep_interval_s=3600
    )
    return dataclasses.replace(settings, uploads=uploads)


@dataclass
class Target:
    """One request that will be cut short, and how to see that it stored nothing."""

    method: str
    path: str  # with its query string
    route: str  # the route template metrics_middleware labels it with
    headers: dict[str, str]
    body_prefix: bytes  # what arrives before the client goes away
    announced: int  # Content-Length (or, chunked, the size of the first chunk)
    nothing_stored: Callable[[], Awaitable[None]]


@dataclass
class Live:
    """A server on a real socket, and an HTTP client for it (``request(method, absolute path)``)."""

    http: Any
    host: str
    port: int


@contextlib.asynccontextmanager
async def production_server(settings: Settings) -> AsyncIterator[Live]:
    """``server.serve`` (the runner of ``metricgate serve``) in this process, on a free port."""
    port = devservices.find_free_port()
    http_settings = dataclasses.replace(settings.http, host="127.0.0.1", port=port, access_log=True)
    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(dataclasses.replace(settings, http=http_settings), stop=stop, handle_signals=False)
    )
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + 20
            while True:
                assert not task.done(), task
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get("/health") as resp:
                        if resp.status == 200:
                            break
                assert time.monotonic() < deadline, "server.serve did not start"
                await asyncio.sleep(0.05)
            yield Live(http, "127.0.0.1", port)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.fixture(params=["serve", "test-server"])
async def live(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Live]:
    if request.param == "test-server":
        async with TestClient(
            TestServer(create_app(settings))
        ) as client:  # as the ``client`` fixture
            yield Live(client, client.host, client.port)
        return
    async with production_server(settings) as server:
        yield server


@pytest.fixture
def api(live: Live) -> Api:
    return Api(live.http)


async def scrape(live: Live) -> Samples:
    async with live.http.request("GET", "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by_status(samples: Samples, status: str) -> dict[str, float]:
    """``metricgate_http_requests_total`` per route for one status label."""
    out: dict[str, float] = {}
    for (name, labels), value in samples.items():
        label = dict(labels)
        if name == REQUESTS and label.get("status") == status:
            out[label["route"]] = value
    return out


def stored_files(root: Path) -> list[str]:
    """Every regular file under the artifact root except a staged upload's own record."""
    if not root.exists():
        return []
    return sorted(
        os.path.relpath(os.path.join(d, f), root)
        for d, _, files in os.walk(root)
        for f in files
        if f != "upload.json"
    )


async def cut_short(live: Live, target: Target, close: str, framing: str) -> None:
    """Send ``target``'s head and part of its body on a raw socket, then go away."""
    reader, writer = await asyncio.open_connection(live.host, live.port)
    head = [f"{target.method} {target.path} HTTP/1.1", f"Host: {live.host}:{live.port}"]
    head += [f"{k}: {v}" for k, v in target.headers.items()]
    body = target.body_prefix
    if framing == "chunked":
        head.append("Transfer-Encoding: chunked")
        body = f"{target.announced:x}\r\n".encode() + body
    else:
        head.append(f"Content-Length: {target.announced}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
    await writer.drain()
    await asyncio.sleep(0.2)  # the handler is now waiting for the rest of the body
    assert not reader.at_eof(), "the server answered before the body was complete"
    if close == "rst":
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass


async def wait_counted(live: Live, route: str, before: Samples) -> Samples:
    """Scrape until the cut-short request has been counted (the server notices the close async)."""
    deadline = time.monotonic() + DISCONNECT_WAIT_S
    while True:
        after = await scrape(live)
        if by_status(after, "499").get(route, 0) > by_status(before, "499").get(route, 0):
            return after
        if by_status(after, "500") != by_status(before, "500"):
            return after  # counted as a server error: the assertions below say so
        assert time.monotonic() < deadline, f"{route}: the dropped request was never counted"
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------- the targets


async def log_batch(api: Api, root: Path) -> Target:
    run_id = await api.new_run_id()
    body = orjson.dumps(
        {
            "run_id": run_id,
            "metrics": [{"key": "partial", "value": 1.0, "timestamp": now_ms(), "step": 0}],
        }
    )

    async def nothing_stored() -> None:
        # runs/get waits until acknowledged points are flushed: it is a read-your-writes barrier.
        (await api.log_metric(run_id, "marker", 1.0)).ok()
        metrics = {m["key"] for m in (await api.get_run(run_id))["data"].get("metrics", [])}
        assert metrics == {"marker"}

    return Target(
        "POST", "/api/2.0/mlflow/runs/log-batch", "/api/2.0/mlflow/runs/log-batch",
        {"Content-Type": "application/json"}, body[:-2], ANNOUNCED_BYTES, nothing_stored,
    )  # fmt: skip


async def log_batch_opening(api: Api, root: Path) -> Target:
    """The issue's exact case: 100000 bytes announced, closed after ``{"run_id": "``."""
    target = await log_batch(api, root)
    target.body_prefix = b'{"run_id": "'
    target.announced = 100_000
    return target


async def log_metric(api: Api, root: Path) -> Target:
    run_id = await api.new_run_id()
    body = orjson.dumps(
        {"run_id": run_id, "key": "partial", "value": 1.0, "timestamp": now_ms(), "step": 0}
    )

    async def nothing_stored() -> None:
        (await api.log_metric(run_id, "marker", 1.0)).ok()
        metrics = {m["key"] for m in (await api.get_run(run_id))["data"].get("metrics", [])}
        assert metrics == {"marker"}

    return Target(
        "POST", "/api/2.0/mlflow/runs/log-metric", "/api/2.0/mlflow/runs/log-metric",
        {"Content-Type": "application/json"}, body[:-1], ANNOUNCED_BYTES, nothing_stored,
    )  # fmt: skip


async def graphql(api: Api, root: Path) -> Target:
    async def nothing_stored() -> None:
        pass  # a read-only endpoint: the assertions on counters and logs are the point

    return Target(
        "POST", "/graphql", "/graphql", {"Content-Type": "application/json"},
        b'{"query": "query { mlflowGetRun', ANNOUNCED_BYTES, nothing_stored,
    )  # fmt: skip


async def artifact_put(api: Api, root: Path) -> Target:
    path = "disconnect/model.bin"

    async def nothing_stored() -> None:
        (await api.get(f"/api/2.0/mlflow-artifacts/artifacts/{path}", absolute=True)).error(404)
        listing = (
            await api.get(
                "/api/2.0/mlflow-artifacts/artifacts", {"path": "disconnect"}, absolute=True
            )
        ).ok()
        assert listing.get("files", []) == []
        assert stored_files(root) == []  # no staging file left behind either

    return Target(
        "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}", "/api/2.0/mlflow-artifacts/artifacts/{path}",
        {"Content-Type": "application/octet-stream"}, os.urandom(256 * 1024), ANNOUNCED_BYTES * 4, nothing_stored,
    )  # fmt: skip


async def mpu_part(api: Api, root: Path) -> Target:
    created = (
        await api.post(
            "/api/2.0/mlflow-artifacts/mpu/create/disconnect",
            {"path": "/tmp/big.bin", "num_parts": 1},
            absolute=True,
        )
    ).ok()
    upload_id = created["upload_id"]

    async def nothing_stored() -> None:
        done = await api.post(
            "/api/2.0/mlflow-artifacts/mpu/complete/disconnect",
            {
                "path": "/tmp/big.bin",
                "upload_id": upload_id,
                "parts": [{"part_number": 1, "etag": "x"}],
            },
            absolute=True,
        )
        done.error((400, 404))
        (
            await api.get("/api/2.0/mlflow-artifacts/artifacts/disconnect/big.bin", absolute=True)
        ).error(404)
        assert stored_files(root) == []

    return Target(
        "PUT", f"/api/2.0/mlflow-artifacts/mpu/part/disconnect/big.bin?upload_id={upload_id}&part_number=1",
        "/api/2.0/mlflow-artifacts/mpu/part/{path}", {"Content-Type": "application/octet-stream"},
        os.urandom(256 * 1024), ANNOUNCED_BYTES * 4, nothing_stored,
    )  # fmt: skip


async def upload_part(api: Api, root: Path) -> Target:
    run = await api.create_run(await api.create_experiment())
    data = uc.blob(2 * PART, seed=11)
    session = (
        await uc.create(
            api.client,
            run["info"]["run_id"],
            "ckpt.bin",
            [{"size": len(data), "sha256": uc.sha256(data)}],
            PART,
        )
    ).ok()
    upload_id = session["upload_id"]

    async def nothing_stored() -> None:
        state = (await uc.get(api.client, upload_id)).ok()
        assert state["files"][0]["missing_parts"] == [1, 2]
        assert state["files"][0]["parts"] == []
        assert stored_files(root) == []
        # The client retries the part in full: it is taken (the cut-short attempt left no trace).
        await uc.upload_parts(api.client, upload_id, 0, uc.split(data, PART))
        assert (await uc.complete(api.client, upload_id)).ok()["state"] == "committed"

    return Target(
        "PUT", f"{uc.UPLOADS}/{upload_id}/files/0/parts/1",
        "/api/2.0/metricgate/uploads/{upload_id}/files/{file_index}/parts/{part_number}",
        {"Content-Type": "application/octet-stream"}, data[: PART // 4], PART, nothing_stored,
    )  # fmt: skip


TARGETS: dict[str, Callable[[Api, Path], Awaitable[Target]]] = {
    "log-batch": log_batch,
    "log-batch-opening": log_batch_opening,
    "log-metric": log_metric,
    "graphql": graphql,
    "artifact-put": artifact_put,
    "mpu-part": mpu_part,
    "upload-part": upload_part,
}


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("close", ["fin", "rst"])
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
@pytest.mark.parametrize("which", list(TARGETS))
async def test_a_client_gone_mid_body_is_counted_499_logged_quietly_and_stores_nothing(
    live: Live,
    api: Api,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    which: str,
    framing: str,
    close: str,
) -> None:
    root = Path(settings.artifacts.uri.removeprefix("file://"))
    target = await TARGETS[which](api, root)
    before = await scrape(live)
    caplog.clear()
    caplog.set_level(logging.INFO)

    await cut_short(live, target, close, framing)
    after = await wait_counted(live, target.route, before)

    assert by_status(after, "500") == by_status(before, "500"), (
        "a dropped client was counted as a server error"
    )
    assert (
        by_status(after, "499").get(target.route, 0) - by_status(before, "499").get(target.route, 0)
        == 1
    )
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info or r.exc_text]
    assert loud == [], [(r.name, r.levelname, r.getMessage()) for r in loud]
    quiet = [
        r
        for r in caplog.records
        if r.name.startswith("metricgate") and "closed the connection" in r.getMessage()
    ]
    assert len(quiet) == 1 and quiet[0].levelno in (logging.INFO, logging.WARNING), caplog.records
    await target.nothing_stored()


async def test_the_server_keeps_serving_after_dropped_clients(
    live: Live, api: Api, settings: Settings
) -> None:
    """Ten clients gone mid-body at once leave the server answering and counting normally."""
    root = Path(settings.artifacts.uri.removeprefix("file://"))
    target = await log_batch(api, root)
    before = await scrape(live)
    await asyncio.gather(
        *(cut_short(live, target, "rst" if i % 2 else "fin", "content-length") for i in range(10))
    )
    deadline = time.monotonic() + DISCONNECT_WAIT_S
    while (
        by_status(await scrape(live), "499").get(target.route, 0)
        - by_status(before, "499").get(target.route, 0)
        < 10
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    after = await scrape(live)
    assert by_status(after, "500") == by_status(before, "500")
    await target.nothing_stored()
