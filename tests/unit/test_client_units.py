"""Pieces of the artifact client that need no metricgate server: retries against a small
in-process HTTP server (429 with Retry-After, 503, a 4xx that must not be retried), sizes,
part sizing, the resume record and the byte progress line."""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from metricgate.cli.artifacts import parse_size
from metricgate.client.errors import ClientError, ServerUnavailable
from metricgate.client.http import Api, RetryPolicy
from metricgate.client.progress import ByteProgress, human_bytes
from metricgate.client.resume import ResumeRecord, ResumeStore, SourceFile
from metricgate.client.upload import MAX_PARTS_PER_FILE, choose_part_size

MIB = 1024 * 1024


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


def test_sizes_and_part_sizing() -> None:
    assert parse_size("67108864") == 64 * MIB
    assert parse_size("64M") == parse_size("64MiB") == parse_size("64mb") == 64 * MIB
    assert parse_size("2G") == 2048 * MIB
    with pytest.raises(Exception, match="invalid size"):
        parse_size("lots")
    assert choose_part_size(20 * 1024 * MIB, None) == 32 * MIB
    big = 400 * 1024 * 1024 * MIB
    assert big / choose_part_size(big, None) <= MAX_PARTS_PER_FILE
    assert choose_part_size(10, 5 * MIB) == 5 * MIB
    assert human_bytes(512) == "512 B" and human_bytes(3 * MIB / 2) == "1.5 MiB"


def test_resume_record_round_trip_and_change_detection(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    store = ResumeStore(tmp_path / "state", base_url="http://h:1", run_id="r", dest="d", source=src)
    files = [SourceFile("", str(src), 1, 123)]
    assert store.load() is None
    store.save(ResumeRecord("a" * 32, 5 * MIB, files))
    loaded = store.load()
    assert loaded is not None and loaded.upload_id == "a" * 32 and loaded.matches(files)
    assert not loaded.matches([SourceFile("", str(src), 1, 124)])  # touched since: a new session
    other = ResumeStore(
        tmp_path / "state", base_url="http://h:1", run_id="r", dest="other", source=src
    )
    assert other.load() is None
    store.clear()
    assert store.load() is None


def test_progress_line_shows_bytes_rate_and_eta() -> None:
    out = io.StringIO()
    bar = ByteProgress("upload x", stream=out, log_interval_s=0.0)
    bar(0, 100 * MIB)
    bar.started -= 2.0  # as if two seconds had passed
    bar(50 * MIB, 100 * MIB)
    line = out.getvalue().strip().splitlines()[-1]
    assert "50.0 MiB/100.0 MiB" in line and "MiB/s" in line and "ETA 0:0" in line, line
