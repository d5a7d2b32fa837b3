"""The unmodified mlflow client reads what metricgate's upload API and references wrote: a
directory appears only once its session is committed, and references list and download like
ordinary artifacts."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp

import upload_client as uc

PART = 5 * 1024 * 1024  # the server's default minimum part size


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _upload_directory(
    base_url: str, run_id: str, files: dict[str, bytes], complete_it: bool
) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=base_url) as http:
        return await uc.upload_directory(
            http, run_id, "model", files, PART, complete_it=complete_it
        )


async def _complete(base_url: str, upload_id: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=base_url) as http:
        return (await uc.complete(http, upload_id)).ok()  # type: ignore[no-any-return]


async def _reference(base_url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession(base_url=base_url) as http:
        return (await uc.call(http, "POST", uc.REFERENCES, body=body)).ok()  # type: ignore[no-any-return]


def test_mlflow_sees_a_directory_upload_only_when_committed(
    mlflow_tracking: str, mlclient: Any, tmp_path: Path
) -> None:
    import mlflow

    run_id = mlclient.create_run(mlclient.create_experiment("uploads-e2e")).info.run_id
    files = {
        "MLmodel": b"flavors: {}\n",
        "data/model.bin": uc.blob(PART + 1000, 1),
        "data/extra.txt": b"x" * 10,
    }
    session = _run(_upload_directory(mlflow_tracking, run_id, files, complete_it=False))
    assert mlclient.list_artifacts(run_id) == []

    assert _run(_complete(mlflow_tracking, session["upload_id"]))["state"] == "committed"
    listed = {f.path: f.file_size for f in mlclient.list_artifacts(run_id, "model")}
    assert listed == {"model/MLmodel": 12, "model/data": None}
    local = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="model", dst_path=str(tmp_path / "dl")
        )
    )
    for name, data in files.items():
        assert (local / name).read_bytes() == data


def test_mlflow_lists_and_downloads_a_reference(
    mlflow_tracking: str, mlclient: Any, live_server_artifacts: Path, tmp_path: Path
) -> None:
    import mlflow

    # With no METRICGATE_UPLOAD_REFERENCE_URI_PREFIXES, references may point into the artifact
    # root only.
    source = live_server_artifacts / "shared-checkpoints" / "step-7.pt"
    source.parent.mkdir(parents=True)
    data = uc.blob(200_000, 2)
    source.write_bytes(data)
    run_id = mlclient.create_run(mlclient.create_experiment("refs-e2e")).info.run_id
    body = {
        "run_id": run_id,
        "path": "checkpoints/step-7.pt",
        "uri": source.as_uri(),
        "size": len(data),
    }
    _run(_reference(mlflow_tracking, body))

    assert [(f.path, f.is_dir) for f in mlclient.list_artifacts(run_id)] == [("checkpoints", True)]
    assert [(f.path, f.file_size) for f in mlclient.list_artifacts(run_id, "checkpoints")] == [
        ("checkpoints/step-7.pt", len(data))
    ]
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="checkpoints/step-7.pt", dst_path=str(tmp_path / "dl")
    )
    assert Path(local).read_bytes() == data
