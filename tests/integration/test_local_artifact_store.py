"""LocalArtifactStore against a real temporary directory: no mocks."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from metricgate.config import ArtifactSettings, ConfigError
from metricgate.domain.errors import InvalidParameter, NotFound
from metricgate.domain.tracking.entities import ArtifactEntry
from metricgate.stores.artifacts import ArtifactStore, open_artifact_store
from metricgate.stores.artifacts.local import STAGING_DIR, LocalArtifactStore


class Boom(RuntimeError):
    pass


async def stream(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def failing_stream(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    raise Boom("client went away")


async def collect(chunks: AsyncIterator[bytes]) -> bytes:
    return b"".join([chunk async for chunk in chunks])


def visible_files(root: Path) -> list[str]:
    """Every file under the root except the staging area, relative to it."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not (Path(dirpath) == root and d == STAGING_DIR)]
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in filenames]
    return sorted(found)


def staging_files(root: Path) -> list[str]:
    staging = root / STAGING_DIR
    return sorted(os.listdir(staging)) if staging.exists() else []


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "root")


@pytest.fixture
def root(store: LocalArtifactStore) -> Path:
    return store.root


async def test_satisfies_protocol(store: LocalArtifactStore) -> None:
    typed: ArtifactStore = store
    assert typed is store


async def test_put_and_read_round_trip(store: LocalArtifactStore, root: Path) -> None:
    parts = [os.urandom(700_000) for _ in range(5)] + [b"", b"tail"]
    size = await store.put("1/run/artifacts/data.bin", stream(parts))
    expected = b"".join(parts)
    assert size == len(expected)
    assert await store.size("1/run/artifacts/data.bin") == len(expected)
    assert await collect(store.read("1/run/artifacts/data.bin")) == expected
    assert (root / "1/run/artifacts/data.bin").read_bytes() == expected
    assert staging_files(root) == []


async def test_read_streams_in_bounded_chunks(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, read_chunk_bytes=1000)
    await store.put("f", stream([b"x" * 4500]))
    sizes = [len(chunk) async for chunk in store.read("f")]
    assert sizes == [1000, 1000, 1000, 1000, 500]


async def test_read_ranges(store: LocalArtifactStore) -> None:
    data = bytes(range(256)) * 40
    await store.put("r.bin", stream([data]))
    assert await collect(store.read("r.bin", 10, 20)) == data[10:20]
    assert await collect(store.read("r.bin", 100)) == data[100:]
    assert await collect(store.read("r.bin", 5, 5)) == b""
    assert await collect(store.read("r.bin", len(data) - 3, len(data) + 100)) == data[-3:]
    with pytest.raises(InvalidParameter):
        store.read("r.bin", -1)
    with pytest.raises(InvalidParameter):
        store.read("r.bin", 10, 5)


async def test_empty_file(store: LocalArtifactStore) -> None:
    assert await store.put("empty.txt", stream([])) == 0
    assert await store.size("empty.txt") == 0
    assert await collect(store.read("empty.txt")) == b""
    assert await store.list("") == [ArtifactEntry("empty.txt", False, 0)]


async def test_overwrite_replaces_content(store: LocalArtifactStore) -> None:
    await store.put("a.txt", stream([b"first version, longer"]))
    await store.put("a.txt", stream([b"second"]))
    assert await collect(store.read("a.txt")) == b"second"


async def test_reader_keeps_the_version_it_opened(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, read_chunk_bytes=4)
    await store.put("v.txt", stream([b"old-old-old-"]))
    reader = store.read("v.txt")
    first = await anext(reader)
    await store.put("v.txt", stream([b"NEW-NEW-NEW-NEW-"]))
    rest = await collect(reader)
    assert first + rest == b"old-old-old-"
    assert await collect(store.read("v.txt")) == b"NEW-NEW-NEW-NEW-"


async def test_missing_and_directory_are_not_found(store: LocalArtifactStore) -> None:
    await store.put("dir/f.txt", stream([b"x"]))
    for path in ("nope.txt", "dir", "dir/f.txt/below"):
        with pytest.raises(NotFound):
            await store.size(path)
        with pytest.raises(NotFound):
            await collect(store.read(path))


