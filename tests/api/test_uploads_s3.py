"""The resumable upload API on the S3 store: moto (fast) and SeaweedFS (a real S3 that checks
checksums), over real HTTP and PostgreSQL. Staged parts are uncompleted multipart uploads."""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from tests.api.conftest import Api

import upload_client as uc
from metricgate.api.keys import SERVICE
from metricgate.config import Settings
from metricgate.stores.postgres.uploads import PgUploadStore
from metricgate.uploads.sweeper import UploadSweeper
from s3_services import S3Endpoint

PART = 5 * 1024 * 1024  # S3's minimum for every part but the last


@pytest.fixture(params=["moto", "seaweed"])
def endpoint(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> S3Endpoint:
    found: S3Endpoint = request.getfixturevalue(f"s3_{request.param}")
    for name, value in found.env().items():  # credentials reach the store by environment only
        monkeypatch.setenv(name, value)
    return found


@pytest.fixture
def prefix() -> str:
    return f"uploads-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def settings(settings: Settings, endpoint: S3Endpoint, prefix: str) -> Settings:
    artifacts = dataclasses.replace(
        settings.artifacts, uri=f"s3://{endpoint.bucket}/{prefix}", s3_endpoint_url=endpoint.url
    )
    uploads = dataclasses.replace(
        settings.uploads,
        sweep_interval_s=3600,
        reference_uri_prefixes=(f"s3://{endpoint.bucket}/{prefix}-external",),
        min_part_bytes=1024 * 1024,  # a misconfiguration S3 must not inherit (see the test below)
    )
    return dataclasses.replace(settings, artifacts=artifacts, uploads=uploads)


@pytest.fixture
async def run(api: Api) -> dict[str, Any]:
    return await api.create_run(await api.create_experiment())


def root_of(run: dict[str, Any]) -> str:
    return str(run["info"]["artifact_uri"]).removeprefix("mlflow-artifacts:/")


async def test_file_upload_in_parallel_parts_on_s3(
    client: TestClient[Any, Any], run: dict[str, Any], endpoint: S3Endpoint, prefix: str
) -> None:
    data = uc.blob(2 * PART + 4321, seed=1)
    parts = uc.split(data, PART)
    spec = [{"size": len(data), "sha256": uc.sha256(data)}]
    sid = (await uc.create(client, run["info"]["run_id"], "ckpt/model.pt", spec, PART)).ok()[
        "upload_id"
    ]
    await uc.upload_parts(client, sid, 0, parts, numbers=[3, 1, 2], parallel=3)
    key = f"{prefix}/{root_of(run)}/ckpt/model.pt"
    s3 = endpoint.client()
    assert (
        s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=key).get("KeyCount", 0) == 0
    )  # staged only
    (await uc.download(client, f"{root_of(run)}/ckpt/model.pt")).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )

    assert (await uc.complete(client, sid)).ok()["state"] == "committed"
    assert (await uc.download(client, f"{root_of(run)}/ckpt/model.pt")).raw == data
    assert s3.head_object(Bucket=endpoint.bucket, Key=key)["ContentLength"] == len(data)
    assert await uc.run_listing(client, run["info"]["run_id"], "ckpt") == {
        "ckpt/model.pt": len(data)
    }


async def test_directory_with_a_bad_checksum_leaves_nothing_on_s3(
    client: TestClient[Any, Any], run: dict[str, Any], endpoint: S3Endpoint, prefix: str
) -> None:
    good, bad = uc.blob(PART + 1, 2), uc.blob(100, 3)
    specs = [{"path": "a.bin", "size": len(good), "sha256": uc.sha256(good)},
             {"path": "b.bin", "size": len(bad), "sha256": uc.sha256(b"not b")}]  # fmt: skip
    sid = (await uc.create(client, run["info"]["run_id"], "d", specs, PART, directory=True)).ok()[
        "upload_id"
    ]
    await uc.upload_parts(client, sid, 0, uc.split(good, PART))
    await uc.upload_parts(client, sid, 1, uc.split(bad, PART))
    (await uc.complete(client, sid)).error(400, "INVALID_PARAMETER_VALUE", "SHA-256")
    s3 = endpoint.client()
    assert (
        s3.list_objects_v2(Bucket=endpoint.bucket, Prefix=f"{prefix}/{root_of(run)}/d/").get(
            "KeyCount", 0
        )
        == 0
    )
    store = client.server.app[SERVICE].artifacts
    assert await store.stage_list() == []


