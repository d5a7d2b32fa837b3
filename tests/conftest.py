"""Shared fixtures: private PostgreSQL and Redis (real servers, never mocks), app clients, a live server.

PostgreSQL and Redis are started once per session on free ports in temp dirs (see
``metricgate.devservices``) unless ``METRICGATE_TEST_DATABASE_URL`` / ``METRICGATE_TEST_REDIS_URL``
name existing servers. Each test gets its own database, cloned from a migrated template; a live
server (a ``metricgate serve`` subprocess) and its database are shared by the tests of a module.

Tiers: every test carries the marker of its directory (``unit``, ``integration``, ``api``, ``e2e``,
``webhooks``, ``process``, ``fault``, ``browser``), so ``-m "not fault and not browser"`` selects
by tier. ``unit`` tests do no I/O: they may not request a database, Redis, S3 or server fixture.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient, TestServer

import s3_services  # tests/ is on sys.path (rootdir conftest import mode)
from metricgate.config import Settings
from s3_services import S3Endpoint
from scripts import devservices

LIVE_SERVER_START_TIMEOUT_S = 20.0

TIERS = {
    "unit": "pure functions and small objects: no I/O, runs in seconds",
    "integration": "stores and workers against real PostgreSQL / Redis / S3",
    "api": "the HTTP API in-process (aiohttp test client) over real PostgreSQL and Redis",
    "e2e": "the real mlflow client against a live `metricgate serve` subprocess",
    "webhooks": "webhook dispatch to loopback receivers",
    "process": "whole processes: serve, scale-out, bench, devservices",
    "fault": "fault injection with real processes (kill -9, outages)",
    "browser": "the UI in headless Chromium",
}
OTHER_MARKERS = {
    "fresh_server": "the test needs a live server with an empty database of its own",
}
# Fixtures that reach a database, Redis, S3 or a server: never in the unit tier.
IO_FIXTURES = frozenset(
    {
        "pg_server_url",
        "db_url",
        "module_db_url",
        "redis_url",
        "client",
        "live_server",
        "live_server_s3",
        "s3_moto",
        "s3_seaweed",
    }
)


def pytest_configure(config: pytest.Config) -> None:
    for name, doc in {**TIERS, **OTHER_MARKERS}.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        try:
            tier = item.path.relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        if tier not in TIERS:
            continue
        item.add_marker(tier)
        if tier == "unit":
            reached = IO_FIXTURES.intersection(getattr(item, "fixturenames", ()))
            if reached:
                raise pytest.UsageError(
                    f"{item.nodeid}: unit tests do no I/O, but it uses {reached}"
                )


def _loop_factories_hook_exists() -> bool:
    try:
        from pytest_asyncio.plugin import PytestAsyncioSpecs
    except ImportError:
        return False
    return hasattr(PytestAsyncioSpecs, "pytest_asyncio_loop_factories")


if _loop_factories_hook_exists():
    import uvloop

    _LOOP_FACTORY_FIXTURE = "_asyncio_loop_factory"  # pytest-asyncio's own (private) fixture

    def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
        # Production runs on uvloop (cli.py), so the tests do too.
        return {"uvloop": uvloop.new_event_loop}

    @pytest.hookimpl(trylast=True)
    def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
        # pytest-asyncio (<= 1.5, issue #1501) parametrizes the loop factory for async tests only;
        # a sync test that uses an async fixture (live_server -> db_url) then flips the session
        # runner's cache key, which tears down and rebuilds every session fixture. Give sync tests
        # the same parameter (same object, so the same cache key).
        if _LOOP_FACTORY_FIXTURE in metafunc.fixturenames:
            return
        if inspect.iscoroutinefunction(metafunc.function) or inspect.isasyncgenfunction(
            metafunc.function
        ):
            return
        metafunc.fixturenames.append(_LOOP_FACTORY_FIXTURE)
        hidden = getattr(pytest, "HIDDEN_PARAM", None)
        metafunc.parametrize(
            _LOOP_FACTORY_FIXTURE,
            [uvloop.new_event_loop],
            ids=[hidden] if hidden is not None else ["uvloop"],
            indirect=True,
            scope="session",
        )


def _with_database(url: str, database: str) -> str:
    """``url`` with its path replaced by ``/database`` (query string kept)."""
    head, _, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


def _unique_name(prefix: str) -> str:
    # Unique across concurrent runs that share one server through METRICGATE_TEST_DATABASE_URL.
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------- PostgreSQL


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """Admin URL (superuser, database ``postgres``) of a private PostgreSQL, or $METRICGATE_TEST_DATABASE_URL."""
    env_url = os.environ.get("METRICGATE_TEST_DATABASE_URL")
    if env_url:
        yield env_url
        return
    try:
        with devservices.temporary_postgres() as instance:
            yield instance.url()
    except devservices.ServiceNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
async def migrated_template(pg_server_url: str) -> AsyncIterator[str]:
    """Name of a database with every migration applied; ``db_url`` clones it per test."""
    from metricgate.stores.postgres.migrate import migrate_url

    name = _unique_name("mg_template")
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        await migrate_url(_with_database(pg_server_url, name))
        yield name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@contextlib.asynccontextmanager
async def fresh_database(pg_server_url: str, template: str) -> AsyncIterator[str]:
    """URL of a new database cloned from ``template`` (CREATE DATABASE ... TEMPLATE); dropped after."""
    name = _unique_name("mg_test")
    admin = await asyncpg.connect(pg_server_url)
    try:
        # FILE_COPY (PostgreSQL 15+) clones a small database ~4x faster than the default WAL_LOG.
        strategy = " STRATEGY FILE_COPY" if admin.get_server_version().major >= 15 else ""
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
    finally:
        await admin.close()
    yield _with_database(pg_server_url, name)
    admin = await asyncpg.connect(pg_server_url)
    try:
        # FORCE: a server under test may still hold pooled connections.
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db_url(pg_server_url: str, migrated_template: str) -> AsyncIterator[str]:
    """URL of a fresh, migrated database for this test only; dropped after."""
    async with fresh_database(pg_server_url, migrated_template) as url:
        yield url


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to this test's ``db_url``."""
    connection = await asyncpg.connect(db_url)
    try:
        yield connection
    finally:
        await connection.close()


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a private redis-server (no persistence), or $METRICGATE_TEST_REDIS_URL."""
    env_url = os.environ.get("METRICGATE_TEST_REDIS_URL")
    if env_url:
        yield env_url
        return
    try:
        with devservices.temporary_redis() as instance:
            yield instance.url
    except devservices.ServiceNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


async def flush_redis(redis_url: str) -> None:
    """Empty the Redis database of ``redis_url`` (FLUSHDB): no stream entries of earlier tests."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