async def test_list_directory(store: LocalArtifactStore) -> None:
    await store.put("1/r/artifacts/b.txt", stream([b"bb"]))
    await store.put("1/r/artifacts/a.txt", stream([b"a"]))
    await store.put("1/r/artifacts/sub/deep.txt", stream([b"deep"]))
    assert await store.list("1/r/artifacts") == [
        ArtifactEntry("a.txt", False, 1),
        ArtifactEntry("b.txt", False, 2),
        ArtifactEntry("sub", True, None),
    ]
    assert await store.list("1/r/artifacts/") == await store.list("1/r/artifacts")
    assert await store.list("1/r/artifacts/sub") == [ArtifactEntry("deep.txt", False, 4)]
    assert await store.list("1/r/artifacts/a.txt") == []
    assert await store.list("1/r/missing") == []
    assert await store.list("1/r/artifacts/a.txt/x") == []


async def test_list_of_missing_root(tmp_path: Path) -> None:
    assert await LocalArtifactStore(tmp_path / "never-created").list("") == []


async def test_delete_file_and_tree(store: LocalArtifactStore, root: Path) -> None:
    await store.put("1/r/artifacts/keep.txt", stream([b"k"]))
    await store.put("1/r/artifacts/model/MLmodel", stream([b"m"]))
    await store.put("1/r/artifacts/model/sub/w.bin", stream([b"w"]))
    await store.delete("1/r/artifacts/model")
    assert await store.list("1/r/artifacts") == [ArtifactEntry("keep.txt", False, 1)]
    await store.delete("1/r/artifacts/keep.txt")
    assert await store.list("1/r/artifacts") == []
    await store.delete("1/r/artifacts/keep.txt")  # missing is fine
    await store.delete("no/such/tree")
    assert visible_files(root) == []


async def test_failed_put_leaves_nothing(store: LocalArtifactStore, root: Path) -> None:
    with pytest.raises(Boom):
        await store.put("1/r/artifacts/new/partial.bin", failing_stream([b"x" * 3_000_000]))
    assert visible_files(root) == []
    assert not (root / "1").exists()  # not even the parent directories
    assert staging_files(root) == []
    assert await store.list("") == []
    with pytest.raises(NotFound):
        await store.size("1/r/artifacts/new/partial.bin")


async def test_failed_put_keeps_previous_content(store: LocalArtifactStore, root: Path) -> None:
    await store.put("a/model.pkl", stream([b"old content"]))
    with pytest.raises(Boom):
        await store.put("a/model.pkl", failing_stream([b"new" * 1_000_000]))
    assert await collect(store.read("a/model.pkl")) == b"old content"
    assert visible_files(root) == ["a/model.pkl"]
    assert staging_files(root) == []


