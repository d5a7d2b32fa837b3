"""The artifact client (``metricgate.client`` and ``metricgate artifacts``) against a live server on
the local store and on SeaweedFS: byte-exact round trips of a file and a directory in parallel
parts, what the unmodified mlflow client reads back, checksum mismatches and clear errors."""

from __future__ import annotations

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from tests.factories import Rest

from metricgate.client import ChecksumMismatch, ClientError, download, upload
from metricgate.client.runs import SHA256_TAG_PREFIX

MIB = 1024 * 1024
PART = 5 * MIB  # the server's default minimum part size


def blob(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "seaweed"])
def server(request: pytest.FixtureRequest) -> str:
    """A live server (with the mlflow client pointed at it) on either artifact store."""
    if request.param == "local":
        return str(request.getfixturevalue("mlflow_tracking"))
    return str(request.getfixturevalue("mlflow_tracking_s3").url)


def new_run(url: str) -> str:
    return Rest(url).new_run_id()


def cli(*args: str, cache: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    proc = subprocess.run([sys.executable, "-m", "metricgate", "artifacts", *args], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    if check:
        assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def test_file_round_trip_in_parallel_parts(server: str, tmp_path: Path) -> None:
    import mlflow

    run_id = new_run(server)
    data = blob(4 * PART + 12345, seed=1)  # 5 parts, the last one short
    source = tmp_path / "ckpt.bin"
    source.write_bytes(data)
    seen: list[tuple[int, int]] = []

    result = upload(source, run_id, "checkpoints/step-10.bin", url=server, part_size=PART, parallel=4,
                    progress=lambda done, total: seen.append((done, total)), state_dir=tmp_path / "state")  # fmt: skip
    assert (result.parts_total, len(result.parts_sent), result.resumed) == (5, 5, False)
    assert sorted(result.parts_sent) == [(0, n) for n in range(1, 6)]
    assert result.sha256 == {"checkpoints/step-10.bin": sha(data)}
    assert seen[-1] == (len(data), len(data)) and seen[0] == (0, len(data))
    assert not list((tmp_path / "state").glob("*.json")), "the resume record outlived the commit"

    got = download(
        run_id,
        "checkpoints/step-10.bin",
        tmp_path / "out.bin",
        url=server,
        parallel=4,
        chunk_size=3 * MIB,
    )
    assert (tmp_path / "out.bin").read_bytes() == data
    assert [(f.size, f.sha256, f.verified) for f in got.files] == [(len(data), sha(data), True)]
    assert not list(tmp_path.glob("*.metricgate-partial"))

    # The unmodified mlflow client sees an ordinary artifact, and the recorded SHA-256 as a tag.
    run = mlflow.MlflowClient(tracking_uri=server).get_run(run_id)
    assert run.data.tags[SHA256_TAG_PREFIX + "checkpoints/step-10.bin"] == sha(data)
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="checkpoints/step-10.bin",
                                                dst_path=str(tmp_path / "mlflow"))  # fmt: skip
    assert sha(Path(local).read_bytes()) == sha(data)


def test_directory_round_trip_through_the_cli(server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run_id = new_run(server)
    files = {"MLmodel": b"flavors: {}\n", "data/weights.bin": blob(2 * PART + 7, 2),
             "data/shard-2.bin": blob(PART, 3), "empty.txt": b""}  # fmt: skip
    model = tmp_path / "model"
    for name, data in files.items():
        (model / name).parent.mkdir(parents=True, exist_ok=True)
        (model / name).write_bytes(data)

    up = cli("upload", str(model), "--run", run_id, "--url", server, "--part-size", "5M", "--parallel", "3",
             "--json", cache=tmp_path / "cache")  # fmt: skip
    summary = json.loads(up.stdout.strip().splitlines()[-1])
    assert summary["path"] == "model" and summary["parts_total"] == 6 and summary["parts_sent"] == 6
    assert "upload model [" in up.stderr  # the progress bar (not a terminal: plain lines)

    listed = {
        f.path: f.file_size
        for f in MlflowClient(tracking_uri=server).list_artifacts(run_id, "model/data")
    }
    assert listed == {"model/data/weights.bin": 2 * PART + 7, "model/data/shard-2.bin": PART}

    down = cli("download", "model", str(tmp_path / "restore"), "--run", run_id, "--url", server, "--json",
               "--chunk-size", "4M", "--fsync", cache=tmp_path / "cache")  # fmt: skip
    result = json.loads(down.stdout.strip().splitlines()[-1])
    assert all(f["verified"] for f in result["files"]) and len(result["files"]) == 4
    for name, data in files.items():
        assert (tmp_path / "restore" / "model" / name).read_bytes() == data, name


def test_corrupted_object_fails_the_download_check(
    live_server: str, live_server_artifacts: Path, tmp_path: Path
) -> None:
    run_id = new_run(live_server)
    data = blob(PART + 999, seed=4)
    (tmp_path / "w.bin").write_bytes(data)
    upload(
        tmp_path / "w.bin",
        run_id,
        "w.bin",
        url=live_server,
        part_size=PART,
        state_dir=tmp_path / "s",
    )
    # Flip one byte of the stored object.
    stored = [p for p in live_server_artifacts.rglob("w.bin") if run_id in str(p)]
    assert len(stored) == 1, stored
    with open(stored[0], "r+b") as f:
        f.seek(PART + 10)
        byte = f.read(1)
        f.seek(PART + 10)
        f.write(bytes([byte[0] ^ 0xFF]))

    with pytest.raises(ChecksumMismatch) as caught:
        download(run_id, "w.bin", tmp_path / "out", url=live_server, chunk_size=2 * MIB)
    assert caught.value.expected == sha(data) and "w.bin" in str(caught.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out*"))

    proc = cli("download", "w.bin", str(tmp_path / "out"), "--run", run_id, "--url", live_server,
               "--no-progress", cache=tmp_path / "c", check=False)  # fmt: skip
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "SHA-256 mismatch for w.bin" in proc.stderr and "discarded" in proc.stderr
    # An explicit, correct --sha256 of the corrupted bytes is accepted: the check is real, not a flag.
    corrupted = sha(stored[0].read_bytes())
    cli("download", "w.bin", str(tmp_path / "out"), "--run", run_id, "--url", live_server, "--no-progress",
        "--sha256", corrupted, cache=tmp_path / "c")  # fmt: skip
    assert sha((tmp_path / "out").read_bytes()) == corrupted


def test_clear_errors(live_server: str, tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x" * 100)
    with pytest.raises(ClientError) as caught:
        upload(
            tmp_path / "f.bin", "0" * 32, url=live_server, part_size=PART, state_dir=tmp_path / "s"
        )
    assert caught.value.status == 404 and caught.value.error_code == "RESOURCE_DOES_NOT_EXIST"

    run_id = new_run(live_server)
    proc = cli("upload", str(tmp_path / "f.bin"), "--run", run_id, "--url", live_server, "--part-size", "1k",
               "--no-progress", cache=tmp_path / "c", check=False)  # fmt: skip
    assert (
        proc.returncode == 1
        and "INVALID_PARAMETER_VALUE" in proc.stderr
        and "too small" in proc.stderr
    )
    proc = cli("upload", str(tmp_path / "nope"), "--run", run_id, "--url", live_server, cache=tmp_path / "c",
               check=False)  # fmt: skip
    assert proc.returncode == 2 and "no such file" in proc.stderr
    proc = cli("download", "missing.bin", str(tmp_path / "o"), "--run", run_id, "--url", live_server,
               "--no-progress", cache=tmp_path / "c", check=False)  # fmt: skip
    assert proc.returncode == 1 and "RESOURCE_DOES_NOT_EXIST" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("o*"))


def test_directory_into_the_run_root_and_back(live_server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    run_id = new_run(live_server)
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_bytes(b"alpha")
    (tmp_path / "src" / "sub" / "b.bin").write_bytes(blob(3000, 5))
    result = upload(
        tmp_path / "src", run_id, "", url=live_server, part_size=PART, state_dir=tmp_path / "s"
    )
    assert set(result.sha256) == {"a.txt", "sub/b.bin"} and not result.warnings
    assert {f.path for f in MlflowClient(tracking_uri=live_server).list_artifacts(run_id)} == {
        "a.txt",
        "sub",
    }
    got = download(run_id, "", tmp_path / "back", url=live_server)
    assert sorted((f.artifact_path, f.verified) for f in got.files) == [
        ("a.txt", True),
        ("sub/b.bin", True),
    ]
    assert (tmp_path / "back" / "sub" / "b.bin").read_bytes() == blob(3000, 5)


def test_reference_download_is_checked_against_its_registered_sha256(
    live_server: str, live_server_artifacts: Path, tmp_path: Path
) -> None:
    import requests

    run_id = new_run(live_server)
    # References may point into the artifact root when no prefixes are configured.
    source = live_server_artifacts / "shared" / "step-9.pt"
    source.parent.mkdir(parents=True)
    data = blob(3 * MIB + 5, 6)
    source.write_bytes(data)
    body = {
        "run_id": run_id,
        "path": "ckpt/step-9.pt",
        "uri": source.as_uri(),
        "size": len(data),
        "sha256": sha(data),
    }
    resp = requests.post(
        f"{live_server}/api/2.0/metricgate/artifact-references", json=body, timeout=30
    )
    assert resp.status_code == 200, resp.text

    got = download(run_id, "ckpt/step-9.pt", tmp_path / "a.pt", url=live_server, chunk_size=MIB)
    assert got.files[0].verified and (tmp_path / "a.pt").read_bytes() == data
    with open(source, "r+b") as f:  # the object changes behind the reference's back
        f.write(b"\0")
    with pytest.raises(ChecksumMismatch):
        download(run_id, "ckpt/step-9.pt", tmp_path / "b.pt", url=live_server, chunk_size=MIB)
    assert not (tmp_path / "b.pt").exists()
