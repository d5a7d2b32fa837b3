"""The unmodified mlflow client uploading in parts (mpu/*) through a live gateway, to disk and to S3.

The client reads MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD, MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE
and MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE from os.environ at each upload, so setting them in this
(the client's) process is enough. Thresholds are lowered so a few MiB go up in several parts.
The gateway's /metrics show how many part PUTs it served, which proves the multipart path ran.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path
from typing import Any

import pytest
import requests

MIB = 1024 * 1024
PART_ROUTE = "/api/2.0/mlflow-artifacts/mpu/part/{path}"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_random(path: Path, size: int, seed: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path


def part_puts(server_url: str, status: str = "200") -> int:
    text = requests.get(f"{server_url}/metrics", timeout=10).text
    pattern = rf'metricgate_http_requests_total\{{route="{re.escape(PART_ROUTE)}",status="{status}"\}} ([0-9.e+]+)'
    match = re.search(pattern, text)
    return int(float(match.group(1))) if match else 0


def enable_multipart(monkeypatch: pytest.MonkeyPatch, chunk: int, *, explicit: bool = True) -> None:
    if explicit:
        monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", "true")
    else:  # leave the decision to the server's /server-info (multipart_uploads_enabled)
        monkeypatch.delenv("MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD", raising=False)
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE", str(MIB))
    monkeypatch.setenv("MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE", str(chunk))


def upload_and_download(tmp_path: Path, source: Path, artifact_path: str) -> tuple[str, Path]:
    import mlflow

    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source), artifact_path=artifact_path)
    listed = {
        f.path: f.file_size
        for f in mlflow.MlflowClient().list_artifacts(run.info.run_id, artifact_path)
    }
    assert listed == {f"{artifact_path}/{source.name}": source.stat().st_size}
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id,
        artifact_path=f"{artifact_path}/{source.name}",
        dst_path=str(tmp_path / "download"),
    )
    return run.info.run_id, Path(downloaded)


@pytest.mark.parametrize("explicit", [True, False], ids=["env-enabled", "server-info"])
def test_mlflow_multipart_upload_to_local_store(
    mlflow_tracking: str,
    live_server_artifacts: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    explicit: bool,
) -> None:
    enable_multipart(monkeypatch, chunk=MIB, explicit=explicit)
    source = write_random(tmp_path / "src" / "checkpoint.bin", 3 * MIB + 4321, seed=1)
    before = part_puts(mlflow_tracking)
    _, downloaded = upload_and_download(tmp_path, source, "checkpoints")
    assert part_puts(mlflow_tracking) - before == 4
    assert sha256_of(downloaded) == sha256_of(source)
    # Staged parts are gone once committed.
    staging = live_server_artifacts / ".metricgate-staging" / "uploads"
    assert not staging.exists() or list(staging.iterdir()) == []


def test_mlflow_multipart_upload_to_seaweedfs(
    mlflow_tracking_s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = mlflow_tracking_s3
    enable_multipart(monkeypatch, chunk=5 * MIB)  # S3's smallest part size
    source = write_random(tmp_path / "src" / "weights.safetensors", 11 * MIB + 77, seed=2)
    before = part_puts(server.url)
    run_id, downloaded = upload_and_download(tmp_path, source, "model")
    assert part_puts(server.url) - before == 3
    assert sha256_of(downloaded) == sha256_of(source)

    # The object really is in the bucket under the server's prefix, complete, and no
    # multipart upload is left behind.
    s3 = server.endpoint.client()
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=server.endpoint.bucket, Prefix=server.prefix + "/")[
            "Contents"
        ]
    ]
    [key] = [k for k in keys if k.endswith(f"/{run_id}/artifacts/model/weights.safetensors")]
    assert (
        s3.head_object(Bucket=server.endpoint.bucket, Key=key)["ContentLength"]
        == source.stat().st_size
    )
    assert (
        s3.list_multipart_uploads(Bucket=server.endpoint.bucket, Prefix=server.prefix + "/").get(
            "Uploads", []
        )
        == []
    )


def test_mlflow_proxied_artifacts_on_seaweedfs(mlflow_tracking_s3: Any, tmp_path: Path) -> None:
    """The plain proxied API (one PUT per file, list, download, Range) with an s3:// artifact root."""
    import mlflow

    server = mlflow_tracking_s3
    src = tmp_path / "bundle"
    write_random(src / "a.bin", 100_000, seed=3)
    write_random(
        src / "nested" / "b.bin", 7_000_000, seed=4
    )  # above put()'s 5 MiB part size: multipart inside
    (src / "empty.txt").write_bytes(b"")
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(src), artifact_path="bundle")
    client = mlflow.MlflowClient()
    assert sorted((f.path, f.is_dir) for f in client.list_artifacts(run.info.run_id, "bundle")) == [
        ("bundle/a.bin", False),
        ("bundle/empty.txt", False),
        ("bundle/nested", True),
    ]
    out = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="bundle", dst_path=str(tmp_path / "dl")
        )
    )
    for relative in ("a.bin", "nested/b.bin", "empty.txt"):
        assert sha256_of(out / relative) == sha256_of(src / relative)

    run_path = f"{run.info.experiment_id}/{run.info.run_id}/artifacts"
    url = f"{server.url}/api/2.0/mlflow-artifacts/artifacts/{run_path}/bundle/nested/b.bin"
    ranged = requests.get(url, headers={"Range": "bytes=6000000-6000099"}, timeout=30)
    assert ranged.status_code == 206
    assert ranged.content == (src / "nested" / "b.bin").read_bytes()[6_000_000:6_000_100]


def ranged_gets(server_url: str) -> int:
    text = requests.get(f"{server_url}/metrics", timeout=10).text
    route = re.escape("/api/2.0/mlflow-artifacts/artifacts/{path}")
    match = re.search(
        rf'metricgate_http_requests_total\{{route="{route}",status="206"\}} ([0-9.e+]+)', text
    )
    return int(float(match.group(1))) if match else 0


@pytest.mark.parametrize("backend", ["local", "seaweedfs"])
def test_mlflow_multipart_download(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD: presigned/ hands out the gateway's own download URL,
    which the client fetches in parallel Range requests."""
    import mlflow

    if backend == "local":
        server_url = request.getfixturevalue("mlflow_tracking")
    else:
        server_url = request.getfixturevalue("mlflow_tracking_s3").url
    source = write_random(tmp_path / "src" / "shard.bin", 5 * MIB + 999, seed=5)
    with mlflow.start_run() as run:
        mlflow.log_artifact(str(source), artifact_path="shards")
    monkeypatch.setenv("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "true")
    monkeypatch.setenv("MLFLOW_MULTIPART_DOWNLOAD_CHUNK_SIZE", str(MIB))
    before = ranged_gets(server_url)
    downloaded = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="shards/shard.bin", dst_path=str(tmp_path / "dl")
    )
    assert ranged_gets(server_url) - before == 6
    assert sha256_of(Path(downloaded)) == sha256_of(source)
