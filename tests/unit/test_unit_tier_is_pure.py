"""The unit tier stays pure: no processes, sockets, databases, Redis, S3 or HTTP servers.

tests/conftest.py already refuses a unit test that asks for a server or database fixture; this
catches the other way in, a module that reaches for I/O by itself. Such a test belongs in
tests/integration, tests/api or tests/process, which is what keeps `scripts/test.sh tests/unit`
a seconds-long run that needs nothing installed but the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

UNIT = Path(__file__).resolve().parent

FORBIDDEN = (
    "aioboto3",
    # aiohttp's mocked request is pure; its servers and clients listen on sockets.
    "aiohttp.test_utils.RawTestServer",
    "aiohttp.test_utils.TestClient",
    "aiohttp.test_utils.TestServer",
    "aiohttp.test_utils.unused_port",
    "asyncpg",
    "boto3",
    "http.client",
    "multiprocessing",
    "redis",
    "requests",
    "scripts.devservices",
    "socket",
    "subprocess",
    "urllib.request",
)


def io_imports(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        hits = [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
        found += hits[:1]
    return found


def test_unit_modules_import_no_io() -> None:
    offenders = {
        path.name: found
        for path in sorted(UNIT.glob("*.py"))
        if path.name != Path(__file__).name
        and (found := io_imports(path.read_text(encoding="utf-8")))
    }
    assert not offenders, f"move these tests out of tests/unit: {offenders}"


def test_the_scan_sees_io_imports() -> None:
    code = (
        "import subprocess\nfrom aiohttp.test_utils import TestServer\nimport json\n"
        "from redis import asyncio\nfrom aiohttp.test_utils import make_mocked_request\n"
    )
    assert io_imports(code) == ["subprocess", "aiohttp.test_utils.TestServer", "redis"]
