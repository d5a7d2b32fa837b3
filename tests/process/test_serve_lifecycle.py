"""The server as a process: migrate, refuse an outdated schema, readiness, graceful SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from scripts import devservices

START_TIMEOUT_S = 20.0


EnvFor = Callable[[str], dict[str, str]]


@pytest.fixture
def env_for(redis_client_url: str, tmp_path: Path) -> EnvFor:
    """Environment for a server or CLI run against ``db_url``, using the suite's private Redis
    (never one on the default port) and an artifact root in this test's tmp dir."""

    def build(db_url: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METRICGATE_")}
        env.update(
            METRICGATE_REDIS_URL=redis_client_url,
            METRICGATE_DATABASE_URL=db_url,
            METRICGATE_ARTIFACTS_URI=(tmp_path / "artifacts").as_uri(),
            METRICGATE_SHUTDOWN_TIMEOUT_S="10",
            METRICGATE_DB_ACQUIRE_TIMEOUT_S="2",
            METRICGATE_DB_COMMAND_TIMEOUT_S="2",
        )
        return env

    return build


def _metricgate(
    *args: str, env: dict[str, str], timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "metricgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Server:
    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.port = devservices.find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        cmd = [sys.executable, "-m", "metricgate", "serve", "--port", str(self.port), *args]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited {self.proc.returncode}:\n{self.log()}")
            try:
                if _get(self.url + "/health")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        pytest.fail(f"server did not answer /health:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def blank_db_url(pg_server_url: str) -> Iterator[str]:
    """An empty database with no schema at all."""
    name = f"mg_blank_{os.getpid()}_{time.monotonic_ns()}"
    admin = await asyncpg.connect(pg_server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield pg_server_url.rsplit("/", 1)[0] + "/" + name
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def test_migrate_applies_once_then_reports_up_to_date(
    blank_db_url: str, tmp_path: Path, env_for: EnvFor
) -> None:
    env = env_for(blank_db_url)
    first = _metricgate("migrate", env=env)
    assert first.returncode == 0, first.stderr
    assert "applied 0001_core" in first.stdout
    second = _metricgate("migrate", env=env)
    assert second.returncode == 0, second.stderr
    assert "up to date" in second.stdout


def test_serve_refuses_an_unmigrated_database(
    blank_db_url: str, tmp_path: Path, env_for: EnvFor
) -> None:
    server = Server(env_for(blank_db_url), tmp_path / "server.log")
    try:
        code = server.proc.wait(timeout=START_TIMEOUT_S)
    finally:
        server.stop()
    assert code != 0
    assert "metricgate migrate" in server.log()


def test_serve_with_migrate_flag_creates_schema_and_default_experiment(
    blank_db_url: str, tmp_path: Path, env_for: EnvFor
) -> None:
    server = Server(env_for(blank_db_url), tmp_path / "server.log", "--migrate")
    try:
        server.wait_healthy()
        assert _get(server.url + "/ready")[0] == 200
        status, body = _get(server.url + "/api/2.0/mlflow/experiments/get?experiment_id=0")
        assert status == 200
        experiment = json.loads(body)["experiment"]
        assert experiment["name"] == "Default"
        assert experiment["experiment_id"] == "0"
        assert experiment["artifact_location"] == "mlflow-artifacts:/0"
    finally:
        server.stop()


def test_ready_reports_database_outage_and_recovery(tmp_path: Path, env_for: EnvFor) -> None:
    """/health stays up (liveness) while /ready and the API answer 503 + Retry-After."""
    with devservices.temporary_postgres() as pg:
        url = pg.url()
        assert _metricgate("migrate", env=env_for(url)).returncode == 0
        server = Server(env_for(url), tmp_path / "server.log")
        try:
            server.wait_healthy()
            assert _get(server.url + "/ready")[0] == 200
            devservices.stop_postgres(pg.cluster_dir)
            assert _get(server.url + "/health")[0] == 200
            assert _get(server.url + "/ready")[0] == 503
            request = urllib.request.Request(
                server.url + "/api/2.0/mlflow/experiments/get?experiment_id=0"
            )
            with pytest.raises(urllib.error.HTTPError) as excinfo:
                urllib.request.urlopen(request, timeout=10)
            assert excinfo.value.code == 503
            assert excinfo.value.headers["Retry-After"]
            assert json.loads(excinfo.value.read())["error_code"] == "TEMPORARILY_UNAVAILABLE"
            devservices.start_postgres(pg.cluster_dir, durable=False, port=pg.port)
            deadline = time.monotonic() + 15
            while _get(server.url + "/ready")[0] != 200:
                assert time.monotonic() < deadline, (
                    "server did not recover after PostgreSQL came back"
                )
                time.sleep(0.2)
            assert _get(server.url + "/api/2.0/mlflow/experiments/get?experiment_id=0")[0] == 200
        finally:
            server.stop()


def test_sigterm_finishes_in_flight_request_then_exits(
    db_url: str, tmp_path: Path, env_for: EnvFor
) -> None:
    """Graceful shutdown: a request already being received completes; then the process exits 0."""
    server = Server(env_for(db_url), tmp_path / "server.log")
    try:
        server.wait_healthy()
        body = b"x" * 200_000
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
        with sock:
            head = (
                "PUT /api/2.0/mlflow-artifacts/artifacts/0/inflight/artifacts/f.bin HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{server.port}\r\nContent-Length: {len(body)}\r\n"
                "Content-Type: application/octet-stream\r\nConnection: close\r\n\r\n"
            ).encode()
            sock.sendall(head + body[:1000])
            time.sleep(0.3)  # the handler is now streaming the body
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            assert server.proc.poll() is None, "server exited with a request in flight"
            sock.sendall(body[1000:])
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        assert server.proc.wait(timeout=15) == 0, server.log()
        stored = tmp_path / "artifacts" / "0" / "inflight" / "artifacts" / "f.bin"
        assert stored.read_bytes() == body
        # No longer accepting connections.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        server.stop()


def test_workers_share_the_port_and_drain_on_sigterm(
    db_url: str, tmp_path: Path, env_for: EnvFor
) -> None:
    """`serve --workers 2`: both processes answer on one port, writes through either are read
    back exactly (their embedded flushers share the consumer group), every scrape of /metrics
    shows the sum over both workers, SIGTERM stops both and removes their metrics directory."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    server = Server(
        {**env_for(db_url), "TMPDIR": str(temp)}, tmp_path / "server.log", "--workers", "2"
    )
    try:
        server.wait_healthy()
        # The port answers once the first worker listens; the second may still be starting
        # (a loaded machine takes seconds to spawn one), and it must be up to be tested.
        deadline = time.monotonic() + 60
        while server.log().count("metricgate.server listening on") < 2:
            assert time.monotonic() < deadline and server.proc.poll() is None, server.log()
            time.sleep(0.1)
        run = _post(server.url, "runs/create", {"experiment_id": "0", "start_time": 1})["run"]
        run_id = run["info"]["run_id"]
        for step in range(40):  # new connections: the kernel spreads them over both workers
            metrics = [{"key": "loss", "value": step / 10, "timestamp": 1000 + step, "step": step}]
            _post(server.url, "runs/log-batch", {"run_id": run_id, "metrics": metrics})
        status, body = _get(
            f"{server.url}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss"
        )
        assert status == 200
        assert [m["step"] for m in json.loads(body)["metrics"]] == list(range(40))
        # Each scrape is a new connection, answered by either worker; each worker acknowledged
        # only some of the 40 points, so only an aggregate shows all of them every time.
        assert next(p.name for p in temp.iterdir()).startswith("metricgate-prometheus-")
        # The flushed counter moves just after the XACK that made the points readable.
        deadline = time.monotonic() + 10
        while _sample(_get(f"{server.url}/metrics")[1], "metricgate_points_flushed_total") < 40:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for _ in range(8):
            status, body = _get(f"{server.url}/metrics")
            assert status == 200
            assert _sample(body, "metricgate_points_accepted_total") == 40.0, body.decode()
            assert _sample(body, "metricgate_points_flushed_total") == 40.0, body.decode()
            # Live state read from Redis by whichever worker answered: one value, not a sum.
            assert _sample(body, "metricgate_ingest_flush_lag_seconds") == 0.0, body.decode()
            assert _sample(body, "metricgate_ingest_dead_letter_entries") == 0.0, body.decode()
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0, server.log()
        assert server.log().count("metricgate.server stopped") == 2, server.log()
        assert list(temp.iterdir()) == []
    finally:
        server.stop()


def _sample(exposition: bytes, name: str) -> float:
    """The value of an unlabelled sample in a Prometheus text exposition."""
    for line in exposition.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


def _post(base_url: str, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        f"{base_url}/api/2.0/mlflow/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Connection": "close"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())
