"""Fixtures for the fault tests: their own PostgreSQL and Redis, never the shared session servers.

The faults kill and restart services, so these tests never touch ``pg_server_url``/``redis_url``:
- ``fault_pg_admin``: a private (non-durable, fast) PostgreSQL cluster for this directory's tests
  that nothing ever stops mid-test; each test gets a fresh database cloned from a migrated template.
  The PostgreSQL-outage test starts its own durable cluster instead (see test_faults.py).
- ``fault_redis``: a private redis-server per test with AOF and ``appendfsync always``, in the
  test's own directory, restartable on the same port.
- ``cluster``: the metricgate processes of one test (every one is killed at teardown).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import harness  # tests/fault is on sys.path (rootdir conftest import mode)
import pytest

from scripts import devservices


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fault: fault-injection tests with real processes (kill -9, outages)"
    )


@pytest.fixture(scope="session")
def fault_pg_admin() -> Iterator[str]:
    try:
        with devservices.temporary_postgres() as instance:
            yield instance.url()
    except devservices.ServiceNotFound as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
async def fault_template(fault_pg_admin: str) -> str:
    name = f"mg_fault_tpl_{uuid.uuid4().hex[:8]}"
    await harness.create_migrated_database(fault_pg_admin, name)
    return name


@pytest.fixture
async def fault_db_url(fault_pg_admin: str, fault_template: str) -> AsyncIterator[str]:
    name = f"mg_fault_{uuid.uuid4().hex[:12]}"
    url = await harness.create_migrated_database(fault_pg_admin, name, template=fault_template)
    yield url
    admin = await asyncpg.connect(fault_pg_admin)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
def fault_redis() -> Iterator[harness.RedisServer]:
    directory = Path(tempfile.mkdtemp(prefix="metricgate-fault-redis-"))
    server = harness.start_redis_always(directory)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def cluster(
    fault_db_url: str, fault_redis: harness.RedisServer, tmp_path: Path
) -> Iterator[harness.Cluster]:
    c = harness.Cluster(fault_db_url, fault_redis.url, tmp_path, **harness.FAST_INGEST_ENV)
    try:
        yield c
    finally:
        c.close()
