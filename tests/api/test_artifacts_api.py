"""The artifact HTTP API over a real LocalArtifactStore, through aiohttp's test client.

The app holds only the artifact routes and the error middleware, with a small stand-in for
``Service``: the full app needs PostgreSQL, which these tests do not.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from metricgate.api import artifacts, multipart
from metricgate.api.keys import SERVICE
from metricgate.api.middleware import error_middleware
from metricgate.domain.artifacts.paths import proxied_store_path
from metricgate.domain.errors import NotFound
from metricgate.domain.tracking.entities import Run, RunInfo
from metricgate.stores.artifacts.local import STAGING_DIR, LocalArtifactStore


@pytest.fixture
def client(module_client: TestClient[Any, Any]) -> TestClient[Any, Any]:
    """One app and database for the module (tests/conftest.py ``module_client``)."""
    return module_client


PREFIX = "/api/2.0/mlflow-artifacts"
AJAX_PREFIX = "/ajax-api/2.0/mlflow-artifacts"
TRACKING = "/api/2.0/mlflow"
RUN_ID = "0123456789abcdef0123456789abcdef"
RUN_ROOT = f"1/{RUN_ID}/artifacts"


def _run(run_id: str, artifact_uri: str) -> Run:
    return Run(
        info=RunInfo(
            run_id=run_id,
            experiment_id="1",
            run_name="r",
            user_id="u",
            status="RUNNING",
            start_time=1,
            end_time=None,
            artifact_uri=artifact_uri,
            lifecycle_stage="active",
        )
    )


@dataclass
class FakeRuns:
    runs: dict[str, Run] = field(default_factory=dict)

    async def get(self, run_id: str) -> Run:
        try:
            return self.runs[run_id]
        except KeyError:
            raise NotFound(f"Run with id={run_id} not found") from None

    async def artifact_uri(self, run_id: str) -> str:
        return (await self.get(run_id)).info.artifact_uri


@dataclass
class FakeService:
    artifacts: LocalArtifactStore
    runs: FakeRuns
    auth: None = None  # access control off: deletes are not audited


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
async def api(store: LocalArtifactStore) -> AsyncIterator[TestClient]:
    runs = FakeRuns(
        {
            RUN_ID: _run(RUN_ID, f"mlflow-artifacts:/{RUN_ROOT}"),
            "s3run": _run("s3run", "s3://bucket/1/s3run/artifacts"),
        }
    )
    app = web.Application(middlewares=[error_middleware])
    app[SERVICE] = FakeService(store, runs)  # type: ignore[assignment]
    for prefix in (PREFIX, AJAX_PREFIX):
        for route in artifacts.ROUTES + multipart.ROUTES:
            app.router.add_route(route.method, prefix + route.path, route.handler)
    for route in artifacts.TRACKING_ROUTES:
        app.router.add_route(route.method, TRACKING + route.path, route.handler)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def url(path: str) -> URL:
    # encoded=True: send the path byte for byte, as a hostile client would.
    return URL(f"{PREFIX}/artifacts/{path}", encoded=True)


async def put(api: TestClient, path: str, body: bytes) -> None:
    resp = await api.put(url(path), data=body)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {}


async def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert body["error_code"] == code
    return body


# ---------------------------------------------------------------- upload / download


async def test_put_then_get_multi_megabyte_body(api: TestClient) -> None:
    body = os.urandom(5 * 1024 * 1024 + 123)
    await put(api, f"{RUN_ROOT}/model/model.pkl", body)
    resp = await api.get(url(f"{RUN_ROOT}/model/model.pkl"))
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(body))
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    assert await resp.read() == body


async def test_put_streams_chunked_body(api: TestClient) -> None:
    parts = [os.urandom(300_000) for _ in range(7)]

    async def gen() -> AsyncIterator[bytes]:
        for part in parts:
            yield part

    resp = await api.put(url("chunked.bin"), data=gen())
    assert resp.status == 200
    resp = await api.get(url("chunked.bin"))
    assert await resp.read() == b"".join(parts)


async def test_content_type_is_guessed_from_the_name(api: TestClient) -> None:
    await put(api, "a/metrics.json", b"{}")
    await put(api, "a/notes.txt", b"hi")
    await put(api, "a/MLmodel", b"flavors: {}")
    assert (await api.get(url("a/metrics.json"))).content_type == "application/json"
    assert (await api.get(url("a/notes.txt"))).content_type == "text/plain"
    assert (await api.get(url("a/MLmodel"))).content_type == "application/octet-stream"


async def test_put_overwrites(api: TestClient) -> None:
    await put(api, "x.txt", b"one")
    await put(api, "x.txt", b"two!")
    assert await (await api.get(url("x.txt"))).read() == b"two!"


async def test_empty_upload(api: TestClient) -> None:
    await put(api, "empty.txt", b"")
    resp = await api.get(url("empty.txt"))
    assert resp.status == 200
    assert resp.headers["Content-Length"] == "0"
    assert await resp.read() == b""


async def test_same_api_under_ajax_prefix(api: TestClient) -> None:
    await put(api, "ui.txt", b"ui")
    resp = await api.get(f"{AJAX_PREFIX}/artifacts/ui.txt")
    assert await resp.read() == b"ui"


async def test_missing_file_is_404_json(api: TestClient) -> None:
    body = await assert_error(await api.get(url("1/nope.txt")), 404, "RESOURCE_DOES_NOT_EXIST")
    assert "1/nope.txt" in body["message"]


async def test_directory_download_is_404_json(api: TestClient) -> None:
    await put(api, "dir/f.txt", b"x")
    await assert_error(await api.get(url("dir")), 404, "RESOURCE_DOES_NOT_EXIST")


# ---------------------------------------------------------------- ranges

DATA = bytes(range(256)) * 64  # 16 KiB


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=100-", 100, len(DATA)),
        ("bytes=-10", len(DATA) - 10, len(DATA)),  # suffix
        ("bytes=-999999", 0, len(DATA)),  # suffix longer than the file
        ("bytes=16000-999999", 16000, len(DATA)),  # end clamped
        ("bytes=5-5", 5, 6),
    ],
)
async def test_range_requests(api: TestClient, header: str, start: int, end: int) -> None:
    await put(api, "r.bin", DATA)
    resp = await api.get(url("r.bin"), headers={"Range": header})
    assert resp.status == 206
    assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    assert resp.headers["Content-Length"] == str(end - start)
    assert await resp.read() == DATA[start:end]


@pytest.mark.parametrize(
    "header", ["bytes=99999-", "bytes=20-10", "bytes=-0", "bytes=abc", "bytes=-", "bytes=1-x"]
)
async def test_unsatisfiable_range_is_416(api: TestClient, header: str) -> None:
    await put(api, "r.bin", DATA)
    resp = await api.get(url("r.bin"), headers={"Range": header})
    await assert_error(resp, 416, "INVALID_PARAMETER_VALUE")
    assert resp.headers["Content-Range"] == f"bytes */{len(DATA)}"


@pytest.mark.parametrize("header", ["items=0-5", "bytes=0-1,5-6"])
async def test_unsupported_ranges_get_the_whole_file(api: TestClient, header: str) -> None:
    await put(api, "r.bin", DATA)
    resp = await api.get(url("r.bin"), headers={"Range": header})
    assert resp.status == 200
    assert await resp.read() == DATA


async def test_if_range_falls_back_to_whole_file(api: TestClient) -> None:
    await put(api, "r.bin", DATA)
    resp = await api.get(url("r.bin"), headers={"Range": "bytes=0-9", "If-Range": '"etag"'})
    assert resp.status == 200
    assert await resp.read() == DATA


# ---------------------------------------------------------------- listing and delete


async def test_list_format_matches_mlflow(api: TestClient) -> None:
    await put(api, f"{RUN_ROOT}/b.txt", b"bb")
    await put(api, f"{RUN_ROOT}/a.txt", b"a")
    await put(api, f"{RUN_ROOT}/empty.txt", b"")
    await put(api, f"{RUN_ROOT}/model/MLmodel", b"m")
    resp = await api.get(f"{PREFIX}/artifacts", params={"path": RUN_ROOT})
    assert resp.status == 200
    assert await resp.json() == {
        "files": [
            {"path": "a.txt", "is_dir": False, "file_size": 1},
            {"path": "b.txt", "is_dir": False, "file_size": 2},
            # mlflow's FileInfo.to_proto drops a zero size, like a directory's.
            {"path": "empty.txt", "is_dir": False},
            {"path": "model", "is_dir": True},
        ]
    }
    resp = await api.get(f"{PREFIX}/artifacts", params={"path": f"{RUN_ROOT}/model"})
    assert await resp.json() == {"files": [{"path": "MLmodel", "is_dir": False, "file_size": 1}]}


async def test_list_of_file_missing_or_empty_is_empty_object(
    api: TestClient, store: LocalArtifactStore
) -> None:
    await put(api, "d/f.txt", b"x")
    (store.root / "empty-dir").mkdir()
    for path in ("d/f.txt", "missing", "empty-dir"):
        resp = await api.get(f"{PREFIX}/artifacts", params={"path": path})
        assert resp.status == 200
        assert await resp.json() == {}


async def test_list_root_hides_staging(api: TestClient, store: LocalArtifactStore) -> None:
    await put(api, "top.txt", b"t")
    assert (store.root / STAGING_DIR).is_dir()
    resp = await api.get(f"{PREFIX}/artifacts")
    assert await resp.json() == {"files": [{"path": "top.txt", "is_dir": False, "file_size": 1}]}


async def test_delete(api: TestClient) -> None:
    await put(api, "del/one.txt", b"1")
    await put(api, "del/sub/two.txt", b"2")
    resp = await api.delete(url("del/sub"))
    assert resp.status == 200
    assert await resp.json() == {}
    listing = await (await api.get(f"{PREFIX}/artifacts", params={"path": "del"})).json()
    assert listing == {"files": [{"path": "one.txt", "is_dir": False, "file_size": 1}]}
    assert (await api.delete(url("del/sub"))).status == 200  # already gone: still fine
    await assert_error(await api.get(url("del/sub/two.txt")), 404, "RESOURCE_DOES_NOT_EXIST")


# ---------------------------------------------------------------- traversal


TRAVERSALS = [
    "%2e%2e/%2e%2e/etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "a/%2e%2e/%2e%2e/secret.txt",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",  # '//' after the prefix: an absolute path
    "a%5c..%5c..%5csecret.txt",
    "a%00b",
    "%252e%252e/secret.txt",
    f"{STAGING_DIR}/x",
]


@pytest.mark.parametrize("path", TRAVERSALS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_traversal_via_url_is_400(
    api: TestClient, tmp_path: Path, method: str, path: str
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")
    resp = await api.request(method, url(path), data=b"pwned" if method == "PUT" else None)
    await assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    assert secret.read_bytes() == b"secret"


@pytest.mark.parametrize("path", ["../x", "/etc", "a/./b", "a//b", "%2e%2e/x"])
async def test_traversal_via_list_query_is_400(api: TestClient, path: str) -> None:
    resp = await api.get(f"{PREFIX}/artifacts", params={"path": path})
    await assert_error(resp, 400, "INVALID_PARAMETER_VALUE")


async def test_rejected_put_consumes_nothing_into_the_store(
    api: TestClient, store: LocalArtifactStore
) -> None:
    resp = await api.put(url("..%2fescape.bin"), data=os.urandom(2 * 1024 * 1024))
    await assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    assert not (store.root.parent / "escape.bin").exists()
    assert await store.list("") == []


# ---------------------------------------------------------------- multipart


async def mpu_create(
    api: TestClient, num_parts: int, local: str = "/home/u/ckpt/big.bin"
) -> dict[str, Any]:
    resp = await api.post(
        f"{PREFIX}/mpu/create/{RUN_ROOT}", json={"path": local, "num_parts": num_parts}
    )
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def mpu_put(api: TestClient, credential: dict[str, Any], body: bytes) -> str:
    # The URL is absolute and points back at this server, as the client will use it.
    target = URL(credential["url"])
    assert target.path.startswith(f"{PREFIX}/mpu/part/{RUN_ROOT}/")
    resp = await api.put(target.relative(), data=body, headers=credential["headers"])
    assert resp.status == 200, await resp.text()
    return resp.headers["ETag"]


async def test_multipart_upload_round_trip(api: TestClient, store: LocalArtifactStore) -> None:
    chunks = [os.urandom(1024 * 1024), os.urandom(1024 * 1024), os.urandom(1000)]
    created = await mpu_create(api, len(chunks))
    assert [c["part_number"] for c in created["credentials"]] == [1, 2, 3]
    assert all(c["headers"] == {} for c in created["credentials"])
    # Parts in parallel and out of order, like the client's thread pool.
    etags = await asyncio.gather(
        *(mpu_put(api, c, chunks[c["part_number"] - 1]) for c in reversed(created["credentials"]))
    )
    etags = list(reversed(etags))
    assert all(e.startswith('"') and e.endswith('"') for e in etags)

    # Nothing visible before completion.
    assert (await api.get(url(f"{RUN_ROOT}/big.bin"))).status == 404
    assert await store.list(RUN_ROOT) == []

    parts = [{"part_number": n, "etag": e, "url": "ignored"} for n, e in enumerate(etags, 1)]
    resp = await api.post(
        f"{PREFIX}/mpu/complete/{RUN_ROOT}",
        json={"path": "/home/u/ckpt/big.bin", "upload_id": created["upload_id"], "parts": parts},
    )
    assert resp.status == 200 and await resp.json() == {}
    download = await api.get(url(f"{RUN_ROOT}/big.bin"))
    assert await download.read() == b"".join(chunks)
    assert await store.stage_list() == []


async def test_multipart_abort_discards_parts(api: TestClient, store: LocalArtifactStore) -> None:
    created = await mpu_create(api, 2, local="C:\\Users\\u\\model.ckpt")  # a Windows client's path
    await mpu_put(api, created["credentials"][0], b"first part")
    resp = await api.post(
        f"{PREFIX}/mpu/abort/{RUN_ROOT}",
        json={"path": "C:\\Users\\u\\model.ckpt", "upload_id": created["upload_id"]},
    )
    assert resp.status == 200 and await resp.json() == {}
    assert await store.stage_list() == []
    assert (await api.get(url(f"{RUN_ROOT}/model.ckpt"))).status == 404


async def test_multipart_client_mistakes(api: TestClient, store: LocalArtifactStore) -> None:
    created = await mpu_create(api, 2)
    upload_id = created["upload_id"]
    etag = await mpu_put(api, created["credentials"][0], b"only part one")

    async def complete(
        parts: list[dict[str, Any]], path: str = "/x/big.bin", upload: str = upload_id
    ) -> Any:
        return await api.post(
            f"{PREFIX}/mpu/complete/{RUN_ROOT}",
            json={"path": path, "upload_id": upload, "parts": parts},
        )

    await assert_error(
        await complete([{"part_number": 1, "etag": etag}, {"part_number": 2, "etag": '"x"'}]),
        400,
        "INVALID_PARAMETER_VALUE",
    )
    await assert_error(
        await complete([{"part_number": 1, "etag": '"0000"'}]), 400, "INVALID_PARAMETER_VALUE"
    )
    await assert_error(await complete([]), 400, "INVALID_PARAMETER_VALUE")
    await assert_error(
        await complete([{"part_number": 1, "etag": etag}], upload="f" * 32),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    await assert_error(
        await complete([{"part_number": 1, "etag": etag}], path="/x/other.bin"),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    assert (await api.get(url(f"{RUN_ROOT}/big.bin"))).status == 404

    bad_part = URL(f"{PREFIX}/mpu/part/{RUN_ROOT}/big.bin").with_query(
        upload_id=upload_id, part_number=0
    )
    await assert_error(await api.put(bad_part, data=b"x"), 400, "INVALID_PARAMETER_VALUE")
    unknown = URL(f"{PREFIX}/mpu/part/{RUN_ROOT}/big.bin").with_query(
        upload_id="../../x", part_number=1
    )
    await assert_error(await api.put(unknown, data=b"x"), 400, "INVALID_PARAMETER_VALUE")
    for num_parts in (0, 10_001):
        resp = await api.post(
            f"{PREFIX}/mpu/create/{RUN_ROOT}", json={"path": "/x/big.bin", "num_parts": num_parts}
        )
        await assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    for bad_dir in ("..%2f..", "%2e%2e/x", "a//b"):
        resp = await api.post(
            URL(f"{PREFIX}/mpu/create/{bad_dir}", encoded=True),
            json={"path": "/x/f", "num_parts": 1},
        )
        await assert_error(resp, 400, "INVALID_PARAMETER_VALUE")
    resp = await api.post(f"{PREFIX}/mpu/create/{RUN_ROOT}", json={"path": "/x/", "num_parts": 1})
    await assert_error(resp, 400, "INVALID_PARAMETER_VALUE")

    # The upload is still usable after all that.
    resp = await complete([{"part_number": 1, "etag": etag}])
    assert resp.status == 200, await resp.text()
    assert await (await api.get(url(f"{RUN_ROOT}/big.bin"))).read() == b"only part one"


async def test_multipart_complete_retried_by_the_client_is_answered_once(
    api: TestClient, store: LocalArtifactStore
) -> None:
    """A timed-out complete is retried by the client: concurrent and later repeats all get 200."""
    created = await mpu_create(api, 2)
    chunks = [os.urandom(2 * 1024 * 1024), b"tail"]
    etags = [await mpu_put(api, c, chunks[i]) for i, c in enumerate(created["credentials"])]
    body = {
        "path": "/x/big.bin",
        "upload_id": created["upload_id"],
        "parts": [{"part_number": n, "etag": e} for n, e in enumerate(etags, 1)],
    }
    first, second = await asyncio.gather(
        api.post(f"{PREFIX}/mpu/complete/{RUN_ROOT}", json=body),
        api.post(f"{PREFIX}/mpu/complete/{RUN_ROOT}", json=body),
    )
    assert (first.status, second.status) == (200, 200), (await first.text(), await second.text())
    again = await api.post(f"{PREFIX}/mpu/complete/{RUN_ROOT}", json=body)
    assert again.status == 200
    assert await (await api.get(url(f"{RUN_ROOT}/big.bin"))).read() == b"".join(chunks)
    # A different part list for the finished upload is not answered from memory.
    other = dict(body, parts=body["parts"][:1])
    await assert_error(
        await api.post(f"{PREFIX}/mpu/complete/{RUN_ROOT}", json=other),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )


async def test_multipart_part_urls_follow_the_prefix_and_forwarded_host(api: TestClient) -> None:
    resp = await api.post(
        f"{AJAX_PREFIX}/mpu/create/{RUN_ROOT}",
        json={"path": "/x/f.bin", "num_parts": 1},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mlflow.example.com"},
    )
    assert resp.status == 200
    part_url = URL((await resp.json())["credentials"][0]["url"])
    assert (part_url.scheme, part_url.host) == ("https", "mlflow.example.com")
    assert part_url.path == f"{AJAX_PREFIX}/mpu/part/{RUN_ROOT}/f.bin"
    assert part_url.query["part_number"] == "1"


async def test_presigned_download_points_at_the_ranged_download(api: TestClient) -> None:
    body = os.urandom(300_000)
    await put(api, f"{RUN_ROOT}/dir/w%20b.bin", body)
    resp = await api.get(URL(f"{PREFIX}/presigned/{RUN_ROOT}/dir/w%20b.bin", encoded=True))
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert answer["file_size"] == len(body) and answer["headers"] == {}
    target = URL(answer["url"])
    assert target.path == f"{PREFIX}/artifacts/{RUN_ROOT}/dir/w b.bin"
    ranged = await api.get(target.relative(), headers={"Range": "bytes=1000-1999"})
    assert ranged.status == 206 and await ranged.read() == body[1000:2000]
    await assert_error(
        await api.get(f"{PREFIX}/presigned/{RUN_ROOT}/missing.bin"), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    await assert_error(
        await api.get(f"{PREFIX}/presigned/{RUN_ROOT}/dir"), 404, "RESOURCE_DOES_NOT_EXIST"
    )
    await assert_error(
        await api.get(URL(f"{PREFIX}/presigned/..%2fx", encoded=True)),
        400,
        "INVALID_PARAMETER_VALUE",
    )


# ---------------------------------------------------------------- UI listing by run


async def test_run_artifact_listing(api: TestClient) -> None:
    await put(api, f"{RUN_ROOT}/f.txt", b"abc")
    await put(api, f"{RUN_ROOT}/sub/g.txt", b"gg")
    resp = await api.get(f"{TRACKING}/artifacts/list", params={"run_id": RUN_ID})
    assert resp.status == 200
    assert await resp.json() == {
        "root_uri": f"mlflow-artifacts:/{RUN_ROOT}",
        "files": [
            {"path": "f.txt", "is_dir": False, "file_size": 3},
            {"path": "sub", "is_dir": True},
        ],
    }
    resp = await api.get(f"{TRACKING}/artifacts/list", params={"run_id": RUN_ID, "path": "sub"})
    assert await resp.json() == {
        "root_uri": f"mlflow-artifacts:/{RUN_ROOT}",
        "files": [{"path": "sub/g.txt", "is_dir": False, "file_size": 2}],
    }


async def test_run_artifact_listing_accepts_run_uuid_and_empty_run(api: TestClient) -> None:
    resp = await api.get(f"{TRACKING}/artifacts/list", params={"run_uuid": RUN_ID})
    assert await resp.json() == {"root_uri": f"mlflow-artifacts:/{RUN_ROOT}", "files": []}


async def test_run_artifact_listing_other_scheme_is_empty(api: TestClient) -> None:
    resp = await api.get(f"{TRACKING}/artifacts/list", params={"run_id": "s3run"})
    assert await resp.json() == {"root_uri": "s3://bucket/1/s3run/artifacts", "files": []}


async def test_run_artifact_listing_errors(api: TestClient) -> None:
    await assert_error(
        await api.get(f"{TRACKING}/artifacts/list", params={"run_id": "nope"}),
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
    await assert_error(await api.get(f"{TRACKING}/artifacts/list"), 400, "INVALID_PARAMETER_VALUE")
    await assert_error(
        await api.get(f"{TRACKING}/artifacts/list", params={"run_id": RUN_ID, "path": "../../x"}),
        400,
        "INVALID_PARAMETER_VALUE",
    )


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("mlflow-artifacts:/1/r/artifacts", "1/r/artifacts"),
        ("mlflow-artifacts://host:5000/1/r/artifacts", "1/r/artifacts"),
        ("http://host/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts", "1/r/artifacts"),
        ("mlflow-artifacts:/1/../../etc", None),
        ("s3://bucket/1/r/artifacts", None),
        ("file:///tmp/x", None),
    ],
)
def test_store_path_of(uri: str, expected: str | None) -> None:
    assert proxied_store_path(uri) == expected


# ---------------------------------------------------------------- transport edge cases


async def test_truncated_upload_is_never_committed(
    api: TestClient, store: LocalArtifactStore
) -> None:
    """A client that announces more bytes than it sends, then hangs up, leaves nothing behind."""
    await put(api, "t/model.bin", b"previous")
    _reader, writer = await asyncio.open_connection(api.host, api.port)
    head = (
        f"PUT {PREFIX}/artifacts/t/model.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    writer.write(head + b"y" * 40000)
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await writer.wait_closed()
    for _ in range(50):  # the server notices the EOF asynchronously
        if not os.listdir(store.root / STAGING_DIR):
            break
        await asyncio.sleep(0.02)
    assert os.listdir(store.root / STAGING_DIR) == []
    assert await (await api.get(url("t/model.bin"))).read() == b"previous"


# ---------------------------------------------------------------- the real mlflow client


async def test_unmodified_mlflow_client_round_trip(
    api: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mlflow's own HttpArtifactRepository: upload (with the multipart fallback), list, download, delete."""
    http_repo = pytest.importorskip("mlflow.store.artifact.http_artifact_repo")
    # Force the multipart attempt so the client has to fall back on our 501.
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    src = tmp_path / "src"
    (src / "model").mkdir(parents=True)
    (src / "model" / "MLmodel").write_text("flavors: {}\n")
    (src / "model" / "weights.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    (src / "empty.txt").write_bytes(b"")
    base = f"http://{api.host}:{api.port}{PREFIX}/artifacts/{RUN_ROOT}"

    def scenario() -> None:
        repo = http_repo.HttpArtifactRepository(base)
        repo.log_artifacts(str(src))
        listed = {(f.path, f.is_dir, f.file_size) for f in repo.list_artifacts()}
        assert listed == {("empty.txt", False, None), ("model", True, None)}
        listed = sorted((f.path, f.file_size) for f in repo.list_artifacts("model"))
        assert listed == [("model/MLmodel", 12), ("model/weights.bin", 3 * 1024 * 1024)]
        out = tmp_path / "out"
        out.mkdir()
        repo.download_artifacts("", dst_path=str(out))
        for name in ("model/MLmodel", "model/weights.bin", "empty.txt"):
            assert (out / name).read_bytes() == (src / name).read_bytes()
        repo.delete_artifacts("model")
        assert [f.path for f in repo.list_artifacts()] == ["empty.txt"]

    await asyncio.to_thread(scenario)
