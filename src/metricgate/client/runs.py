"""What the artifact client needs from MLflow's run API: a run's artifact root and its tags.

SHA-256s of uploaded files are recorded as run tags ``metricgate.sha256:<artifact path>`` so a
later download (by this client, on any machine) can verify the bytes; the server's artifact API
has no place to return them. Paths too long for a tag key are simply not recorded.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from metricgate.client.errors import ClientError
from metricgate.client.http import Api
from metricgate.domain.tracking.rules import MAX_ENTITY_KEY_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

SHA256_TAG_PREFIX = "metricgate.sha256:"
MAX_TAG_KEY = MAX_ENTITY_KEY_LENGTH
_TAGS_PER_BATCH = MAX_PARAMS_TAGS_PER_BATCH  # MLflow's log-batch limit for tags
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


def sha256_tag(artifact_path: str) -> str | None:
    key = SHA256_TAG_PREFIX + artifact_path
    return key if len(key) <= MAX_TAG_KEY else None


async def get_run(api: Api, run_id: str) -> dict[str, Any]:
    body = await api.json(
        "GET", "/api/2.0/mlflow/runs/get", params={"run_id": run_id}, what=f"run {run_id}"
    )
    run: dict[str, Any] = body["run"]
    return run


def store_root(run: dict[str, Any]) -> str:
    """The proxied store path of a run's artifacts: ``mlflow-artifacts:/1/<run>/artifacts`` ->
    ``1/<run>/artifacts``."""
    # Imported here: the server's path rules are needed once per download, not at CLI start-up.
    from metricgate.domain.artifacts.paths import proxied_store_path

    uri = run["info"].get("artifact_uri", "")
    root = proxied_store_path(uri)
    if root is None:
        raise ClientError(
            f"Run {run['info'].get('run_id')} keeps its artifacts at {uri!r}, which the server does not proxy"
        )
    return root


def recorded_sha256(run: dict[str, Any]) -> dict[str, str]:
    """{artifact path: sha256} from the run's tags."""
    tags = run.get("data", {}).get("tags", [])
    return {
        t["key"][len(SHA256_TAG_PREFIX) :]: t["value"]
        for t in tags
        if t.get("key", "").startswith(SHA256_TAG_PREFIX)
    }


async def record_sha256(api: Api, run_id: str, checksums: dict[str, str]) -> None:
    tags = [
        {"key": key, "value": sha} for path, sha in checksums.items() if (key := sha256_tag(path))
    ]
    for i in range(0, len(tags), _TAGS_PER_BATCH):
        body = {"run_id": run_id, "tags": tags[i : i + _TAGS_PER_BATCH]}
        await api.json(
            "POST", "/api/2.0/mlflow/runs/log-batch", body=body, what="recording SHA-256 tags"
        )


def artifact_url_path(root: str, artifact_path: str) -> str:
    return f"{ARTIFACTS}/{quote(root + '/' + artifact_path if artifact_path else root)}"


async def reference_sha256(api: Api, run_id: str) -> dict[str, str]:
    """{artifact path: sha256} of the run's artifact references that were registered with one."""
    try:
        body = await api.json("GET", "/api/2.0/metricgate/artifact-references", params={"run_id": run_id},
                              what="listing artifact references")  # fmt: skip
    except ClientError as exc:
        if exc.status == 404:  # references not enabled on this server (or not a metricgate server)
            return {}
        raise
    return {r["path"]: r["sha256"] for r in body.get("references", []) if r.get("sha256")}
