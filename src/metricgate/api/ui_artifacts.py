"""The web UI's artifact reads: file downloads of runs, model versions and logged models, and
the logged-model file tree.

Stock MLflow serves these outside the proxied artifact API (``/get-artifact``,
``/model-versions/get-artifact``, ``logged-models/<id>/artifacts/files|directories``). Here each
one only resolves *where* the owner's artifacts live (a run's ``artifact_uri``, a version's
resolved storage location, a logged model's ``artifact_location``) to a path in our artifact
store; the bytes then go through the same reader as ``/mlflow-artifacts`` downloads
(``artifacts.send_artifact``: the visibility-filtered store, streamed, Range-capable), so
staged uploads stay invisible and paths are confined by domain/artifacts/paths.py.
"""

from __future__ import annotations

import mimetypes
import posixpath
from typing import Any

from aiohttp import web

from metricgate.api.artifacts import file_info, send_artifact
from metricgate.api.codec import Fields, json_response
from metricgate.api.keys import SERVICE, SETTINGS
from metricgate.api.routing import Route
from metricgate.domain.artifacts.paths import (
    join_artifact_path,
    normalize_artifact_path,
    proxied_store_path,
)
from metricgate.domain.auth.access import On, Target, Where
from metricgate.domain.auth.permissions import Permission
from metricgate.domain.errors import BadRequest, InvalidParameter, NotFound

# MLflow's get_text_extensions() (mlflow/utils/mime_type_utils.py): files the UI renders as text,
# sent as plain text whatever the platform's MIME table says (.js, .py, .ipynb, .yaml vary).
# Case-sensitive, and a name without an extension is its own "extension" (MLmodel; stock spells
# the project file "mlproject" here, so "MLproject" itself falls through to the MIME table).
TEXT_EXTENSIONS = frozenset(
    "txt log err cfg conf cnf cf ini properties prop hocon toml yaml yml xml json js py py3 csv tsv md rst ipynb"
    " MLmodel mlproject".split()
)


def ui_content_type(path: str) -> str:
    """The Content-Type stock MLflow gives an artifact (its ``_guess_mime_type``)."""
    name = posixpath.basename(path)
    extension = posixpath.splitext(name)[1].replace(".", "") or name
    if extension in TEXT_EXTENSIONS:
        return "text/plain"
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


def store_root_of(artifact_uri: str, artifact_root_uri: str) -> str | None:
    """The store path of an owner's artifact location, or None when this server does not hold it.

    Proxied URIs (``mlflow-artifacts:/...``, ``http(s)://.../mlflow-artifacts/artifacts/...``)
    map as in the proxied API. A location spelled with the artifact root itself (an experiment
    created with ``artifact_location=s3://bucket/prefix/x``, a version whose source is such a
    URI) maps to the path under the root. Anything else (another bucket, another disk) is not
    ours to read: the server holds no credentials for it and must not become a file reader
    for arbitrary URIs.
    """
    proxied = proxied_store_path(artifact_uri)
    if proxied is not None:
        return proxied
    root = artifact_root_uri.rstrip("/")
    if not root or not (artifact_uri == root or artifact_uri.startswith(root + "/")):
        return None
    try:
        return normalize_artifact_path(artifact_uri[len(root) :].lstrip("/"), allow_root=True)
    except InvalidParameter:
        return None  # a URI we did not write; nothing we could serve safely


def _located(request: web.Request, artifact_uri: str, relative: str) -> str:
    """The store path of ``relative`` (already normalised) under ``artifact_uri``."""
    base = store_root_of(artifact_uri, request.app[SETTINGS].artifacts.uri)
    if base is None:
        raise NotFound(f"Artifacts at '{artifact_uri}' are not stored on this server")
    return join_artifact_path(base, relative)


def _required_path(fields: Fields, name: str) -> str:
    raw = fields.str(name)
    if not raw:
        # Stock answers its own non-JSON 400 (werkzeug's BadRequest) here; ours keeps the shape.
        raise BadRequest(f'Request must include the "{name}" query parameter.')
    return normalize_artifact_path(raw)  # '..', absolute, encoded traversal: 400


