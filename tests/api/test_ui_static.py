"""MLflow's web UI bundle served by metricgate: index, hashed assets, compression, caching, safety.

The bundle is the real one inside the installed mlflow 3.17.2 distribution (the test extra pins it).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from metricgate.api import ui_static
from metricgate.config import Settings

pytestmark = pytest.mark.asyncio


@pytest.fixture(scope="module")
def bundle() -> Path:
    found = ui_static.find_bundle()
    assert found is not None, "the test extra installs mlflow, whose wheel carries the UI bundle"
    return found


def _main_script(index_html: str) -> str:
    match = re.search(r'src="(static-files/static/js/main\.[0-9a-f]+\.js)"', index_html)
    assert match, index_html[:500]
    return "/" + match.group(1)


async def _raw_get(
    client: TestClient[Any, Any], path: str, headers: dict[str, str]
) -> tuple[int, Any, bytes]:
    # The test client inflates gzip itself; a session without auto-decompression shows the wire.
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        async with session.get(client.make_url(path), headers=headers) as resp:
            return resp.status, resp.headers, await resp.read()


async def test_bundle_found_without_importing_mlflow(bundle: Path) -> None:
    assert (bundle / "index.html").is_file()
    assert bundle.parts[-4:] == ("mlflow", "server", "js", "build")
    # The lookup goes through the distribution's metadata; a missing distribution is None.
    import importlib.metadata

    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution("metricgate-no-such-ui-dist")


async def test_index_is_mlflows_and_revalidated(client: TestClient[Any, Any], bundle: Path) -> None:
    async with client.get("/") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        assert resp.headers["Cache-Control"] == "no-cache"
        body = await resp.text()
    assert body == (bundle / "index.html").read_text()
    assert '<div id="root"' in body


async def test_main_script_gzipped_with_long_cache(
    client: TestClient[Any, Any], bundle: Path
) -> None:
    async with client.get("/") as resp:
        script = _main_script(await resp.text())
    original = (bundle / script.removeprefix("/static-files/")).read_bytes()
    assert len(original) > 1_000_000  # the multi-MB bundle the issue is about

    status, headers, wire = await _raw_get(client, script, {"Accept-Encoding": "gzip, deflate, br"})
    assert status == 200
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Cache-Control"] == f"public, max-age={ui_static.ASSET_MAX_AGE_S}"
    assert headers["Content-Type"].startswith(("application/javascript", "text/javascript"))
    assert headers["Vary"] == "Accept-Encoding"
    assert len(wire) < len(original) / 2
    assert gzip.decompress(wire) == original

    # A browser revalidating with the ETag gets 304 and no body.
    status, _, body = await _raw_get(
        client, script, {"Accept-Encoding": "gzip", "If-None-Match": headers["ETag"]}
    )
    assert (status, body) == (304, b"")


async def test_asset_plain_when_not_accepted_and_ranges_work(
    client: TestClient[Any, Any], bundle: Path
) -> None:
    async with client.get("/") as resp:
        script = _main_script(await resp.text())
    original = (bundle / script.removeprefix("/static-files/")).read_bytes()
    status, headers, wire = await _raw_get(client, script, {"Accept-Encoding": "identity"})
    assert status == 200 and "Content-Encoding" not in headers and wire == original
    status, headers, wire = await _raw_get(
        client, script, {"Accept-Encoding": "identity", "Range": "bytes=10-19"}
    )
    assert status == 206 and wire == original[10:20]


async def test_binary_assets_not_recompressed(client: TestClient[Any, Any], bundle: Path) -> None:
    status, headers, wire = await _raw_get(
        client, "/static-files/favicon.ico", {"Accept-Encoding": "gzip"}
    )
    assert status == 200
    assert headers["Cache-Control"].startswith("public, max-age=")
    original = (bundle / "favicon.ico").read_bytes()
    body = gzip.decompress(wire) if headers.get("Content-Encoding") == "gzip" else wire
    assert body == original
    pngs = sorted((bundle / "static" / "media").glob("*.png")) + sorted(
        (bundle / "static" / "media").glob("*.svg")
    )
    if pngs:
        rel = pngs[0].relative_to(bundle).as_posix()
        status, headers, wire = await _raw_get(
            client, f"/static-files/{rel}", {"Accept-Encoding": "gzip"}
        )
        assert status == 200
        if pngs[0].suffix == ".png":
            assert "Content-Encoding" not in headers and wire == pngs[0].read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/static-files/no-such-file.js",
        "/static-files/static/",
        "/static-files/../../__init__.py",
        "/static-files/%2e%2e/%2e%2e/__init__.py",
        "/static-files/static/..%2f..%2f..%2f__init__.py",
        "/static-files/%00",
    ],
)
async def test_missing_or_outside_files_are_404(client: TestClient[Any, Any], path: str) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(client.make_url(path)) as resp:
            assert resp.status == 404, (path, await resp.text())
            assert "__future__" not in await resp.text()


async def test_head_answers_without_body(client: TestClient[Any, Any]) -> None:
    async with client.head("/") as resp:
        assert resp.status == 200
        assert await resp.read() == b""


async def test_without_the_extra_the_root_says_how_to_enable_it(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As on an install without metricgate[ui]: the lookup finds no bundle.
    monkeypatch.setattr(ui_static, "find_bundle", lambda: None)
    from metricgate.api.app import create_app

    async with TestClient(TestServer(create_app(settings))) as client:
        async with client.get("/") as resp:
            assert resp.status == 200
            text = await resp.text()
        assert "pip install 'metricgate[ui]'" in text
        async with client.get("/static-files/static/js/main.js") as resp:
            assert resp.status == 404
        # The API is unaffected.
        async with client.get(
            "/api/2.0/mlflow/experiments/search", params={"max_results": "1"}
        ) as resp:
            assert resp.status == 200