async def test_cancelled_put_leaves_nothing(store: LocalArtifactStore, root: Path) -> None:
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"x" * 2_000_000
        started.set()
        await asyncio.sleep(3600)
        yield b"never"

    task = asyncio.create_task(store.put("c/slow.bin", slow()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.05)  # let any worker thread still writing finish
    assert visible_files(root) == []
    assert staging_files(root) == []


async def test_staging_is_hidden_and_reserved(store: LocalArtifactStore, root: Path) -> None:
    await store.put("x.txt", stream([b"x"]))
    (root / STAGING_DIR).mkdir(exist_ok=True)
    (root / STAGING_DIR / "leftover.part").write_bytes(b"crash debris")
    assert await store.list("") == [ArtifactEntry("x.txt", False, 1)]
    for call in (
        lambda: store.put(f"{STAGING_DIR}/evil", stream([b"x"])),
        lambda: store.size(f"{STAGING_DIR}/leftover.part"),
        lambda: store.list(STAGING_DIR),
        lambda: store.delete(STAGING_DIR),
    ):
        with pytest.raises(InvalidParameter):
            await call()
    with pytest.raises(InvalidParameter):
        store.read(f"{STAGING_DIR}/leftover.part")
    assert (root / STAGING_DIR / "leftover.part").exists()


async def test_sweep_removes_only_stale_staging_files(
    store: LocalArtifactStore, root: Path
) -> None:
    staging = root / STAGING_DIR
    staging.mkdir(parents=True)
    stale, fresh = staging / "stale.part", staging / "fresh.part"
    stale.write_bytes(b"old")
    fresh.write_bytes(b"new")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert await store.sweep_staging(3600) == 1
    assert staging_files(root) == ["fresh.part"]
    assert await store.sweep_staging(0) == 1
    assert staging_files(root) == []


async def test_open_creates_root_and_sweeps(tmp_path: Path) -> None:
    root = tmp_path / "new" / "root"
    opened = await LocalArtifactStore.open(root)
    assert root.is_dir()
    stale = root / STAGING_DIR / "crashed.part"
    stale.write_bytes(b"x")
    old = time.time() - 2 * 86400
    os.utime(stale, (old, old))
    await opened.aclose()
    reopened = await open_artifact_store(ArtifactSettings(uri=root.as_uri()))
    assert isinstance(reopened, LocalArtifactStore)
    assert not stale.exists()
    await reopened.aclose()


async def test_empty_uri_means_mlartifacts_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    opened = await open_artifact_store(ArtifactSettings(uri=""))
    assert isinstance(opened, LocalArtifactStore)
    assert opened.root == tmp_path.resolve() / "mlartifacts"
    assert opened.root.is_dir()


async def test_file_uri_is_percent_decoded(tmp_path: Path) -> None:
    root = tmp_path / "with space"
    opened = await open_artifact_store(ArtifactSettings(uri=root.as_uri()))
    assert isinstance(opened, LocalArtifactStore)
    assert opened.root == root.resolve()


async def test_open_rejects_bad_uris(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        await open_artifact_store(ArtifactSettings(uri="file://otherhost/x"))
    with pytest.raises(ConfigError):
        await open_artifact_store(ArtifactSettings(uri="gs://bucket"))


async def test_traversal_is_rejected_everywhere(store: LocalArtifactStore, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_bytes(b"secret")
    for bad in (
        "../secret.txt",
        "/etc/passwd",
        "a/../../secret.txt",
        "a\\..\\b",
        "%2e%2e/secret.txt",
    ):
        with pytest.raises(InvalidParameter):
            await store.put(bad, stream([b"x"]))
        with pytest.raises(InvalidParameter):
            await store.size(bad)
        with pytest.raises(InvalidParameter):
            store.read(bad)
        with pytest.raises(InvalidParameter):
            await store.list(bad)
        with pytest.raises(InvalidParameter):
            await store.delete(bad)
    assert (tmp_path / "secret.txt").read_bytes() == b"secret"


async def test_symlinks_out_of_the_root_are_refused(
    store: LocalArtifactStore, root: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"secret")
    root.mkdir(parents=True, exist_ok=True)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "leak.txt").symlink_to(outside / "secret.txt")
    await store.put("inside.txt", stream([b"fine"]))

    with pytest.raises(InvalidParameter):
        await store.put("escape/planted.txt", stream([b"x"]))
    assert not (outside / "planted.txt").exists()
    with pytest.raises(InvalidParameter):
        await collect(store.read("escape/secret.txt"))
    with pytest.raises(InvalidParameter):
        await store.size("leak.txt")
    with pytest.raises(InvalidParameter):
        await store.list("escape")
    with pytest.raises(InvalidParameter):
        await store.delete("escape/secret.txt")
    # Escaping links are not even listed; deleting one removes the link, never its target.
    assert await store.list("") == [ArtifactEntry("inside.txt", False, 4)]
    await store.delete("leak.txt")
    assert not (root / "leak.txt").is_symlink()
    assert (outside / "secret.txt").read_bytes() == b"secret"


async def test_symlinks_inside_the_root_work(store: LocalArtifactStore, root: Path) -> None:
    await store.put("real/data.txt", stream([b"data"]))
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    assert await collect(store.read("alias/data.txt")) == b"data"
    assert await store.list("alias") == [ArtifactEntry("data.txt", False, 4)]


async def test_put_over_directory_or_under_file_is_invalid(
    store: LocalArtifactStore, root: Path
) -> None:
    await store.put("d/f.txt", stream([b"x"]))
    with pytest.raises(InvalidParameter, match="directory"):
        await store.put("d", stream([b"x"]))
    with pytest.raises(InvalidParameter, match="file"):
        await store.put("d/f.txt/child", stream([b"x"]))
    assert visible_files(root) == ["d/f.txt"]
    assert staging_files(root) == []


async def test_concurrent_puts_to_one_path_each_commit_whole(store: LocalArtifactStore) -> None:
    payloads = [bytes([i]) * 300_000 for i in range(8)]
    await asyncio.gather(
        *(store.put("same.bin", stream([p[:150_000], p[150_000:]])) for p in payloads)
    )
    assert await collect(store.read("same.bin")) in payloads
