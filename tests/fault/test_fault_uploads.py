"""Upload sessions under real process faults: kill -9 of the gateway while parts stream in and
while a directory is being committed; after a restart nothing partial is listed or
downloadable, the upload resumes, and every file's SHA-256 matches the source."""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid

import aiohttp
import asyncpg
import harness
import pytest

import upload_client as uc

pytestmark = pytest.mark.fault

MIB = 1024 * 1024
UPLOAD_ENV = {
    "METRICGATE_UPLOAD_MIN_PART_BYTES": MIB,
    "METRICGATE_UPLOAD_SWEEP_INTERVAL_S": 0.5,
    # Long enough to look at the hidden state after a restart, short enough for a quick test.
    "METRICGATE_UPLOAD_COMMIT_LEASE_S": 4,
}


def http_for(gateway: harness.MgProcess) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(base_url=gateway.url, timeout=aiohttp.ClientTimeout(total=60))


async def new_run(gateway: harness.MgProcess) -> tuple[str, str]:
    """(run id, the store path of its artifact root)."""
    run_id = (await harness.create_runs(gateway.url, 1, "uploads"))[0]
    async with http_for(gateway) as http:
        run = (
            await uc.call(http, "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id})
        ).ok()["run"]
    return run_id, run["info"]["artifact_uri"].removeprefix("mlflow-artifacts:/")


async def session_row(db_url: str, session_id: str) -> tuple[str, int, int]:
    """(state, files committed, files) straight from PostgreSQL."""
    conn = await asyncpg.connect(db_url)
    try:
        row = await conn.fetchrow(
            """SELECT s.state, count(f.committed_at) AS done, count(*) AS total
               FROM upload_sessions s JOIN upload_files f USING (session_id)
               WHERE s.session_id = $1 GROUP BY s.state""",
            session_id,
        )
    finally:
        await conn.close()
    assert row is not None
    return row["state"], row["done"], row["total"]


def store_env(request: pytest.FixtureRequest, kind: str) -> dict[str, str]:
    """Gateway environment for the artifact store ``kind``: the local default, or a bucket
    prefix of its own on the session's SeaweedFS (a real S3 server)."""
    if kind == "local":
        return {}
    endpoint = request.getfixturevalue("s3_seaweed")
    return {
        "METRICGATE_ARTIFACTS_URI": f"s3://{endpoint.bucket}/fault-{uuid.uuid4().hex[:10]}",
        **endpoint.env(),
    }


@pytest.mark.parametrize("kind", ["local", "seaweed"])
async def test_kill_during_part_uploads_then_resume(
    cluster: harness.Cluster, request: pytest.FixtureRequest, kind: str
) -> None:
    gateway = cluster.gateway(**UPLOAD_ENV, **store_env(request, kind)).start()
    gateway.wait_healthy()
    run_id, root = await new_run(gateway)
    part_size = 5 * MIB  # S3's minimum
    data = uc.blob(16 * part_size + 17, seed=1)
    parts = uc.split(data, part_size)
    async with http_for(gateway) as http:
        spec = [{"size": len(data), "sha256": uc.sha256(data)}]
        sid = (await uc.create(http, run_id, "ckpt.bin", spec, part_size)).ok()["upload_id"]
        uploads = asyncio.create_task(uc.upload_parts(http, sid, 0, parts, parallel=4))
        # Let a few parts land, then kill the gateway with requests in flight.
        deadline = time.monotonic() + 30
        while len((await uc.get(http, sid)).ok()["files"][0]["parts"]) < 3:
            assert time.monotonic() < deadline and not uploads.done()
            await asyncio.sleep(0.01)
        gateway.kill()
        with pytest.raises(aiohttp.ClientError):
            await uploads

    gateway.start()
    gateway.wait_healthy()
    async with http_for(gateway) as http:
        state = (await uc.get(http, sid)).ok()
        assert state["state"] == "open"
        missing = state["files"][0]["missing_parts"]
        assert 0 < len(missing) < len(parts), missing
        (await uc.download(http, f"{root}/ckpt.bin")).error(404, "RESOURCE_DOES_NOT_EXIST")
        await uc.upload_parts(http, sid, 0, parts, numbers=missing)
        assert (await uc.complete(http, sid)).ok()["state"] == "committed"
        got = await uc.download(http, f"{root}/ckpt.bin")
        assert got.status == 200 and uc.sha256(got.raw) == uc.sha256(data)


@pytest.mark.parametrize("kind", ["local", "seaweed"])
async def test_kill_during_directory_commit_rolls_forward(
    cluster: harness.Cluster, request: pytest.FixtureRequest, kind: str
) -> None:
    gateway = cluster.gateway(**UPLOAD_ENV, **store_env(request, kind)).start()
    gateway.wait_healthy()
    run_id, root = await new_run(gateway)
    files = {f"shard-{i:02d}.bin": uc.blob(6 * MIB + i, seed=i) for i in range(16)}
    async with http_for(gateway) as http:
        # 5 MiB parts: S3's minimum, so every file has a full part and a short last one.
        session = await uc.upload_directory(
            http, run_id, "model", files, 5 * MIB, complete_it=False
        )
        sid = session["upload_id"]
        completing = asyncio.create_task(uc.complete(http, sid))
        # Kill -9 once some files are committed and some are not: the worst moment.
        deadline = time.monotonic() + 60
        while True:
            state, done, total = await session_row(cluster.db_url, sid)
            if state == "committing" and 0 < done < total:
                break
            assert state != "committed", "the commit finished before the test could interrupt it"
            assert time.monotonic() < deadline
            await asyncio.sleep(0.002)
        gateway.kill()
        with pytest.raises(aiohttp.ClientError):
            await completing
    state, done, total = await session_row(cluster.db_url, sid)
    assert state == "committing" and 0 < done < total, (state, done, total)

    gateway.start()
    gateway.wait_healthy()
    async with http_for(gateway) as http:
        # While the commit is not rolled forward, nothing of the directory is visible, not even
        # the files that are physically in place already.
        before = await session_row(cluster.db_url, sid)
        listed_root = await uc.listing(http, root)
        listed_run = await uc.run_listing(http, run_id, "model")
        first = await uc.download(http, f"{root}/model/shard-00.bin")
        after = await session_row(cluster.db_url, sid)
        if before[0] == after[0] == "committing":
            assert listed_root == {} and listed_run == {}
            first.error(404, "RESOURCE_DOES_NOT_EXIST")
        # A retried complete while the dead committer's lease runs answers "committing".
        deadline = time.monotonic() + 60
        while (answer := (await uc.complete(http, sid)).ok())["state"] != "committed":
            assert answer["state"] == "committing"
            assert time.monotonic() < deadline, "the sweeper never rolled the commit forward"
            await asyncio.sleep(0.2)
        assert await uc.listing(http, f"{root}/model") == {
            name: len(d) for name, d in files.items()
        }
        for name, data in files.items():
            got = await uc.download(http, f"{root}/model/{name}")
            assert got.status == 200 and uc.sha256(got.raw) == uc.sha256(data), name


async def test_session_survives_a_graceful_restart(cluster: harness.Cluster) -> None:
    gateway = cluster.gateway(**UPLOAD_ENV).start()
    gateway.wait_healthy()
    run_id, root = await new_run(gateway)
    data = uc.blob(3 * MIB + 5, seed=9)
    parts = uc.split(data, MIB)
    async with http_for(gateway) as http:
        spec = [{"path": "w.bin", "size": len(data), "sha256": uc.sha256(data)}]
        sid = (await uc.create(http, run_id, "dir", spec, MIB, directory=True)).ok()["upload_id"]
        await uc.upload_parts(http, sid, 0, parts, numbers=[4, 2])
    # SIGTERM (the exit itself is tests/process' subject); the session lives in PostgreSQL.
    gateway.terminate()
    gateway.start()
    gateway.wait_healthy()
    async with http_for(gateway) as http:
        assert (await uc.get(http, sid)).ok()["files"][0]["missing_parts"] == [1, 3]
        await uc.upload_parts(http, sid, 0, parts, numbers=[1, 3])
        assert (await uc.complete(http, sid)).ok()["state"] == "committed"
        assert uc.sha256((await uc.download(http, f"{root}/dir/w.bin")).raw) == uc.sha256(data)


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the most resident memory the process ever had."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


async def test_gateway_memory_stays_bounded_during_a_large_upload(cluster: harness.Cluster) -> None:
    """A 384 MiB file in 32 MiB parts, four at a time, plus its SHA-256 read-back at completion:
    the gateway's peak RSS must not grow with the file (parts and hashes stream)."""
    gateway = cluster.gateway(**UPLOAD_ENV).start()
    gateway.wait_healthy()
    run_id, root = await new_run(gateway)
    part_size, parts_count = 32 * MIB, 12
    part = uc.blob(part_size, seed=3)  # the same part repeated keeps the test's own memory small
    whole = hashlib.sha256()
    for _ in range(parts_count):
        whole.update(part)
    async with http_for(gateway) as http:
        spec = [{"size": part_size * parts_count, "sha256": whole.hexdigest()}]
        sid = (await uc.create(http, run_id, "big.bin", spec, part_size)).ok()["upload_id"]
        baseline = peak_rss_bytes(gateway.pid)
        await uc.upload_parts(http, sid, 0, [part] * parts_count, parallel=4)
        assert (await uc.complete(http, sid)).ok()["state"] == "committed"
        async with http.get(f"{uc.ARTIFACTS}/{root}/big.bin") as resp:
            assert resp.status == 200
            got = hashlib.sha256()
            async for chunk in resp.content.iter_chunked(MIB):
                got.update(chunk)
        assert got.hexdigest() == whole.hexdigest()
    growth = peak_rss_bytes(gateway.pid) - baseline
    assert growth < 150 * MIB, (
        f"gateway peak RSS grew by {growth / MIB:.0f} MiB for a {parts_count * 32} MiB upload"
    )