async def _send(request: web.Request, artifact_uri: str, relative: str) -> web.StreamResponse:
    path = _located(request, artifact_uri, relative)
    return await send_artifact(request, path, ui_content_type(relative))


async def run_artifact(request: web.Request) -> web.StreamResponse:
    """``GET /get-artifact?run_uuid=&path=``: what the run page's artifact viewer loads."""
    fields = Fields(request.query, query=True)
    relative = _required_path(fields, "path")
    run_id = fields.str("run_id") or fields.str("run_uuid")
    if not run_id:
        raise NotFound("Run with id=None not found")  # stock's answer to a missing id
    artifact_uri = await request.app[SERVICE].runs.artifact_uri(
        run_id
    )  # NotFound -> 404 like stock
    return await _send(request, artifact_uri, relative)


async def model_version_artifact(request: web.Request) -> web.StreamResponse:
    """``GET /model-versions/get-artifact?name=&version=&path=`` (the version page reads MLmodel).

    The version's storage location was resolved when it was registered (runs:/ and models:/
    sources become the run's or logged model's artifact location; see stores/postgres/registry/versions.py),
    the same URI get-download-uri hands to the client.
    """
    fields = Fields(request.query, query=True)
    relative = _required_path(fields, "path")
    version = await request.app[SERVICE].registry.get_model_version(
        fields.str("name"), fields.str("version")
    )
    return await _send(request, version.storage_location, relative)


async def logged_model_artifact(request: web.Request) -> web.StreamResponse:
    """``GET logged-models/<id>/artifacts/files?artifact_file_path=``."""
    fields = Fields(request.query, query=True)
    relative = _required_path(fields, "artifact_file_path")
    model = await request.app[SERVICE].logged_models.get(request.match_info["model_id"], False)
    return await _send(request, model.artifact_uri, relative)


async def logged_model_directory(request: web.Request) -> web.Response:
    """``GET logged-models/<id>/artifacts/directories?artifact_directory_path=``: one level of
    the model's file tree, paths relative to the model's root (like the run listing)."""
    fields = Fields(request.query, query=True)
    relative = normalize_artifact_path(fields.str("artifact_directory_path") or "", allow_root=True)
    service = request.app[SERVICE]
    model = await service.logged_models.get(request.match_info["model_id"], False)
    base = store_root_of(model.artifact_uri, request.app[SETTINGS].artifacts.uri)
    body: dict[str, Any] = {"root_uri": model.artifact_uri}
    if base is not None:
        entries = await service.artifacts.list(join_artifact_path(base, relative))
        if entries:  # stock omits an empty repeated field: a file or a missing dir is just root_uri
            body["files"] = [file_info(join_artifact_path(relative, e.path), e) for e in entries]
    return json_response(body)


# Registered at the server root, as stock does (the UI builds these URLs without a prefix).
_RUN_READ = On(Target.RUN_ID, "run_id", Permission.READ, where=Where.QUERY, fallback="run_uuid")
_MODEL_READ = On(Target.LOGGED_MODEL_ID, "model_id", Permission.READ, where=Where.PATH)
ROOT_ROUTES: list[Route] = [
    Route("GET", "/get-artifact", run_artifact, _RUN_READ),
    Route(
        "GET",
        "/model-versions/get-artifact",
        model_version_artifact,
        On(Target.MODEL_NAME, "name", Permission.READ, where=Where.QUERY),
    ),
    # Stock does not route this spelling, but the bundle's evaluation view fetches
    # "ajax-api/2.0/mlflow/get-artifact"; answering it costs nothing and spares that view a 404.
    Route("GET", "/ajax-api/2.0/mlflow/get-artifact", run_artifact, _RUN_READ),
]

# Under /api/2.0/mlflow and /ajax-api/2.0/mlflow. Stock routes ``files`` under /ajax-api only;
# serving it under both prefixes keeps one route table and exposes nothing new.
MLFLOW_ROUTES: list[Route] = [
    Route("GET", "/logged-models/{model_id}/artifacts/files", logged_model_artifact, _MODEL_READ),
    Route(
        "GET",
        "/logged-models/{model_id}/artifacts/directories",
        logged_model_directory,
        _MODEL_READ,
    ),
]
