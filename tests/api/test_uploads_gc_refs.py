"""Upload sessions after failures (hidden commits rolled forward, GC of expired sessions and of
orphaned staging) and artifact references, over real HTTP, PostgreSQL and the local store."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from tests.api.conftest import Api

import upload_client as uc
from metricgate.api.keys import SERVICE
from metricgate.config import Settings
from metricgate.stores.postgres.uploads import PgUploadStore
from metricgate.uploads.sweeper import UploadSweeper

PART = 64 * 1024


@pytest.fixture
def external_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "external"
    directory.mkdir()
    return directory


@pytest.fixture
def settings(settings: Settings, external_dir: Path) -> Settings:
    uploads = dataclasses.replace(
        settings.uploads,
        min_part_bytes=PART,
        sweep_interval_s=3600,
        commit_lease_s=0.5,
        reference_uri_prefixes=(external_dir.as_uri(),),
    )
    return dataclasses.replace(settings, uploads=uploads)


@pytest.fixture
async def run(api: Api) -> dict[str, Any]:
    return await api.create_run(await api.create_experiment())


def root_of(run: dict[str, Any]) -> str:
    return str(run["info"]["artifact_uri"]).removeprefix("mlflow-artifacts:/")


def sweeper(client: TestClient[Any, Any], **changes: Any) -> UploadSweeper:
    service = client.server.app[SERVICE]
    assert service.uploads is not None
    upload_settings = dataclasses.replace(service.settings.uploads, **changes)
    return UploadSweeper(
        service.artifacts.inner,
        PgUploadStore(service.db),
        service.uploads.committer,
        upload_settings,
    )


# ---------------------------------------------------------------- a commit interrupted midway


async def test_interrupted_directory_commit_stays_hidden_until_rolled_forward(
    client: TestClient[Any, Any], run: dict[str, Any], db_url: str
) -> None:
    files = {"a.bin": uc.blob(2 * PART, 1), "b.bin": uc.blob(PART + 9, 2), "c/d.bin": uc.blob(3, 3)}
    session = await uc.upload_directory(
        client, run["info"]["run_id"], "model", files, PART, complete_it=False
    )
    sid = session["upload_id"]
    # A gateway that died in the middle of the commit: the session went to committing, the
    # store committed the first file (marked) and the second (the process died before marking it).
    await uc.sql(
        db_url,
        "UPDATE upload_sessions SET state = 'committing', commit_heartbeat_at = now() WHERE session_id = $1",
        sid,
    )
    store = client.server.app[SERVICE].artifacts.inner
    for index in (0, 1):
        await uc.commit_in_store(client, db_url, sid, index)
    await uc.sql(
        db_url,
        "UPDATE upload_files SET committed_at = now() WHERE session_id = $1 AND file_index = 0",
        sid,
    )
    assert await store.size(f"{root_of(run)}/model/b.bin") == PART + 9  # physically there ...

    root = root_of(run)
    assert await uc.listing(client, root) == {}  # ... but hidden from every reader
    assert await uc.listing(client, f"{root}/model") == {}
    assert await uc.run_listing(client, run["info"]["run_id"]) == {}
    (await uc.download(client, f"{root}/model/a.bin")).error(404, "RESOURCE_DOES_NOT_EXIST")
    # complete while another committer holds a live lease: answers "committing", does nothing.
    assert (await uc.complete(client, sid)).ok()["state"] == "committing"

    # A live lease is left alone; once stale, the sweeper rolls the commit forward.
    assert (await sweeper(client, commit_lease_s=3600).sweep()).rolled_forward == 0
    time.sleep(0.6)
    # Two gateways sweeping at once: SKIP LOCKED + the refreshed heartbeat give it to one.
    reports = await asyncio.gather(sweeper(client).sweep(), sweeper(client).sweep())
    assert sorted(r.rolled_forward for r in reports) == [0, 1]
    assert (await uc.get(client, sid)).ok()["state"] == "committed"
    assert await uc.listing(client, f"{root}/model") == {
        "a.bin": 2 * PART,
        "b.bin": PART + 9,
        "c": "dir",
    }
    for name, data in files.items():
        assert (await uc.download(client, f"{root}/model/{name}")).raw == data


# ---------------------------------------------------------------- garbage collection


async def test_sweeper_expires_sessions_and_removes_their_staging(
    client: TestClient[Any, Any], run: dict[str, Any], db_url: str
) -> None:
    store = client.server.app[SERVICE].artifacts.inner
    data = uc.blob(2 * PART, 4)
    stale = (
        await uc.create(client, run["info"]["run_id"], "old.bin", [{"size": len(data)}], PART)
    ).ok()["upload_id"]
    fresh = (
        await uc.create(client, run["info"]["run_id"], "new.bin", [{"size": len(data)}], PART)
    ).ok()["upload_id"]
    await uc.upload_parts(client, stale, 0, uc.split(data, PART), numbers=[1])
    await uc.upload_parts(client, fresh, 0, uc.split(data, PART), numbers=[1])
    await uc.sql(
        db_url,
        "UPDATE upload_sessions SET expires_at = now() - interval '1 minute' WHERE session_id = $1",
        stale,
    )
    assert len(await store.stage_list()) == 2

    report = await sweeper(client).sweep()
    assert report.expired == 1
    assert (await uc.get(client, stale)).ok()["state"] == "expired"
    assert (await uc.get(client, fresh)).ok()["state"] == "open"
    remaining = await store.stage_list()
    fresh_staging = (
        await uc.sql(db_url, "SELECT staging_id FROM upload_files WHERE session_id = $1", fresh)
    )[0][0]
    assert [s[1] for s in remaining] == [fresh_staging]
    (await uc.put_part(client, stale, 0, 2, data[PART:])).error(
        404, "RESOURCE_DOES_NOT_EXIST", "expired"
    )
    # The live session is untouched and still completes.
    await uc.upload_parts(client, fresh, 0, uc.split(data, PART), numbers=[2])
    assert (await uc.complete(client, fresh)).ok()["state"] == "committed"


async def test_sweeper_aborts_staging_no_session_owns(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    store = client.server.app[SERVICE].artifacts.inner
    # What a gateway that crashed between stage_begin and recording its session leaves behind.
    orphan = await store.stage_begin(f"{root_of(run)}/orphan.bin")
    live = (await uc.create(client, run["info"]["run_id"], "live.bin", [{"size": 5}], PART)).ok()[
        "upload_id"
    ]
    assert len(await store.stage_list()) == 2
    # Younger than the TTL: left alone (it may belong to a session being created right now).
    assert (await sweeper(client).sweep()).orphans_aborted == 0
    time.sleep(0.05)
    report = await sweeper(client, ttl_s=0.01).sweep()
    assert report.orphans_aborted == 1
    assert orphan not in [s[1] for s in await store.stage_list()]
    assert len(await store.stage_list()) == 1  # the live session's staging stays
    (await uc.put_part(client, live, 0, 1, b"12345")).ok()


# ---------------------------------------------------------------- references


async def test_reference_is_listed_and_downloaded_without_a_copy(
    client: TestClient[Any, Any], run: dict[str, Any], external_dir: Path, tmp_path: Path
) -> None:
    data = uc.blob(300_000, 5)
    target = external_dir / "ckpt" / "step-100.pt"
    target.parent.mkdir()
    target.write_bytes(data)
    rid = run["info"]["run_id"]
    body = {
        "run_id": rid,
        "path": "checkpoints/step-100.pt",
        "uri": target.as_uri(),
        "size": len(data),
        "sha256": uc.sha256(data),
    }
    ref = (await uc.call(client, "POST", uc.REFERENCES, body=body)).ok()["reference"]
    assert ref["uri"] == target.as_uri() and ref["size"] == len(data) and ref["etag"]

    root = root_of(run)
    assert await uc.listing(client, root) == {"checkpoints": "dir"}
    assert await uc.listing(client, f"{root}/checkpoints") == {"step-100.pt": len(data)}
    assert await uc.run_listing(client, rid, "checkpoints") == {
        "checkpoints/step-100.pt": len(data)
    }
    assert (await uc.download(client, f"{root}/checkpoints/step-100.pt")).raw == data
    ranged = await uc.download(
        client, f"{root}/checkpoints/step-100.pt", headers={"Range": "bytes=10-19"}
    )
    assert ranged.status == 206 and ranged.raw == data[10:20]
    # Not a copy: nothing was written under the artifact root.
    assert not list((tmp_path / "artifacts").rglob("step-100.pt"))
    listed = (await uc.call(client, "GET", uc.REFERENCES, params={"run_id": rid})).ok()[
        "references"
    ]
    assert [r["path"] for r in listed] == ["checkpoints/step-100.pt"]

    (
        await uc.call(
            client,
            "DELETE",
            uc.REFERENCES,
            params={"run_id": rid, "path": "checkpoints/step-100.pt"},
        )
    ).ok()
    assert await uc.listing(client, root) == {}
    # Deleting the artifact through the proxied artifact API removes the reference as well.
    (await uc.call(client, "POST", uc.REFERENCES, body=body)).ok()
    (await uc.call(client, "DELETE", f"{uc.ARTIFACTS}/{root}/checkpoints")).ok()
    assert await uc.listing(client, root) == {}
    (await uc.download(client, f"{root}/checkpoints/step-100.pt")).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )
    assert target.read_bytes() == data  # the referenced object is never touched


async def test_reference_registration_is_verified(
    client: TestClient[Any, Any], run: dict[str, Any], api: Api, external_dir: Path, tmp_path: Path
) -> None:
    target = external_dir / "w.bin"
    target.write_bytes(b"x" * 100)
    rid = run["info"]["run_id"]

    async def register(**fields: Any) -> uc.Answer:
        body = {"run_id": rid, "path": "w.bin", "uri": target.as_uri(), "size": 100, **fields}
        return await uc.call(client, "POST", uc.REFERENCES, body=body)

    (await register(size=99)).error(400, "INVALID_PARAMETER_VALUE", "100 bytes")
    (await register(uri=(external_dir / "missing.bin").as_uri())).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"x" * 100)
    (await register(uri=outside.as_uri())).error(400, "INVALID_PARAMETER_VALUE", "outside")
    (await register(uri="file:///etc/passwd")).error(400, "INVALID_PARAMETER_VALUE", "outside")
    (await register(uri=external_dir.as_uri() + "/../outside.bin")).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await register(uri=external_dir.as_uri() + "/%2e%2e/outside.bin")).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await register(uri=external_dir.as_uri() + "-other/w.bin")).error(
        400, "INVALID_PARAMETER_VALUE", "outside"
    )
    (await register(uri="http://example.com/w.bin")).error(400, "INVALID_PARAMETER_VALUE")
    (await register(path="../w.bin")).error(400, "INVALID_PARAMETER_VALUE")
    (await register(etag="not-the-etag")).error(400, "INVALID_PARAMETER_VALUE", "ETag")
    (await register(sha256="zz")).error(400, "INVALID_PARAMETER_VALUE")
    (
        await uc.call(
            client,
            "POST",
            uc.REFERENCES,
            body={"run_id": "f" * 32, "path": "w.bin", "uri": target.as_uri(), "size": 100},
        )
    ).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await uc.call(client, "DELETE", uc.REFERENCES, params={"run_id": rid, "path": "w.bin"})).error(
        404, "RESOURCE_DOES_NOT_EXIST"
    )
    (await api.post("/runs/delete", {"run_id": rid})).ok()
    (await register()).error(400, "INVALID_PARAMETER_VALUE", "active")
