"""The artifact client under real process faults: the uploading CLI process killed with SIGKILL
and run again (it resumes, sending only the parts the server lacks), and the gateway killed
mid-upload and restarted (the client's retries carry the same run of the command to the end)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import harness
import pytest

from metricgate.client import download_async

pytestmark = pytest.mark.fault

MIB = 1024 * 1024
UPLOADS = "/api/2.0/metricgate/uploads"
GATEWAY_ENV = {"METRICGATE_UPLOAD_MIN_PART_BYTES": MIB}
# (part size in MiB, file size in MiB) per store: S3 refuses parts under 5 MiB at completion.
SIZES = {"local": (1, 24), "seaweed": (5, 40)}


def store_env(request: pytest.FixtureRequest, kind: str) -> dict[str, str]:
    if kind == "local":
        return {}
    endpoint = request.getfixturevalue("s3_seaweed")
    return {
        "METRICGATE_ARTIFACTS_URI": f"s3://{endpoint.bucket}/client-{uuid.uuid4().hex[:10]}",
        **endpoint.env(),
    }


def source_file(path: Path, size: int, seed: int) -> str:
    data = random.Random(seed).randbytes(size)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def start_upload(url: str, run_id: str, source: Path, cache: Path, log: Path, part_mib: int,
                 *extra: str) -> subprocess.Popen[bytes]:  # fmt: skip
    cmd = [sys.executable, "-m", "metricgate", "artifacts", "upload", str(source), "--run", run_id, "--url", url,
           "--part-size", f"{part_mib}M", "--json", *extra]  # fmt: skip
    with open(log, "ab") as err:
        return subprocess.Popen(cmd, env={**os.environ, "XDG_CACHE_HOME": str(cache)}, stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL)  # fmt: skip


async def session_view(url: str, upload_id: str) -> dict:
    async with aiohttp.ClientSession() as http, http.get(f"{url}{UPLOADS}/{upload_id}") as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


def resume_record(cache: Path) -> dict | None:
    records = list((cache / "metricgate" / "uploads").glob("*.json"))
    return json.loads(records[0].read_text()) if records else None


async def wait_for_parts(
    url: str, cache: Path, proc: subprocess.Popen[bytes], at_least: int
) -> str:
    """The upload id once the server holds ``at_least`` parts of the client's session."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the upload finished before it could be interrupted"
        record = resume_record(cache)
        if record is not None:
            view = await session_view(url, record["upload_id"])
            if len(view["files"][0]["parts"]) >= at_least:
                return str(record["upload_id"])
        await asyncio.sleep(0.005)
    raise AssertionError("the server never saw enough parts")


async def verify_download(url: str, run_id: str, artifact: str, tmp_path: Path, want: str) -> None:
    got = await download_async(
        run_id, artifact, tmp_path / "check.bin", url=url, chunk_size=3 * MIB
    )
    assert [(f.sha256, f.verified) for f in got.files] == [(want, True)]