@pytest.fixture
async def redis_client_url(redis_url: str) -> str:
    """``redis_url`` with its database emptied (FLUSHDB) before the test."""
    await flush_redis(redis_url)
    return redis_url


# ---------------------------------------------------------------- the application


@pytest.fixture
def settings(db_url: str, redis_client_url: str, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {},
        database_url=db_url,
        redis_url=redis_client_url,
        artifacts_uri="file://" + str(tmp_path / "artifacts"),
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    """aiohttp test client over ``create_app(settings)``; the app opens and closes its own resources."""
    from metricgate.api.app import create_app

    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


@pytest.fixture(scope="module")
async def module_client(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[TestClient[Any, Any]]:
    """``client``, but one app (and database) for the whole module: for modules whose cases
    each make and check only their own experiments and runs. A module opts in with
    ``client = pytest.fixture(...)`` over it (see tests/api/test_int64_bounds.py)."""
    from metricgate.api.app import create_app

    settings = Settings.from_env(
        {},
        database_url=module_db_url,
        redis_url=module_redis_url,
        artifacts_uri="file://" + str(tmp_path_factory.mktemp("module-app") / "artifacts"),
    )
    async with TestClient(TestServer(create_app(settings))) as test_client:
        yield test_client


def _http_status(url: str, timeout_s: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def _stop_process(proc: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _server_env(db_url: str, redis_url: str, artifacts_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICGATE_")}
    env.update(
        METRICGATE_DATABASE_URL=db_url,
        METRICGATE_REDIS_URL=redis_url,
        METRICGATE_ARTIFACTS_URI="file://" + str(artifacts_dir),
        METRICGATE_SHUTDOWN_TIMEOUT_S="5",
    )
    return env


@contextlib.contextmanager
def _serve(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """Run ``python -m metricgate serve`` with ``env`` until the block ends; yields its base URL."""
    port = devservices.find_free_port()
    cmd = [sys.executable, "-m", "metricgate", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + LIVE_SERVER_START_TIMEOUT_S
        while _http_status(base_url + "/health") != 200:
            if proc.poll() is not None or time.monotonic() > deadline:
                what = (
                    f"exited with code {proc.returncode}"
                    if proc.poll() is not None
                    else "did not answer"
                )
                output = log_path.read_text(errors="replace")[-4000:]
                pytest.fail(f"`{' '.join(cmd)}` {what} (GET /health):\n{output}", pytrace=False)
            time.sleep(0.05)
        yield base_url
    finally:
        _stop_process(proc)


@dataclass(frozen=True)
class LiveServer:
    url: str  # http://127.0.0.1:PORT
    artifacts: Path  # the root of its local artifact store


@pytest.fixture(scope="module")
async def module_db_url(pg_server_url: str, migrated_template: str) -> AsyncIterator[str]:
    """Like ``db_url``, but one database for the whole test module (the module live server's)."""
    async with fresh_database(pg_server_url, migrated_template) as url:
        yield url


@pytest.fixture(scope="module")
async def module_redis_url(redis_url: str) -> str:
    """``redis_url`` emptied once, before the module's first test (its live server's Redis)."""
    await flush_redis(redis_url)
    return redis_url


@pytest.fixture(scope="module")
def module_live_server(
    module_db_url: str, module_redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """One ``metricgate serve`` subprocess (and database) shared by every test of a module."""
    home = tmp_path_factory.mktemp("live-server")
    env = _server_env(module_db_url, module_redis_url, home / "artifacts")
    with _serve(env, home / "live-server.log") as base_url:
        yield LiveServer(base_url, home / "artifacts")


@pytest.fixture
def fresh_live_server(db_url: str, redis_client_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    """A ``metricgate serve`` subprocess with an empty database for this test only."""
    env = _server_env(db_url, redis_client_url, tmp_path / "artifacts")
    with _serve(env, tmp_path / "live-server.log") as base_url:
        yield LiveServer(base_url, tmp_path / "artifacts")


@pytest.fixture
def live_server_handle(request: pytest.FixtureRequest) -> LiveServer:
    """The module's shared live server, or a fresh one for a test marked ``fresh_server``.

    Starting a server and cloning its database costs about a second; most tests only need their
    own names (``unique_name``), not an empty database.
    """
    fresh = request.node.get_closest_marker("fresh_server") is not None
    server = request.getfixturevalue("fresh_live_server" if fresh else "module_live_server")
    assert isinstance(server, LiveServer)
    return server


@pytest.fixture
def live_server(live_server_handle: LiveServer) -> str:
    """Base URL ``http://127.0.0.1:PORT`` of a real ``python -m metricgate serve`` subprocess.

    Shared by the tests of a module (its database too) unless the test is marked ``fresh_server``.
    """
    return live_server_handle.url


@pytest.fixture
def live_server_artifacts(live_server_handle: LiveServer) -> Path:
    """The local artifact root of ``live_server`` (tests that corrupt or plant stored files)."""
    return live_server_handle.artifacts


@contextlib.contextmanager
def _mlflow_pointed_at(server_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server_url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.setenv("DO_NOT_TRACK", "true")
    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(name, raising=False)

    import mlflow
    from mlflow.tracking import fluent

    mlflow.set_tracking_uri(server_url)
    try:
        yield server_url
    finally:
        while mlflow.active_run() is not None:
            with contextlib.suppress(Exception):  # end_run pops the run even when the server fails
                mlflow.end_run()
        # set_experiment / set_tracking_uri write module globals and os.environ directly;
        # the next test talks to another server with another database.
        fluent._active_experiment_id = None
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]


@pytest.fixture
def mlflow_tracking(live_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Points the mlflow client at ``live_server`` (no retries, no telemetry); yields the URL."""
    with _mlflow_pointed_at(live_server, monkeypatch) as url:
        yield url


# ---------------------------------------------------------------- S3 (see tests/s3_services.py)


@pytest.fixture(scope="session")
def s3_moto() -> Iterator[S3Endpoint]:
    """moto's S3 (in-process, fast, checks neither checksums nor credentials) with a bucket.

    METRICGATE_TEST_S3_URL (+ METRICGATE_TEST_S3_BUCKET and AWS_* credentials) names an existing
    endpoint instead. Tests share the bucket: use a key prefix of your own.
    """
    endpoint = s3_services.endpoint_from_env()
    if endpoint is not None:
        s3_services.ensure_bucket(endpoint)
        yield endpoint
        return
    with s3_services.moto_server() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def s3_seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """A private SeaweedFS (real S3: verifies checksums and credentials) with a bucket.

    Same METRICGATE_TEST_S3_URL override as ``s3_moto``. Tests share the bucket: use a key prefix.
    """
    endpoint = s3_services.endpoint_from_env()
    if endpoint is not None:
        s3_services.ensure_bucket(endpoint)
        yield endpoint
        return
    try:
        server = s3_services.start_seaweed(tmp_path_factory.mktemp("seaweed"))
    except FileNotFoundError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server.endpoint
    finally:
        server.stop()


@dataclass(frozen=True)
class S3LiveServer:
    url: str
    endpoint: S3Endpoint
    prefix: str  # the server's artifact root is s3://<bucket>/<prefix>


@pytest.fixture
def live_server_s3(
    db_url: str, redis_client_url: str, s3_seaweed: S3Endpoint, tmp_path: Path
) -> Iterator[S3LiveServer]:
    """Like ``live_server`` but with its artifact root on SeaweedFS (a fresh prefix per test).

    Credentials reach the server the way they would in production: AWS_* environment variables.
    """
    prefix = f"live/{uuid.uuid4().hex}"
    env = _server_env(db_url, redis_client_url, tmp_path / "artifacts")
    env = {k: v for k, v in env.items() if not k.startswith("AWS_")}
    env.update(s3_seaweed.env(), METRICGATE_ARTIFACTS_URI=f"s3://{s3_seaweed.bucket}/{prefix}")
    with _serve(env, tmp_path / "live-server-s3.log") as base_url:
        yield S3LiveServer(base_url, s3_seaweed, prefix)


@pytest.fixture
def mlflow_tracking_s3(
    live_server_s3: S3LiveServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[S3LiveServer]:
    """``mlflow_tracking`` for ``live_server_s3``."""
    with _mlflow_pointed_at(live_server_s3.url, monkeypatch):
        yield live_server_s3