async def test_gc_aborts_expired_and_orphaned_multipart_uploads(
    client: TestClient[Any, Any], run: dict[str, Any], db_url: str
) -> None:
    service = client.server.app[SERVICE]
    store = service.artifacts.inner
    sid = (
        await uc.create(client, run["info"]["run_id"], "old.bin", [{"size": 2 * PART}], PART)
    ).ok()["upload_id"]
    await uc.upload_parts(client, sid, 0, uc.split(uc.blob(2 * PART, 4), PART), numbers=[1])
    orphan = await store.stage_begin(f"{root_of(run)}/orphan.bin")
    assert len(await store.stage_list()) == 2
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "UPDATE upload_sessions SET expires_at = now() - interval '1 minute' WHERE session_id = $1",
            sid,
        )
    finally:
        await conn.close()
    time.sleep(1.1)  # S3 reports upload start times in whole seconds
    upload_settings = dataclasses.replace(service.settings.uploads, ttl_s=1.0)
    report = await UploadSweeper(
        store, PgUploadStore(service.db), service.uploads.committer, upload_settings
    ).sweep()
    assert report.expired == 1 and report.orphans_aborted == 1
    assert orphan not in [s[1] for s in await store.stage_list()]
    assert await store.stage_list() == []


async def test_s3_reference_is_verified_listed_and_streamed(
    client: TestClient[Any, Any], run: dict[str, Any], endpoint: S3Endpoint, prefix: str
) -> None:
    data = uc.blob(123_456, 5)
    key = f"{prefix}-external/ckpt/step-9.pt"
    endpoint.client().put_object(Bucket=endpoint.bucket, Key=key, Body=data)
    uri = f"s3://{endpoint.bucket}/{key}"
    rid = run["info"]["run_id"]
    body = {"run_id": rid, "path": "step-9.pt", "uri": uri, "size": len(data)}
    (await uc.call(client, "POST", uc.REFERENCES, body={**body, "size": 1})).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await uc.call(client, "POST", uc.REFERENCES, body={**body, "uri": uri + ".missing"})).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )
    (
        await uc.call(
            client,
            "POST",
            uc.REFERENCES,
            body={**body, "uri": f"s3://{endpoint.bucket}/{prefix}/x"},
        )
    ).error(400, "INVALID_PARAMETER_VALUE", "outside")
    ref = (await uc.call(client, "POST", uc.REFERENCES, body=body)).ok()["reference"]
    assert ref["etag"]
    assert await uc.listing(client, root_of(run)) == {"step-9.pt": len(data)}
    assert (await uc.download(client, f"{root_of(run)}/step-9.pt")).raw == data
    ranged = await uc.download(client, f"{root_of(run)}/step-9.pt", headers={"Range": "bytes=-100"})
    assert ranged.status == 206 and ranged.raw == data[-100:]


async def test_commit_rolled_forward_after_s3_completed_but_before_it_was_recorded(
    client: TestClient[Any, Any], run: dict[str, Any], db_url: str
) -> None:
    files = {"a.bin": uc.blob(PART + 3, 6), "b.bin": uc.blob(7, 7)}
    session = await uc.upload_directory(
        client, run["info"]["run_id"], "m", files, PART, complete_it=False
    )
    sid = session["upload_id"]
    # The gateway died right after CompleteMultipartUpload of a.bin: its staging is gone, the
    # object is in place, PostgreSQL does not know. Roll-forward must recognise it by its size.
    await uc.sql(
        db_url,
        "UPDATE upload_sessions SET state = 'committing',"
        " commit_heartbeat_at = now() - interval '1 hour' WHERE session_id = $1",
        sid,
    )
    await uc.commit_in_store(client, db_url, sid, 0)
    assert await uc.listing(client, root_of(run)) == {}
    service = client.server.app[SERVICE]
    sweeper = UploadSweeper(
        service.artifacts.inner,
        PgUploadStore(service.db),
        service.uploads.committer,
        service.settings.uploads,
    )
    assert (await sweeper.sweep()).rolled_forward == 1
    assert (await uc.get(client, sid)).ok()["state"] == "committed"
    for name, data in files.items():
        assert (await uc.download(client, f"{root_of(run)}/m/{name}")).raw == data


async def test_part_sizes_s3_cannot_commit_are_refused_up_front(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    # METRICGATE_UPLOAD_MIN_PART_BYTES is 1 MiB here, but S3 would refuse such parts only at
    # CompleteMultipartUpload, after the whole upload: the session is refused instead.
    answer = await uc.create(
        client, run["info"]["run_id"], "x.bin", [{"size": 2 * 1024 * 1024}], 1024 * 1024
    )
    answer.error(400, "INVALID_PARAMETER_VALUE", f"at least {PART} bytes")
