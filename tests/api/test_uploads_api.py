"""The resumable upload API over real HTTP (aiohttp test server), real PostgreSQL, local store."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient
from tests.api.conftest import Api

import upload_client as uc
from metricgate.api.keys import SERVICE
from metricgate.config import Settings

PART = 64 * 1024


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # Small parts keep the tests fast; the sweeper is driven by the tests themselves.
    uploads = dataclasses.replace(
        settings.uploads, min_part_bytes=PART, max_part_bytes=4 * PART, sweep_interval_s=3600
    )
    return dataclasses.replace(settings, uploads=uploads)


@pytest.fixture
async def run(api: Api) -> dict[str, Any]:
    return await api.create_run(await api.create_experiment())


def store_root(run: dict[str, Any]) -> str:
    uri = run["info"]["artifact_uri"]
    assert uri.startswith("mlflow-artifacts:/"), uri
    return uri[len("mlflow-artifacts:/") :]


def run_id(run: dict[str, Any]) -> str:
    return str(run["info"]["run_id"])


# ---------------------------------------------------------------- the happy paths


async def test_single_file_parts_out_of_order_and_in_parallel(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    data = uc.blob(7 * PART + 123, seed=1)
    parts = uc.split(data, PART)
    session = (
        await uc.create(
            client,
            run_id(run),
            "model/weights.bin",
            [{"size": len(data), "sha256": uc.sha256(data)}],
            PART,
        )
    ).ok()
    assert session["state"] == "open" and session["files"][0]["part_count"] == 8
    assert session["actor"] == "127.0.0.1"  # no X-Metricgate-Actor header: the client address
    assert session["files"][0]["missing_parts"] == list(range(1, 9))

    order = [8, 3, 1, 6, 2, 7, 5, 4]
    await uc.upload_parts(client, session["upload_id"], 0, parts, numbers=order, parallel=8)

    state = (await uc.get(client, session["upload_id"])).ok()
    assert state["files"][0]["missing_parts"] == []
    assert [p["part_number"] for p in state["files"][0]["parts"]] == list(range(1, 9))
    assert [p["sha256"] for p in state["files"][0]["parts"]] == [uc.sha256(p) for p in parts]
    # Nothing is visible before completion.
    dest = f"{store_root(run)}/model/weights.bin"
    (await uc.download(client, dest)).error(404, "RESOURCE_DOES_NOT_EXIST")
    assert await uc.listing(client, store_root(run)) == {}

    done = (await uc.complete(client, session["upload_id"])).ok()
    assert done["state"] == "committed" and done["files"][0]["committed"]
    got = await uc.download(client, dest)
    assert got.status == 200 and got.raw == data
    assert await uc.listing(client, f"{store_root(run)}/model") == {"weights.bin": len(data)}
    assert await uc.run_listing(client, run_id(run), "model") == {"model/weights.bin": len(data)}
    # Completing again (a client retry after a lost response) answers the same.
    assert (await uc.complete(client, session["upload_id"])).ok()["state"] == "committed"


async def test_resume_after_a_lost_client(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    data = uc.blob(5 * PART + 7, seed=2)
    parts = uc.split(data, PART)
    created = (
        await uc.create(
            client, run_id(run), "ckpt.pt", [{"size": len(data), "sha256": uc.sha256(data)}], PART
        )
    ).ok()
    await uc.upload_parts(client, created["upload_id"], 0, parts, numbers=[1, 4, 6])
    # The client died; a new one only knows the upload id and asks what the server has.
    state = (await uc.get(client, created["upload_id"])).ok()
    missing = state["files"][0]["missing_parts"]
    assert missing == [2, 3, 5]
    await uc.upload_parts(client, created["upload_id"], 0, parts, numbers=missing)
    assert (await uc.complete(client, created["upload_id"])).ok()["state"] == "committed"
    assert (await uc.download(client, f"{store_root(run)}/ckpt.pt")).raw == data


async def test_directory_commits_all_files_together(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    files = {"config.json": b'{"layers": 2}', "weights/shard-0.bin": uc.blob(3 * PART, 3),
             "weights/shard-1.bin": uc.blob(2 * PART + 5, 4), "empty.txt": b""}  # fmt: skip
    session = await uc.upload_directory(
        client, run_id(run), "model", files, PART, complete_it=False
    )
    root = store_root(run)
    assert await uc.listing(client, root) == {}
    assert await uc.run_listing(client, run_id(run)) == {}
    done = (await uc.complete(client, session["upload_id"])).ok()
    assert done["state"] == "committed" and all(f["committed"] for f in done["files"])
    assert await uc.listing(client, f"{root}/model") == {
        "config.json": 13,
        "empty.txt": 0,
        "weights": "dir",
    }
    for name, data in files.items():
        assert (await uc.download(client, f"{root}/model/{name}")).raw == data


async def test_content_md5_and_base64_sha256_are_accepted(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    data = uc.blob(PART + 1, 5)
    parts = uc.split(data, PART)
    sid = (await uc.create(client, run_id(run), "x.bin", [{"size": len(data)}], PART)).ok()[
        "upload_id"
    ]
    md5 = base64.b64encode(hashlib.md5(parts[0]).digest()).decode()
    (
        await uc.put_part(client, sid, 0, 1, parts[0], checksum=None, headers={"Content-MD5": md5})
    ).ok()
    b64 = base64.b64encode(hashlib.sha256(parts[1]).digest()).decode()
    answer = (await uc.put_part(client, sid, 0, 2, parts[1], checksum=b64)).ok()
    assert answer["sha256"] == uc.sha256(parts[1]) and answer["size"] == 1
    assert (await uc.complete(client, sid)).ok()["state"] == "committed"


# ---------------------------------------------------------------- bad input


async def test_wrong_part_checksum_is_refused_and_the_part_discarded(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    data = uc.blob(2 * PART, 6)
    parts = uc.split(data, PART)
    sid = (await uc.create(client, run_id(run), "x.bin", [{"size": len(data)}], PART)).ok()[
        "upload_id"
    ]
    (await uc.put_part(client, sid, 0, 1, parts[0], checksum=uc.sha256(b"other"))).error(
        400, "INVALID_PARAMETER_VALUE", "hecksum"
    )
    wrong_md5 = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    (
        await uc.put_part(
            client, sid, 0, 2, parts[1], checksum=None, headers={"Content-MD5": wrong_md5}
        )
    ).error(400, "INVALID_PARAMETER_VALUE", "Content-MD5")
    state = (await uc.get(client, sid)).ok()
    assert state["files"][0]["parts"] == [] and state["files"][0]["missing_parts"] == [1, 2]
    (await uc.put_part(client, sid, 0, 1, parts[0], checksum="not-a-checksum")).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    await uc.upload_parts(client, sid, 0, parts)
    assert (await uc.complete(client, sid)).ok()["state"] == "committed"


async def test_part_sizes_and_numbers_are_checked(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    size = 2 * PART + 10
    sid = (await uc.create(client, run_id(run), "x.bin", [{"size": size}], PART)).ok()["upload_id"]
    (await uc.put_part(client, sid, 0, 1, b"x" * (PART - 1))).error(
        400, "INVALID_PARAMETER_VALUE", "too small"
    )
    (await uc.put_part(client, sid, 0, 1, b"x" * (PART + 1))).error(
        400, "INVALID_PARAMETER_VALUE", "too large"
    )
    (await uc.put_part(client, sid, 0, 3, b"x" * 11)).error(
        400, "INVALID_PARAMETER_VALUE", "too large"
    )
    (await uc.put_part(client, sid, 0, 0, b"x")).error(
        400, "INVALID_PARAMETER_VALUE", "out of range"
    )
    (await uc.put_part(client, sid, 0, 4, b"x" * 10)).error(
        400, "INVALID_PARAMETER_VALUE", "out of range"
    )
    (await uc.put_part(client, sid, 0, -1, b"x")).error(400, "INVALID_PARAMETER_VALUE")
    (await uc.put_part(client, sid, 1, 1, b"x")).error(404, "RESOURCE_DOES_NOT_EXIST")

    # A chunked body (no Content-Length) that runs long is cut off while streaming.
    async def too_long() -> Any:
        for _ in range(3):
            yield b"y" * (PART // 2)

    answer = await uc.call(client, "PUT", f"{uc.UPLOADS}/{sid}/files/0/parts/1", data=too_long())
    answer.error(400, "INVALID_PARAMETER_VALUE", "too large")
    assert (await uc.get(client, sid)).ok()["files"][0]["parts"] == []


async def test_create_refuses_bad_sessions(
    client: TestClient[Any, Any], run: dict[str, Any], api: Api
) -> None:
    rid = run_id(run)
    one = [{"size": 10}]
    (await uc.create(client, rid, "x", one, PART - 1)).error(
        400, "INVALID_PARAMETER_VALUE", "too small"
    )
    (await uc.create(client, rid, "x", one, 4 * PART + 1)).error(
        400, "INVALID_PARAMETER_VALUE", "too large"
    )
    (await uc.create(client, rid, "x", [{"size": PART * 10_001}], PART)).error(
        400, "INVALID_PARAMETER_VALUE", "parts"
    )
    (await uc.create(client, rid, "x", [{"size": -1}], PART)).error(400, "INVALID_PARAMETER_VALUE")
    (await uc.create(client, rid, "x", [{"size": 1, "sha256": "abc"}], PART)).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await uc.create(client, rid, "x", [], PART)).error(400, "INVALID_PARAMETER_VALUE")
    (await uc.create(client, rid, "x", [{"size": 1}, {"size": 2}], PART)).error(
        400, "INVALID_PARAMETER_VALUE", "directory"
    )
    for bad in ("../escape", "a/../../b", "/abs", "a//b", "%2e%2e/x", "a\\b"):
        (await uc.create(client, rid, bad, one, PART)).error(400, "INVALID_PARAMETER_VALUE")
        (await uc.create(client, rid, "d", [{"path": bad, "size": 1}], PART, directory=True)).error(
            400, "INVALID_PARAMETER_VALUE"
        )
    dup = [{"path": "a", "size": 1}, {"path": "a", "size": 1}]
    (await uc.create(client, rid, "d", dup, PART, directory=True)).error(
        400, "INVALID_PARAMETER_VALUE", "twice"
    )
    nested = [{"path": "a", "size": 1}, {"path": "a/b", "size": 1}]
    (await uc.create(client, rid, "d", nested, PART, directory=True)).error(
        400, "INVALID_PARAMETER_VALUE"
    )
    (await uc.create(client, "f" * 32, "x", one, PART)).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await api.post("/runs/delete", {"run_id": rid})).ok()
    (await uc.create(client, rid, "x", one, PART)).error(400, "INVALID_PARAMETER_VALUE", "active")


async def test_unknown_and_expired_sessions(
    client: TestClient[Any, Any], run: dict[str, Any], db_url: str
) -> None:
    (await uc.get(client, "0" * 32)).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await uc.get(client, "not-an-id")).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await uc.put_part(client, "0" * 32, 0, 1, b"x")).error(404, "RESOURCE_DOES_NOT_EXIST")
    (await uc.complete(client, "0" * 32)).error(404, "RESOURCE_DOES_NOT_EXIST")
    sid = (await uc.create(client, run_id(run), "x.bin", [{"size": 3}], PART)).ok()["upload_id"]
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute(
            "UPDATE upload_sessions SET expires_at = now() - interval '1 second' WHERE session_id = $1",
            sid,
        )
    finally:
        await conn.close()
    (await uc.put_part(client, sid, 0, 1, b"abc")).error(404, "RESOURCE_DOES_NOT_EXIST", "expired")
    (await uc.complete(client, sid)).error(404, "RESOURCE_DOES_NOT_EXIST", "expired")


async def test_missing_parts_and_run_deleted_before_completion(
    client: TestClient[Any, Any], run: dict[str, Any], api: Api
) -> None:
    data = uc.blob(3 * PART, 7)
    parts = uc.split(data, PART)
    sid = (await uc.create(client, run_id(run), "x.bin", [{"size": len(data)}], PART)).ok()[
        "upload_id"
    ]
    await uc.upload_parts(client, sid, 0, parts, numbers=[2])
    (await uc.complete(client, sid)).error(
        400, "INVALID_PARAMETER_VALUE", "file 0 part 1, file 0 part 3"
    )
    await uc.upload_parts(client, sid, 0, parts, numbers=[1, 3])
    (await api.post("/runs/delete", {"run_id": run_id(run)})).ok()
    (await uc.complete(client, sid)).error(400, "INVALID_PARAMETER_VALUE", "active")


async def test_whole_file_checksum_mismatch_rolls_the_directory_back(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    good, bad = uc.blob(PART + 3, 8), uc.blob(2 * PART, 9)
    specs = [{"path": "a.bin", "size": len(good), "sha256": uc.sha256(good)},
             {"path": "b.bin", "size": len(bad), "sha256": uc.sha256(b"something else")}]  # fmt: skip
    sid = (await uc.create(client, run_id(run), "d", specs, PART, directory=True)).ok()["upload_id"]
    await uc.upload_parts(client, sid, 0, uc.split(good, PART))
    await uc.upload_parts(client, sid, 1, uc.split(bad, PART))
    (await uc.complete(client, sid)).error(400, "INVALID_PARAMETER_VALUE", "SHA-256")
    # Neither file is visible: a.bin was committed first and then removed again.
    assert await uc.listing(client, f"{store_root(run)}/d") == {}
    (await uc.download(client, f"{store_root(run)}/d/a.bin")).error(404, "RESOURCE_DOES_NOT_EXIST")
    state = (await uc.get(client, sid)).ok()
    assert state["state"] == "aborted" and "SHA-256" in state["failure"]
    (await uc.put_part(client, sid, 0, 1, good[:PART])).error(
        400, "INVALID_PARAMETER_VALUE", "aborted"
    )


async def test_abort_discards_staged_data(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    store = client.server.app[SERVICE].artifacts
    data = uc.blob(2 * PART, 10)
    sid = (await uc.create(client, run_id(run), "x.bin", [{"size": len(data)}], PART)).ok()[
        "upload_id"
    ]
    await uc.upload_parts(client, sid, 0, uc.split(data, PART), numbers=[1])
    assert len(await store.stage_list()) == 1
    assert (await uc.call(client, "DELETE", f"{uc.UPLOADS}/{sid}")).ok()["state"] == "aborted"
    assert await store.stage_list() == []
    (await uc.put_part(client, sid, 0, 2, data[PART:])).error(
        400, "INVALID_PARAMETER_VALUE", "aborted"
    )
    (await uc.complete(client, sid)).error(400, "INVALID_PARAMETER_VALUE", "aborted")


async def test_openapi_lists_every_route(client: TestClient[Any, Any]) -> None:
    from metricgate.api.uploads import PREFIX, ROUTES

    doc = (await uc.call(client, "GET", "/api/2.0/metricgate/openapi.json")).ok()
    assert doc["openapi"].startswith("3.")
    for route in ROUTES:
        path = PREFIX + route.path
        assert path in doc["paths"], path
        assert route.method.lower() in doc["paths"][path], (route.method, path)
    served = {(r.method.lower(), PREFIX + r.path) for r in ROUTES}
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops if m != "parameters"}
    assert documented == served
    # Every $ref resolves.
    text = str(doc)
    for name in doc["components"]["schemas"]:
        assert name in text
    for ref in _refs(doc):
        section, _, name = ref.removeprefix("#/components/").partition("/")
        assert name in doc["components"][section], ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return ([node["$ref"]] if "$ref" in node else []) + [
            r for v in node.values() for r in _refs(v)
        ]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


async def test_parallel_duplicate_part_uploads_keep_one_consistent_part(
    client: TestClient[Any, Any], run: dict[str, Any]
) -> None:
    data = uc.blob(PART, 11)
    sid = (await uc.create(client, run_id(run), "x.bin", [{"size": len(data)}], PART)).ok()[
        "upload_id"
    ]
    answers = await asyncio.gather(*(uc.put_part(client, sid, 0, 1, data) for _ in range(4)))
    assert all(a.status == 200 for a in answers), answers
    assert (await uc.complete(client, sid)).ok()["state"] == "committed"
    got = await uc.download(client, f"{store_root(run)}/x.bin")
    assert got.raw == data
