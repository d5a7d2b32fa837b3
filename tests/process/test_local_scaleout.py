"""deploy/local-scaleout.sh: 2 gateways (`serve --no-flusher`) + 2 flushers (`flush`) on one
PostgreSQL and one Redis, started, loaded through both gateways, checked in PostgreSQL, stopped."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis

from metricgate.ingest.streams import GROUP, stream_key
from scripts import devservices

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "local-scaleout.sh"
SHARDS = 4


class Scaleout:
    def __init__(self, env: dict[str, str], state: Path, ports: list[int]) -> None:
        self.env = env
        self.run_dir = state / "scaleout"
        self.urls = [f"http://127.0.0.1:{port}" for port in ports]

    def script(self, command: str, timeout_s: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(SCRIPT), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=ROOT,
        )

    def pids(self) -> dict[str, int]:
        return {p.stem: int(p.read_text()) for p in sorted(self.run_dir.glob("*.pid"))}

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
            for p in self.run_dir.glob("*.log")
        )


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture
def scaleout(db_url: str, redis_client_url: str, tmp_path: Path) -> Iterator[Scaleout]:
    ports = [devservices.find_free_port(), devservices.find_free_port()]
    while ports[1] == ports[0]:
        ports[1] = devservices.find_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("METRICGATE_")}
    env.update(
        METRICGATE_DATABASE_URL=db_url,
        METRICGATE_REDIS_URL=redis_client_url,
        METRICGATE_ARTIFACTS_URI=(tmp_path / "artifacts").as_uri(),
        METRICGATE_STATE_DIR=str(tmp_path / "state"),
        METRICGATE_SCALEOUT_PORTS=" ".join(map(str, ports)),
        METRICGATE_INGEST_SHARDS=str(SHARDS),
        METRICGATE_SHUTDOWN_TIMEOUT_S="5",
        METRICGATE_FLUSH_DRAIN_TIMEOUT_S="5",
        METRICGATE_START_TIMEOUT_S="20",
    )
    stack = Scaleout(env, tmp_path / "state", ports)
    try:
        yield stack
    finally:
        # Whatever the test did, leave no process behind: the script first, then by pid.
        stack.script("stop")
        for pid in stack.pids().values():
            if _alive(pid):
                os.kill(pid, 9)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"{}")  # type: ignore[no-any-return]


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def _bench(url: str) -> dict[str, Any]:
    """`metricgate bench` against one gateway: 6 runs x 10 steps x 10 keys, read back after."""
    cmd = [sys.executable, "-m", "metricgate", "bench", "--url", url, "--quick", "--workload", "a"]
    cmd += [
        "--runs",
        "6",
        "--steps",
        "10",
        "--concurrency",
        "6",
        "--no-progress",
        "--visible-timeout-s",
        "15",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["results"][0]  # type: ignore[no-any-return]


async def _count_points(db_url: str) -> int:
    conn = await asyncpg.connect(db_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM metrics"))
    finally:
        await conn.close()


def _consumer_pids(redis_url: str) -> set[int]:
    """Pids of the flusher processes the consumer group has seen (names are host-pid-random)."""
    client = redis.Redis.from_url(redis_url)
    try:
        names = {
            c["name"].decode()
            for s in range(SHARDS)
            for c in client.xinfo_consumers(stream_key(s), GROUP)
        }
    finally:
        client.close()
    return {int(m.group(1)) for n in names if (m := re.search(r"-(\d+)-[0-9a-f]{6}$", n))}


async def test_two_gateways_two_flushers_start_take_load_and_stop(
    scaleout: Scaleout, db_url: str, redis_client_url: str
) -> None:
    started = scaleout.script("start")
    assert started.returncode == 0, started.stderr + scaleout.logs()
    pids = scaleout.pids()
    assert sorted(pids) == sorted(
        [f"gateway-{u.rsplit(':', 1)[1]}" for u in scaleout.urls] + ["flusher-1", "flusher-2"]
    )
    again = scaleout.script("start")  # idempotent: reuses what runs
    assert again.returncode == 0, again.stderr
    assert again.stderr.count("already running") == 4 and scaleout.pids() == pids
    status = scaleout.script("status")
    assert status.returncode == 0, status.stdout
    assert status.stdout.count(", ready") == 2 and status.stdout.count("flusher") == 2
    for name, pid in pids.items():
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        # The same commands as the containers run.
        expected = (
            "metricgate serve --no-flusher" if name.startswith("gateway") else "metricgate flush"
        )
        assert expected in cmdline, cmdline

    # Read-your-writes across gateways: written through one, read at once through the other.
    first, second = scaleout.urls
    experiment = _post(f"{first}/api/2.0/mlflow/experiments/create", {"name": "scaleout"})[
        "experiment_id"
    ]
    run = _post(
        f"{first}/api/2.0/mlflow/runs/create", {"experiment_id": experiment, "start_time": 1}
    )["run"]
    run_id = run["info"]["run_id"]
    metrics = [
        {"key": "loss", "value": 1.0 / (s + 1), "timestamp": 1000 + s, "step": s} for s in range(50)
    ]
    _post(f"{first}/api/2.0/mlflow/runs/log-batch", {"run_id": run_id, "metrics": metrics})
    history = _get(f"{second}/api/2.0/mlflow/metrics/get-history?run_id={run_id}&metric_key=loss")
    assert len(history["metrics"]) == 50

    results = [_bench(url) for url in scaleout.urls]
    for result in results:
        assert result["error_count"] == 0 and result["points_accepted"] == 600, result
        assert result["visible_complete"], result
    # Gateways run without a flusher: the points reached PostgreSQL through the two flushers.
    assert await _count_points(db_url) == 50 + sum(r["points_accepted"] for r in results)
    flusher_pids = {pids["flusher-1"], pids["flusher-2"]}
    assert flusher_pids <= _consumer_pids(redis_client_url)

    stopped = scaleout.script("stop")
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped 2 gateway(s) and 2 flusher(s)" in stopped.stdout
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids.values())
    assert not list(scaleout.run_dir.glob("*.pid"))
    assert scaleout.script("status").returncode == 3
    # Each process drained and exited on SIGTERM (no SIGKILL was needed).
    assert "did not stop" not in stopped.stderr


def _haproxy_config(ports: list[int], listen_port: int) -> str:
    """deploy/haproxy.cfg with Docker's DNS discovery swapped for the local gateways' ports;
    everything else (health check, balancing, retries, timeouts) is the shipped config."""
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    text = re.sub(r"^resolvers docker\n(?:    .*\n)+", "", text, flags=re.M)
    servers = "".join(
        f"    server gateway{i} 127.0.0.1:{port} check\n" for i, port in enumerate(ports, 1)
    )
    text, replaced = re.subn(r"^    server-template .*\n", servers, text, flags=re.M)
    assert replaced == 1
    return text.replace("bind :5000", f"bind 127.0.0.1:{listen_port}")


def _route_count(base_url: str, route: str) -> float:
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    match = re.search(
        r'^metricgate_http_requests_total\{route="' + re.escape(route) + r'",status="200"\} (\S+)$',
        text,
        re.M,
    )
    return float(match.group(1)) if match else 0.0


@pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (apt-get install haproxy)"
)
def test_haproxy_config_spreads_requests_and_survives_a_gateway_stopping(
    scaleout: Scaleout, tmp_path: Path
) -> None:
    started = scaleout.script("start")
    assert started.returncode == 0, started.stderr + scaleout.logs()
    listen_port = devservices.find_free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        _haproxy_config([int(u.rsplit(":", 1)[1]) for u in scaleout.urls], listen_port)
    )
    lb_url = f"http://127.0.0.1:{listen_port}"
    with open(tmp_path / "haproxy.log", "wb") as log:
        proxy = subprocess.Popen(
            ["haproxy", "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(lb_url + "/version", timeout=2).close()
                break
            except OSError:
                assert proxy.poll() is None and time.monotonic() < deadline, (
                    tmp_path / "haproxy.log"
                ).read_text()
                time.sleep(0.1)
        for _ in range(40):
            with urllib.request.urlopen(lb_url + "/version", timeout=5) as response:
                assert response.status == 200
        # Both gateways took a share (balance leastconn over the servers that pass GET /ready).
        counts = [_route_count(url, "/version") for url in scaleout.urls]
        assert all(c >= 5 for c in counts), counts

        # One gateway stops (SIGTERM, as a rolling update does): its port closes, HAProxy retries
        # the refused connection on the other one, so clients see no error.
        pids = scaleout.pids()
        first_port = scaleout.urls[0].rsplit(":", 1)[1]
        os.kill(pids[f"gateway-{first_port}"], signal.SIGTERM)
        while _alive(pids[f"gateway-{first_port}"]):
            time.sleep(0.05)
        experiment = _post(f"{lb_url}/api/2.0/mlflow/experiments/create", {"name": "through-lb"})[
            "experiment_id"
        ]
        for _ in range(20):
            got = _get(f"{lb_url}/api/2.0/mlflow/experiments/get?experiment_id={experiment}")
            assert got["experiment"]["name"] == "through-lb"
    finally:
        proxy.terminate()
        proxy.wait(10)
