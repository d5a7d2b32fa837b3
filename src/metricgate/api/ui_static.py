"""MLflow's own web UI, served from the bundle inside the installed ``mlflow`` distribution.

The bundle (``mlflow/server/js/build/``) ships in the ``mlflow`` wheel; metricgate finds it through
the distribution's file list, never by importing mlflow (that import takes seconds and pulls in
most of the ML stack). ``pip install 'metricgate[ui]'`` installs it. Without it, ``GET /`` answers
a short page that says how to enable the UI, and the API works as before.

Caching: the bundle's assets have content hashes in their names, so they get stock MLflow's long
``max-age``; ``index.html`` names the current hashes and must be revalidated every time (an
upgrade of mlflow then reaches browsers at once).

Compression: the main script is several MB. Each compressible file is gzipped once, on first
request, in a worker thread, and kept: the set of files is fixed and their compressed total is a
few MB, so the cache is bounded by the bundle itself.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import importlib.metadata
import logging
import mimetypes
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

log = logging.getLogger(__name__)

BUNDLE_IN_DISTRIBUTION = "mlflow/server/js/build"
# Stock MLflow's max_age for /static-files (28 days).
ASSET_MAX_AGE_S = 2_419_200
# Worth gzipping: text formats. Images, fonts (woff2) and the like are compressed already.
_COMPRESSIBLE = {".js", ".css", ".json", ".html", ".svg", ".map", ".txt", ".ico", ".mjs"}
_MIN_COMPRESS_BYTES = 1024

ENABLE_HINT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>metricgate</title>
<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:3rem auto;line-height:1.5}
code,pre{background:#f3f3f3;padding:.1rem .3rem}</style></head>
<body><h1>metricgate</h1>
<p>The tracking API is up (<code>/api/2.0/mlflow/...</code>), but MLflow's web UI is not installed
in this environment.</p>
<p>Install it next to metricgate and restart the server:</p>
<pre>pip install 'metricgate[ui]'</pre>
<p>(<code>scripts/up.sh</code> and the Docker image install it already.)</p>
<p>Live ingest status: <a href="/metricgate/ingest">/metricgate/ingest</a></p>
</body></html>
"""


def find_bundle() -> Path | None:
    """The directory of MLflow's built UI in the installed ``mlflow`` distribution, or None.

    ``mlflow-skinny`` (a distribution without the UI) does not count; neither does a checkout of
    mlflow whose JavaScript was never built (no ``index.html``).
    """
    try:
        dist = importlib.metadata.distribution("mlflow")
    except importlib.metadata.PackageNotFoundError:
        return None
    bundle = Path(str(dist.locate_file(BUNDLE_IN_DISTRIBUTION)))
    return bundle if (bundle / "index.html").is_file() else None


@dataclass(frozen=True)
class _Compressed:
    body: bytes
    etag: str


@dataclass
class UiBundle:
    root: Path
    _gzipped: dict[Path, _Compressed] = field(default_factory=dict)
    _locks: dict[Path, asyncio.Lock] = field(default_factory=dict)

    def resolve(self, relative: str) -> Path | None:
        """The file a request names, or None when it is missing or outside the bundle."""
        if not relative or "\x00" in relative:
            return None
        path = (self.root / relative).resolve()
        if not path.is_relative_to(self.root.resolve()) or not path.is_file():
            return None
        return path

    async def gzipped(self, path: Path) -> _Compressed:
        cached = self._gzipped.get(path)
        if cached is not None:
            return cached
        # One compression per file even when many browsers ask for it at once.
        lock = self._locks.setdefault(path, asyncio.Lock())
        async with lock:
            cached = self._gzipped.get(path)
            if cached is None:
                cached = await asyncio.to_thread(_compress, path)
                self._gzipped[path] = cached
        return cached


def _compress(path: Path) -> _Compressed:
    raw = path.read_bytes()
    body = gzip.compress(raw, compresslevel=6, mtime=0)
    return _Compressed(body, '"gz-' + hashlib.sha256(raw).hexdigest()[:32] + '"')


def _content_type(path: Path) -> str:
    kind, _ = mimetypes.guess_type(path.name)
    kind = kind or "application/octet-stream"
    if kind.startswith("text/") or kind in ("application/javascript", "application/json"):
        return kind + "; charset=utf-8"
    return kind


def _accepts_gzip(request: web.Request) -> bool:
    return "gzip" in request.headers.get("Accept-Encoding", "").lower()


async def _send_file(
    request: web.Request, bundle: UiBundle, path: Path, cache_control: str
) -> web.StreamResponse:
    headers = {"Cache-Control": cache_control, "X-Content-Type-Options": "nosniff"}
    size = path.stat().st_size
    if (
        path.suffix.lower() in _COMPRESSIBLE
        and size >= _MIN_COMPRESS_BYTES
        and _accepts_gzip(request)
    ):
        compressed = await bundle.gzipped(path)
        headers |= {"Vary": "Accept-Encoding", "ETag": compressed.etag}
        if compressed.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        headers |= {"Content-Encoding": "gzip", "Content-Type": _content_type(path)}
        return web.Response(body=compressed.body, headers=headers)
    # Uncompressed: aiohttp streams the file and answers Range and conditional requests itself.
    headers["Content-Type"] = _content_type(path)
    if path.suffix.lower() in _COMPRESSIBLE:
        headers["Vary"] = "Accept-Encoding"
    return web.FileResponse(path, headers=headers)


BUNDLE = web.AppKey("ui_bundle", UiBundle)


def _bundle(request: web.Request) -> UiBundle | None:
    return request.app.get(BUNDLE)


async def index(request: web.Request) -> web.StreamResponse:
    bundle = _bundle(request)
    if bundle is None:
        return web.Response(
            text=ENABLE_HINT_HTML, content_type="text/html", headers={"Cache-Control": "no-cache"}
        )
    return await _send_file(request, bundle, bundle.root / "index.html", "no-cache")


async def static_file(request: web.Request) -> web.StreamResponse:
    bundle = _bundle(request)
    path = bundle.resolve(request.match_info["path"]) if bundle is not None else None
    if bundle is None or path is None:
        # Plain 404 (not MLflow's JSON error): browsers ask for these, not API clients.
        return web.Response(status=404, text="not found", headers={"Cache-Control": "no-cache"})
    return await _send_file(request, bundle, path, f"public, max-age={ASSET_MAX_AGE_S}")


def install(app: web.Application) -> None:
    """Looks for the bundle once, at application build time, and adds the UI routes."""
    root = find_bundle()
    if root is None:
        log.info(
            "MLflow's web UI is not installed (pip install 'metricgate[ui]'); GET / explains how"
        )
    else:
        app[BUNDLE] = UiBundle(root)
    # add_get also answers HEAD.
    app.router.add_get("/", index)
    app.router.add_get("/static-files/{path:.+}", static_file)