@pytest.mark.parametrize("kind", ["local", "seaweed"])
async def test_client_killed_then_rerun_sends_only_missing_parts(
    cluster: harness.Cluster, request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    gateway = cluster.gateway(**GATEWAY_ENV, **store_env(request, kind)).start()
    gateway.wait_healthy()
    run_id = (await harness.create_runs(gateway.url, 1, "client-kill"))[0]
    part_mib, file_mib = SIZES[kind]
    parts = file_mib // part_mib + 1
    want = source_file(tmp_path / "ckpt.bin", file_mib * MIB + 333, seed=7)
    cache, log = tmp_path / "cache", tmp_path / "client.log"

    first = start_upload(
        gateway.url, run_id, tmp_path / "ckpt.bin", cache, log, part_mib, "--parallel", "2"
    )
    try:
        upload_id = await wait_for_parts(gateway.url, cache, first, at_least=3)
        # Freeze the gateway so the client is surely mid-upload (parts in flight), then kill it.
        gateway.freeze()
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        gateway.thaw()
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == -signal.SIGKILL

    # Requests whose body had fully arrived may still land after the thaw: wait until it settles.
    before = await session_view(gateway.url, upload_id)
    for _ in range(10):
        await asyncio.sleep(2.0)  # a part spooled to S3 can take a while to be recorded
        again = await session_view(gateway.url, upload_id)
        if again["files"][0]["missing_parts"] == before["files"][0]["missing_parts"]:
            break
        before = again
    assert before["state"] == "open"
    missing = before["files"][0]["missing_parts"]
    assert 0 < len(missing) < parts, missing

    second = start_upload(
        gateway.url, run_id, tmp_path / "ckpt.bin", cache, log, part_mib, "--parallel", "4"
    )
    out, _ = second.communicate(timeout=120)
    assert second.returncode == 0, log.read_text()[-3000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["upload_id"] == upload_id and summary["resumed"] is True
    # Exactly the parts the server lacked went up again; nothing it had was re-sent.
    assert sorted(n for _, n in summary["sent"]) == sorted(missing)
    after = await session_view(gateway.url, upload_id)
    assert after["state"] == "committed" and after["files"][0]["missing_parts"] == []
    assert resume_record(cache) is None
    await verify_download(gateway.url, run_id, "ckpt.bin", tmp_path, want)


@pytest.mark.parametrize("kind", ["local", "seaweed"])
async def test_gateway_killed_mid_upload_client_retries_through_restart(
    cluster: harness.Cluster, request: pytest.FixtureRequest, tmp_path: Path, kind: str
) -> None:
    gateway = cluster.gateway(**GATEWAY_ENV, **store_env(request, kind)).start()
    gateway.wait_healthy()
    run_id = (await harness.create_runs(gateway.url, 1, "gateway-kill"))[0]
    part_mib, file_mib = SIZES[kind]
    want = source_file(tmp_path / "ckpt.bin", file_mib * MIB + 5, seed=8)
    cache, log = tmp_path / "cache", tmp_path / "client.log"

    proc = start_upload(gateway.url, run_id, tmp_path / "ckpt.bin", cache, log, part_mib, "--parallel", "2",
                        "--dest", "c/x.bin")  # fmt: skip
    try:
        upload_id = await wait_for_parts(gateway.url, cache, proc, at_least=2)
        gateway.kill()
        await asyncio.sleep(1.0)  # the client sees refused connections and backs off
        gateway.start()
        gateway.wait_healthy()
        out, _ = await asyncio.to_thread(proc.communicate, timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-3000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["upload_id"] == upload_id and summary["retries"] > 0
    assert (await session_view(gateway.url, upload_id))["state"] == "committed"
    await verify_download(gateway.url, run_id, "c/x.bin", tmp_path, want)


async def test_ctrl_c_exits_130_at_once_and_the_rerun_resumes(
    cluster: harness.Cluster, tmp_path: Path
) -> None:
    gateway = cluster.gateway(**GATEWAY_ENV).start()
    gateway.wait_healthy()
    run_id = (await harness.create_runs(gateway.url, 1, "client-sigint"))[0]
    want = source_file(tmp_path / "ckpt.bin", 24 * MIB + 1, seed=9)
    cache, log = tmp_path / "cache", tmp_path / "client.log"

    proc = start_upload(
        gateway.url, run_id, tmp_path / "ckpt.bin", cache, log, 1, "--parallel", "2"
    )
    try:
        upload_id = await wait_for_parts(gateway.url, cache, proc, at_least=3)
        gateway.freeze()  # requests hang: the interrupt must not wait for them (or for hashing)
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        await asyncio.to_thread(proc.wait, 15)
        assert time.monotonic() - started < 10
    finally:
        gateway.thaw()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, log.read_text()[-2000:]
    assert "run the same command again to resume" in log.read_text()
    assert resume_record(cache)["upload_id"] == upload_id

    again = start_upload(gateway.url, run_id, tmp_path / "ckpt.bin", cache, log, 1)
    out, _ = await asyncio.to_thread(again.communicate, timeout=120)
    assert again.returncode == 0, log.read_text()[-3000:]
    summary = json.loads(out.decode().strip().splitlines()[-1])
    assert summary["upload_id"] == upload_id and summary["resumed"] and summary["parts_sent"] < 25
    await verify_download(gateway.url, run_id, "ckpt.bin", tmp_path, want)


async def test_s3_store_refuses_parts_below_s3_minimum_up_front(
    cluster: harness.Cluster, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """With METRICGATE_UPLOAD_MIN_PART_BYTES below S3's 5 MiB on an s3:// root, a session of 1 MiB
    parts is accepted, every part is stored, and only CompleteMultipartUpload fails
    (EntityTooSmall): the session is aborted and all its bytes are lost. The part size should be
    refused when the session is created (or the setting refused at start-up)."""
    gateway = cluster.gateway(**GATEWAY_ENV, **store_env(request, "seaweed")).start()
    gateway.wait_healthy()
    run_id = (await harness.create_runs(gateway.url, 1, "s3-min-part"))[0]
    body = {"run_id": run_id, "path": "x.bin", "part_size": MIB, "files": [{"size": 2 * MIB}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway.url}{UPLOADS}", json=body) as resp,
    ):
        assert resp.status == 400, await resp.text()
