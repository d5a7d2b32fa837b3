"""A small client of metricgate's resumable upload API for tests (tests/ is on sys.path).

``http`` is anything with aiohttp's ``request(method, url, ...)``: an ``aiohttp.ClientSession``
with a ``base_url`` or an aiohttp ``TestClient``; URLs here are absolute paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from metricgate.api.keys import SERVICE
from metricgate.stores.artifacts.base import StagedPart

UPLOADS = "/api/2.0/metricgate/uploads"
REFERENCES = "/api/2.0/metricgate/artifact-references"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"
RUN_ARTIFACTS = "/api/2.0/mlflow/artifacts/list"


@dataclass
class Answer:
    status: int
    raw: bytes

    @property
    def json(self) -> Any:
        return orjson.loads(self.raw)

    def ok(self) -> Any:
        assert self.status == 200, (self.status, self.raw[:2000])
        return self.json

    def error(self, status: int, code: str, contains: str | None = None) -> str:
        assert self.status == status, (self.status, self.raw[:2000])
        body = self.json
        assert body["error_code"] == code, body
        assert isinstance(body["message"], str) and body["message"], body
        if contains is not None:
            assert contains in body["message"], body
        return str(body["message"])


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def split(data: bytes, part_size: int) -> list[bytes]:
    """Parts as the server expects them: full parts, then the rest (one empty part if empty)."""
    return [data[i : i + part_size] for i in range(0, len(data), part_size)] or [b""]


async def call(http: Any, method: str, url: str, *, body: Any = None, data: Any = None,
               headers: dict[str, str] | None = None, params: Any = None) -> Answer:  # fmt: skip
    hdrs = dict(headers or {})
    if body is not None:
        data = orjson.dumps(body)
        hdrs.setdefault("Content-Type", "application/json")
    async with http.request(method, url, data=data, headers=hdrs, params=params) as resp:
        return Answer(resp.status, await resp.read())


async def create(http: Any, run_id: str, path: str | None, files: list[dict[str, Any]], part_size: int,
                 directory: bool = False) -> Answer:  # fmt: skip
    body: dict[str, Any] = {
        "run_id": run_id,
        "part_size": part_size,
        "files": files,
        "directory": directory,
    }
    if path is not None:
        body["path"] = path
    return await call(http, "POST", UPLOADS, body=body)


async def put_part(http: Any, upload_id: str, file_index: int, part_number: int, data: bytes,
                   checksum: str | None = "auto", headers: dict[str, str] | None = None) -> Answer:  # fmt: skip
    hdrs = {"Content-Type": "application/octet-stream", **(headers or {})}
    if checksum == "auto":
        hdrs["X-Checksum-SHA256"] = sha256(data)
    elif checksum is not None:
        hdrs["X-Checksum-SHA256"] = checksum
    return await call(
        http,
        "PUT",
        f"{UPLOADS}/{upload_id}/files/{file_index}/parts/{part_number}",
        data=data,
        headers=hdrs,
    )


async def get(http: Any, upload_id: str) -> Answer:
    return await call(http, "GET", f"{UPLOADS}/{upload_id}")


async def complete(http: Any, upload_id: str) -> Answer:
    return await call(http, "POST", f"{UPLOADS}/{upload_id}/complete")


async def upload_parts(http: Any, upload_id: str, file_index: int, parts: list[bytes],
                       numbers: list[int] | None = None, parallel: int = 4) -> None:  # fmt: skip
    """Upload the given part numbers (1-based; default all) with ``parallel`` requests in flight."""
    wanted = numbers if numbers is not None else list(range(1, len(parts) + 1))
    gate = asyncio.Semaphore(parallel)

    async def one(n: int) -> None:
        async with gate:
            (await put_part(http, upload_id, file_index, n, parts[n - 1])).ok()

    await asyncio.gather(*(one(n) for n in wanted))


async def upload_directory(http: Any, run_id: str, path: str, files: dict[str, bytes], part_size: int,
                           *, with_sha: bool = True, complete_it: bool = True) -> dict[str, Any]:  # fmt: skip
    specs = [{"path": name, "size": len(data), **({"sha256": sha256(data)} if with_sha else {})}
             for name, data in files.items()]  # fmt: skip
    session = (await create(http, run_id, path, specs, part_size, directory=True)).ok()
    for index, data in enumerate(files.values()):
        await upload_parts(http, session["upload_id"], index, split(data, part_size))
    if complete_it:
        return (await complete(http, session["upload_id"])).ok()
    return session


async def download(http: Any, store_path: str, headers: dict[str, str] | None = None) -> Answer:
    return await call(http, "GET", f"{ARTIFACTS}/{store_path}", headers=headers)


async def listing(http: Any, store_path: str) -> dict[str, Any]:
    """mlflow-artifacts listing as {name: size or 'dir'}."""
    body = (await call(http, "GET", ARTIFACTS, params={"path": store_path})).ok()
    return {
        f["path"]: ("dir" if f["is_dir"] else f.get("file_size", 0)) for f in body.get("files", [])
    }


async def run_listing(http: Any, run_id: str, path: str = "") -> dict[str, Any]:
    """The UI's run artifact listing as {path: size or 'dir'}."""
    body = (await call(http, "GET", RUN_ARTIFACTS, params={"run_id": run_id, "path": path})).ok()
    return {
        f["path"]: ("dir" if f["is_dir"] else f.get("file_size", 0)) for f in body.get("files", [])
    }


# ---------------------------------------------------------------- in-process helpers (TestClient)


async def sql(db_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def commit_in_store(client: Any, db_url: str, session_id: str, index: int) -> None:
    """What a committer does to one file before it records it: the store's atomic commit."""
    store = client.server.app[SERVICE].artifacts.inner
    file = (await get(client, session_id)).ok()["files"][index]
    parts = [StagedPart(p["part_number"], p["size"], p["etag"], p["sha256"]) for p in file["parts"]]
    query = (
        "SELECT staging_id, dest_path FROM upload_files WHERE session_id = $1 AND file_index = $2"
    )
    row = (await sql(db_url, query, session_id, index))[0]
    await store.stage_commit(row["dest_path"], row["staging_id"], parts)
