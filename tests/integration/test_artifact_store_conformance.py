"""One behaviour for every artifact store: local disk, moto's S3 and SeaweedFS, over real HTTP.

Each test runs three times (``store`` is parametrized). S3 stores get a fresh key prefix per
test in a shared bucket; SeaweedFS also verifies the Content-MD5 we send with every part.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from metricgate.config import ArtifactSettings, ConfigError
from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.stores.artifacts import ArtifactStore, open_artifact_store
from metricgate.stores.artifacts.base import StagedPart
from metricgate.stores.artifacts.local import LocalArtifactStore
from metricgate.stores.artifacts.s3 import S3ArtifactStore
from s3_services import S3Endpoint

MIB = 1024 * 1024
S3_PART = 5 * MIB  # S3's minimum size for every part but the last


class Boom(RuntimeError):
    pass


async def stream(parts: Iterable[bytes], piece: int = 256 * 1024) -> AsyncIterator[bytes]:
    for part in parts:
        for offset in range(0, len(part), piece):
            await asyncio.sleep(0)
            yield part[offset : offset + piece]


async def failing_stream(data: bytes) -> AsyncIterator[bytes]:
    async for chunk in stream([data]):
        yield chunk
    raise Boom("client went away")


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def blob(size: int, seed: int = 0) -> bytes:
    """Deterministic random bytes: a shifted or swapped part would not compare equal."""
    return random.Random(seed).randbytes(size)


async def open_s3(endpoint: S3Endpoint, prefix: str, part_bytes: int = S3_PART) -> S3ArtifactStore:
    return await S3ArtifactStore.open(
        f"s3://{endpoint.bucket}/{prefix}",
        endpoint_url=endpoint.url,
        region=endpoint.region,
        access_key=endpoint.access_key,
        secret_key=endpoint.secret_key,
        part_bytes=part_bytes,
    )


@pytest.fixture(params=["local", "moto", "seaweed"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ArtifactStore]:
    if request.param == "local":
        opened: ArtifactStore = await LocalArtifactStore.open(tmp_path / "root")
    else:
        endpoint: S3Endpoint = request.getfixturevalue(f"s3_{request.param}")
        opened = await open_s3(endpoint, f"conformance/{uuid.uuid4().hex}")
    try:
        yield opened
    finally:
        await opened.aclose()


async def staged_upload(
    store: ArtifactStore, path: str, parts: list[bytes]
) -> tuple[str, list[StagedPart]]:
    staging_id = await store.stage_begin(path)
    staged = [
        await store.stage_part(path, staging_id, n, stream([data]))
        for n, data in enumerate(parts, 1)
    ]
    return staging_id, staged


# ---------------------------------------------------------------- whole-file API


async def test_put_read_size_round_trip(store: ArtifactStore) -> None:
    data = blob(300_000)
    assert await store.put("run/artifacts/model.bin", stream([data])) == len(data)
    assert await store.size("run/artifacts/model.bin") == len(data)
    assert await collect(store.read("run/artifacts/model.bin")) == data


async def test_large_put_goes_up_in_parts_and_reads_back(store: ArtifactStore) -> None:
    data = blob(2 * S3_PART + 12_345, seed=1)  # three parts on S3
    assert await store.put("big/weights.bin", stream([data], piece=MIB)) == len(data)
    assert await store.size("big/weights.bin") == len(data)
    read_back = await collect(store.read("big/weights.bin"))
    assert hashlib.sha256(read_back).hexdigest() == hashlib.sha256(data).hexdigest()


async def test_empty_file(store: ArtifactStore) -> None:
    assert await store.put("empty.txt", stream([])) == 0
    assert await store.size("empty.txt") == 0
    assert await collect(store.read("empty.txt")) == b""
    assert [(e.path, e.file_size) for e in await store.list("")] == [("empty.txt", 0)]


async def test_ranged_reads(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 40
    await store.put("r.bin", stream([data]))
    assert await collect(store.read("r.bin", 0, 10)) == data[:10]
    assert await collect(store.read("r.bin", 100, 5000)) == data[100:5000]
    assert await collect(store.read("r.bin", 10_000)) == data[10_000:]
    assert await collect(store.read("r.bin", 5, 5)) == b""
    assert await collect(store.read("r.bin", len(data) + 10)) == b""  # past the end: nothing
    with pytest.raises(InvalidParameter):
        store.read("r.bin", 10, 5)


async def test_overwrite_replaces(store: ArtifactStore) -> None:
    await store.put("f", stream([b"first version"]))
    await store.put("f", stream([b"v2"]))
    assert await collect(store.read("f")) == b"v2"


async def test_missing_is_not_found(store: ArtifactStore) -> None:
    with pytest.raises(NotFound):
        await store.size("nope.txt")
    with pytest.raises(NotFound):
        await collect(store.read("nope.txt"))
    await store.put("dir/inside.txt", stream([b"x"]))
    with pytest.raises(NotFound):
        await store.size("dir")  # a directory is not a file


async def test_list_directories_and_files(store: ArtifactStore) -> None:
    for path, data in [
        ("a/b/c.txt", b"ccc"),
        ("a/d.txt", b"dddd"),
        ("a/e/f/g.txt", b"g"),
        ("top.txt", b"t"),
    ]:
        await store.put(path, stream([data]))
    assert [(e.path, e.is_dir, e.file_size) for e in await store.list("a")] == [
        ("b", True, None),
        ("d.txt", False, 4),
        ("e", True, None),
    ]
    assert [(e.path, e.is_dir) for e in await store.list("")] == [("a", True), ("top.txt", False)]
    assert [e.path for e in await store.list("a/")] == ["b", "d.txt", "e"]
    assert await store.list("a/d.txt") == []  # a file lists as nothing
    assert await store.list("missing") == []


async def test_delete_file_and_tree(store: ArtifactStore) -> None:
    for path in ["t/x.txt", "t/sub/y.txt", "t/sub/deeper/z.txt", "keep.txt", "tx.txt"]:
        await store.put(path, stream([b"data"]))
    await store.delete("keep.txt")
    with pytest.raises(NotFound):
        await store.size("keep.txt")
    await store.delete("t")
    assert [e.path for e in await store.list("")] == [
        "tx.txt"
    ]  # a sibling sharing the prefix survives
    await store.delete("t")  # missing: not an error
    await store.delete("never/was")


async def test_failed_put_leaves_nothing(store: ArtifactStore) -> None:
    for size in (1000, 2 * S3_PART + 1):  # single PUT and multipart on S3
        with pytest.raises(Boom):
            await store.put("broken.bin", failing_stream(blob(size)))
        with pytest.raises(NotFound):
            await store.size("broken.bin")
        assert await store.list("") == []
    await asyncio.sleep(0.2)  # S3: the abort of the multipart upload runs in the background
    assert await store.stage_list() == []


async def test_traversal_and_bad_paths_are_refused(store: ArtifactStore) -> None:
    for bad in ["../escape", "a/../../b", "/abs", "a//b", "%2e%2e/x", "a\\b"]:
        with pytest.raises(InvalidParameter):
            await store.put(bad, stream([b"x"]))
        with pytest.raises(InvalidParameter):
            await store.stage_begin(bad)
        with pytest.raises(InvalidParameter):
            await store.size(bad)
    assert await store.list("") == []


# ---------------------------------------------------------------- staged uploads


async def test_staged_upload_is_invisible_until_commit(store: ArtifactStore) -> None:
    parts = [blob(S3_PART, seed=2), blob(S3_PART, seed=3), blob(1234, seed=4)]
    staging_id = await store.stage_begin("ckpt/model.safetensors")
    # Out of order, as parallel clients send them.
    staged = {
        n: await store.stage_part("ckpt/model.safetensors", staging_id, n, stream([parts[n - 1]]))
        for n in (3, 1, 2)
    }
    assert staged[1].size == S3_PART and staged[3].size == 1234
    assert staged[2].sha256 == hashlib.sha256(parts[1]).hexdigest()
    assert staged[2].etag == hashlib.md5(parts[1]).hexdigest()

    with pytest.raises(NotFound):
        await store.size("ckpt/model.safetensors")
    assert await store.list("") == []
    assert await store.list("ckpt") == []
    listed = await store.stage_parts("ckpt/model.safetensors", staging_id)
    assert [(p.part_number, p.size, p.etag) for p in listed] == [
        (n, staged[n].size, staged[n].etag) for n in (1, 2, 3)
    ]
    uploads = await store.stage_list()
    assert [(path, sid) for path, sid, _ in uploads] == [("ckpt/model.safetensors", staging_id)]

    size = await store.stage_commit(
        "ckpt/model.safetensors", staging_id, [staged[n] for n in (1, 2, 3)]
    )
    whole = b"".join(parts)
    assert size == len(whole) == await store.size("ckpt/model.safetensors")
    assert (
        hashlib.sha256(await collect(store.read("ckpt/model.safetensors"))).digest()
        == hashlib.sha256(whole).digest()
    )
    assert await store.stage_list() == []
    assert [(e.path, e.is_dir) for e in await store.list("")] == [("ckpt", True)]


async def test_reuploaded_part_replaces_the_old_one(store: ArtifactStore) -> None:
    first, second = blob(S3_PART, seed=5), blob(S3_PART, seed=6)
    staging_id = await store.stage_begin("p.bin")
    await store.stage_part("p.bin", staging_id, 1, stream([first]))
    if isinstance(store, S3ArtifactStore):
        # SeaweedFS lists both versions of a re-uploaded part; only LastModified (whole seconds)
        # tells which is newer.
        await asyncio.sleep(1.1)
    replaced = await store.stage_part("p.bin", staging_id, 1, stream([second]))
    tail = await store.stage_part("p.bin", staging_id, 2, stream([b"tail"]))
    assert [p.etag for p in await store.stage_parts("p.bin", staging_id)] == [
        replaced.etag,
        tail.etag,
    ]
    await store.stage_commit("p.bin", staging_id, [replaced, tail])
    assert await collect(store.read("p.bin")) == second + b"tail"


async def test_checksum_mismatch_discards_the_part(store: ArtifactStore) -> None:
    data = blob(100_000, seed=7)
    staging_id = await store.stage_begin("c.bin")
    with pytest.raises(InvalidParameter, match="Checksum mismatch"):
        await store.stage_part("c.bin", staging_id, 1, stream([data]), expected_sha256="0" * 64)
    assert await store.stage_parts("c.bin", staging_id) == []
    with pytest.raises(InvalidParameter):
        await store.stage_part("c.bin", staging_id, 1, stream([data]), expected_sha256="not-hex")
    good = await store.stage_part(
        "c.bin",
        staging_id,
        1,
        stream([data]),
        expected_sha256=hashlib.sha256(data).hexdigest().upper(),
    )
    assert good.sha256 == hashlib.sha256(data).hexdigest()
    assert await store.stage_commit("c.bin", staging_id, [good]) == len(data)


async def test_bad_commits_make_nothing_visible(store: ArtifactStore) -> None:
    staging_id, (one, two) = await staged_upload(store, "x.bin", [blob(S3_PART, seed=8), b"end"])
    forged = StagedPart(2, two.size, "0" * 32, "")
    never = StagedPart(3, 1, "0" * 32, "")
    for parts in ([], [two, one], [one, forged], [one, two, never], [one, one]):
        with pytest.raises(InvalidParameter):
            await store.stage_commit("x.bin", staging_id, parts)
        with pytest.raises(NotFound):
            await store.size("x.bin")
    assert await store.stage_commit("x.bin", staging_id, [one, two]) == S3_PART + 3


async def test_part_numbers_and_unknown_uploads(
    store: ArtifactStore, request: pytest.FixtureRequest
) -> None:
    staging_id = await store.stage_begin("n.bin")
    for bad in (0, 10_001, -1):
        with pytest.raises(InvalidParameter):
            await store.stage_part("n.bin", staging_id, bad, stream([b"x"]))
    if request.node.callspec.params["store"] == "moto":
        return  # moto answers 500 for unknown upload ids and lists any upload's parts under any key
    with pytest.raises((NotFound, InvalidParameter)):
        await store.stage_part(
            "n.bin",
            "no-such-upload" if isinstance(store, S3ArtifactStore) else "0" * 32,
            1,
            stream([b"x"]),
        )
    other = await store.stage_begin("other.bin")
    with pytest.raises((NotFound, InvalidParameter)):
        await store.stage_parts("n.bin", other)  # an id of another path


async def test_abort_discards_and_is_idempotent(store: ArtifactStore) -> None:
    staging_id, parts = await staged_upload(store, "gone.bin", [blob(S3_PART, seed=9), b"tail"])
    keep_id, _ = await staged_upload(store, "kept.bin", [b"small"])
    await store.stage_abort("gone.bin", staging_id)
    await store.stage_abort("gone.bin", staging_id)
    assert [sid for _, sid, _ in await store.stage_list()] == [keep_id]
    with pytest.raises((NotFound, InvalidParameter)):
        await store.stage_commit("gone.bin", staging_id, parts)
    with pytest.raises(NotFound):
        await store.size("gone.bin")
    await store.stage_abort("kept.bin", keep_id)
    assert await store.stage_list() == []


async def test_stage_list_reports_start_times(
    store: ArtifactStore, request: pytest.FixtureRequest
) -> None:
    import time

    before = time.time()
    staging_id = await store.stage_begin("t/started.bin")
    (path, listed_id, started_at) = (await store.stage_list())[0]
    assert (path, listed_id) == ("t/started.bin", staging_id)
    if request.node.callspec.params["store"] != "moto":  # moto reports a fixed 2010 date
        assert before - 5 <= started_at <= time.time() + 5
    await store.stage_abort(path, listed_id)


# ---------------------------------------------------------------- external objects (references)


async def external_object(
    store: ArtifactStore, request: pytest.FixtureRequest, tmp_path: Path, data: bytes
) -> str:
    if isinstance(store, LocalArtifactStore):
        target = tmp_path / "elsewhere" / "ckpt.bin"
        target.parent.mkdir()
        target.write_bytes(data)
        return target.as_uri()
    endpoint: S3Endpoint = request.getfixturevalue(f"s3_{request.node.callspec.params['store']}")
    key = f"external/{uuid.uuid4().hex}/ckpt.bin"
    endpoint.client().put_object(Bucket=endpoint.bucket, Key=key, Body=data)
    return f"s3://{endpoint.bucket}/{key}"


async def test_external_head_and_read(
    store: ArtifactStore, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    data = blob(70_000, seed=10)
    uri = await external_object(store, request, tmp_path, data)
    size, etag = await store.head_external(uri)
    assert size == len(data) and etag
    assert await collect(store.read_external(uri)) == data
    assert await collect(store.read_external(uri, 1000, 2000)) == data[1000:2000]
    missing = uri.rsplit("/", 1)[0] + "/missing.bin"
    with pytest.raises(NotFound):
        await store.head_external(missing)
    with pytest.raises(InvalidParameter):
        await store.head_external(
            "gs://bucket/key" if isinstance(store, S3ArtifactStore) else "s3://bucket/key"
        )


# ---------------------------------------------------------------- store-specific


async def test_local_staging_is_hidden_and_survives_reopen(tmp_path: Path) -> None:
    root = tmp_path / "root"
    store = await LocalArtifactStore.open(root)
    staging_id = await store.stage_begin("a.bin")
    await store.stage_part("a.bin", staging_id, 1, stream([b"part one"]))
    old = 1_000_000_000  # long ago: older than the put-staging sweep cut-off
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            os.utime(os.path.join(dirpath, name), (old, old))
    reopened = await LocalArtifactStore.open(root, stale_after_s=1)
    assert await reopened.list("") == []
    assert [p.size for p in await reopened.stage_parts("a.bin", staging_id)] == [8]
    with pytest.raises(InvalidParameter):
        await reopened.stage_parts("a.bin", "../../etc")


async def test_s3_store_opens_from_settings(
    s3_moto: S3Endpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in s3_moto.env().items():
        monkeypatch.setenv(name, value)
    settings = ArtifactSettings(
        uri=f"s3://{s3_moto.bucket}/from-settings", s3_endpoint_url=s3_moto.url
    )
    opened = await open_artifact_store(settings)
    try:
        assert isinstance(opened, S3ArtifactStore)
        await opened.put("hello.txt", stream([b"hi"]))
        body = (
            s3_moto.client()
            .get_object(Bucket=s3_moto.bucket, Key="from-settings/hello.txt")["Body"]
            .read()
        )
        assert body == b"hi"
    finally:
        await opened.aclose()
    with pytest.raises(ConfigError, match="not usable"):
        await open_artifact_store(
            ArtifactSettings(uri="s3://no-such-bucket-here/x", s3_endpoint_url=s3_moto.url)
        )


async def test_seaweed_refuses_wrong_credentials_at_open(s3_seaweed: S3Endpoint) -> None:
    with pytest.raises(Exception) as excinfo:
        await S3ArtifactStore.open(
            f"s3://{s3_seaweed.bucket}/x", endpoint_url=s3_seaweed.url,
            access_key=s3_seaweed.access_key, secret_key="wrong", region=s3_seaweed.region,
        )  # fmt: skip
    assert "refused access" in str(excinfo.value)
