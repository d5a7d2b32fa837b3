"""Fault-test harness: real metricgate processes, real PostgreSQL/Redis, exact accounting of points.

The pieces:

- ``MgProcess`` / ``Cluster``: start, stop, SIGKILL, SIGSTOP/SIGCONT ``metricgate serve`` (the
  HTTP gateway, with or without its embedded flusher) and ``metricgate flush`` processes, each
  with its own log file under the test's tmp_path.
- ``start_redis_always``: a private redis-server with ``appendonly yes`` and ``appendfsync
  always`` (devservices' durable Redis uses ``everysec``, which may lose the last second of
  acknowledged writes on a crash; these tests need "acknowledged == durable" exactly).
- ``LoadDriver``: sends log-batch / log-metric requests with a distinct (run, key, step) per
  point, so the set of points the server must end up with is known exactly. It retries every
  request that was not acknowledged (503/429/502/504 honouring Retry-After, connection errors,
  timeouts) like the mlflow client does, until it gets 200. A timed-out or reset attempt may or
  may not have been applied: its retry is the "same request sent twice" case, which must be a
  no-op. Every attempt's outcome is recorded.
- ``wait_drained``: polls PostgreSQL and the Redis streams until every consumer group has
  nothing pending and nothing undelivered and the row count has stopped moving.
- ``check_exact``: compares PostgreSQL's ``metrics`` rows with the expected points: nothing
  missing, nothing extra, no duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import redis.asyncio as aioredis

from scripts import devservices

API = "/api/2.0/mlflow"
START_TIMEOUT_S = 20.0
RETRYABLE_STATUSES = (429, 502, 503, 504)
# The mlflow client backs off up to ~2 min; the tests cap one wait so they stay short.
MAX_RETRY_SLEEP_S = 1.0

# Small, quick batches and a short orphan-claim time, so faults land mid-batch and recovery is fast.
FAST_INGEST_ENV: dict[str, str | int | float] = {
    "METRICGATE_INGEST_SHARDS": 4,
    "METRICGATE_FLUSH_MAX_DELAY_MS": 20,
    "METRICGATE_FLUSH_BATCH_POINTS": 1000,
    "METRICGATE_FLUSH_CLAIM_IDLE_S": 1,
    "METRICGATE_FLUSH_TRIM_INTERVAL_S": 0.2,
    "METRICGATE_READ_WAIT_S": 5,
    "METRICGATE_FLUSH_DRAIN_TIMEOUT_S": 2,
}

PointKey = tuple[str, str, int]  # (run_id, key, step)
PointVal = tuple[int, float]  # (timestamp_ms, value)


# ---------------------------------------------------------------- services


def with_database(url: str, database: str) -> str:
    head, _, query = url.partition("?")
    scheme, _, rest = head.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{database}" + (f"?{query}" if query else "")


async def create_migrated_database(admin_url: str, name: str, template: str | None = None) -> str:
    """CREATE DATABASE ``name`` (from ``template`` when given, else migrated from scratch); its URL."""
    from metricgate.stores.postgres.migrate import migrate_url

    admin = await asyncpg.connect(admin_url)
    try:
        if template:
            await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        else:
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = with_database(admin_url, name)
    if not template:
        await migrate_url(url)
    return url


@dataclass
class RedisServer:
    """A private redis-server whose data (AOF) lives in ``directory``; restartable on the same port."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def pid(self) -> int | None:
        try:
            pid = int((self.directory / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if devservices._pid_alive(pid) else None

    def start(self) -> None:
        # After a SIGKILL a forked child of the old server (AOF rewrite) may hold the listening
        # socket for a moment; starting before it is gone fails with "address in use".
        devservices.wait_until(lambda: devservices.port_is_free(self.port), 15)
        start_redis_always(self.directory, self.port)

    def stop(self) -> None:
        """SIGTERM (Redis fsyncs its AOF and exits) and wait for the exit."""
        devservices.stop_redis(self.directory)

    def kill(self) -> None:
        """SIGKILL: no shutdown work at all. With appendfsync always nothing acknowledged is lost."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        devservices.wait_until(lambda: not devservices._pid_alive(pid), 10)


def start_redis_always(directory: Path, port: int | None = None) -> RedisServer:
    """redis-server with AOF and ``appendfsync always``: a write is on disk before Redis replies."""
    directory = Path(os.path.abspath(directory))
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    binary = devservices.ensure_redis(install=False)
    port = port or devservices.find_free_port()
    log = directory / "redis.log"
    cmd = [
        str(binary), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
        "--daemonize", "yes", "--pidfile", str(directory / "redis.pid"), "--logfile", str(log),
        "--save", "", "--appendonly", "yes", "--appendfsync", "always",
    ]  # fmt: skip
    (directory / "port").write_text(f"{port}\n")
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    server = RedisServer(directory, port)
    if not devservices.wait_until(
        lambda: devservices.redis_answers(port) and server.pid() is not None, 30
    ):
        raise RuntimeError(f"redis-server does not answer on port {port}:\n{tail(log)}")
    return server


# ---------------------------------------------------------------- metricgate processes


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


def http_status(url: str, timeout_s: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


class MgProcess:
    """One ``python -m metricgate ...`` subprocess with its log in ``log_path`` (appended across restarts)."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        env: dict[str, str],
        log_path: Path,
        port: int | None,
    ):
        self.name = name
        self.args = list(args)
        self.env = env
        self.log_path = log_path
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.stopping = False  # set when the test itself sends SIGTERM

    @property
    def url(self) -> str:
        assert self.port is not None, f"{self.name} has no HTTP port"
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> MgProcess:
        assert not self.alive(), f"{self.name} is already running"
        # Exactly what `python -m metricgate ARGS` runs (metricgate/__main__.py), spelled so that
        # a `pkill -f "metricgate serve"` from another session on a shared machine cannot hit it.
        cmd = [
            sys.executable,
            "-c",
            "import sys; from metricgate.cli import main; sys.exit(main())",
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts + 1}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                cmd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_healthy(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Gateways: until GET /health answers 200. Flushers: until they have run for a moment."""
        deadline = time.monotonic() + timeout_s
        if self.port is None:
            # A flusher has no HTTP port: wait for its start-up log line (it is connected to
            # Redis and PostgreSQL by then), or at most three seconds of it being alive.
            alive_since = time.monotonic()
            while time.monotonic() < deadline:
                if not self.alive():
                    raise AssertionError(
                        f"{self.name} exited {self.proc.returncode if self.proc else '?'}:\n{self.log()}"
                    )
                if "running" in self.log(2000).rsplit("===== start", 1)[-1]:
                    return
                if time.monotonic() - alive_since > 3.0:
                    return
                time.sleep(0.05)
            return
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(
                    f"{self.name} exited {self.proc.returncode if self.proc else '?'}:\n{self.log()}"
                )
            if http_status(self.url + "/health") == 200:
                return
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name} did not answer /health within {timeout_s} s:\n{self.log()}"
        )

    def kill(self) -> None:
        """SIGKILL, then reap."""
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGCONT)  # in case it was frozen; harmless otherwise
            self.proc.kill()
            self.proc.wait()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stopped_from_outside(self) -> bool:
        if self.stopping:
            return False
        text = tail(self.log_path, 1_000_000)
        return "shutdown requested" in text or "stopping flushers" in text

    def terminate(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        if self.proc is None:
            return None
        self.stopping = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log(self, chars: int = 4000) -> str:
        return tail(self.log_path, chars)

    def problem_lines(self) -> list[str]:
        """Log lines that mention an error or a traceback (for diagnostics and reports)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [
            ln
            for ln in lines
            if any(w in ln for w in ("ERROR", "CRITICAL", "Traceback", "Exception"))
        ]


class Cluster:
    """metricgate processes sharing one database and one Redis; every process is killed at teardown."""

    def __init__(self, db_url: str, redis_url: str, tmp_path: Path, **env: str | float) -> None:
        self.db_url = db_url
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.env_overrides = {k: str(v) for k, v in env.items()}
        self.processes: list[MgProcess] = []

    def env(self, **extra: str | float) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("METRICGATE_")}
        env.update(
            METRICGATE_DATABASE_URL=self.db_url,
            METRICGATE_REDIS_URL=self.redis_url,
            METRICGATE_ARTIFACTS_URI=(self.tmp_path / "artifacts").as_uri(),
            METRICGATE_SHUTDOWN_TIMEOUT_S="5",
            METRICGATE_DB_ACQUIRE_TIMEOUT_S="2",
            METRICGATE_DB_COMMAND_TIMEOUT_S="5",
            METRICGATE_LOG_LEVEL="INFO",
        )
        env.update(self.env_overrides)
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def gateway(
        self,
        name: str = "gateway",
        *,
        flusher: bool = True,
        port: int | None = None,
        **env: Any,
    ) -> MgProcess:
        port = port or devservices.find_free_port()
        args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
        if not flusher:
            args.append("--no-flusher")
        proc = MgProcess(name, args, self.env(**env), self.tmp_path / f"{name}.log", port)
        self.processes.append(proc)
        return proc

    def flusher(self, name: str = "flusher", **env: Any) -> MgProcess:
        proc = MgProcess(name, ["flush"], self.env(**env), self.tmp_path / f"{name}.log", None)
        self.processes.append(proc)
        return proc

    def close(self, timeout_s: float = 8.0) -> None:
        """SIGTERM everything (a flusher task that died logs its exception on the way out), then SIGKILL."""
        for proc in self.processes:
            if proc.alive():
                assert proc.proc is not None
                proc.stopping = True
                proc.proc.send_signal(signal.SIGCONT)
                proc.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for proc in self.processes:
            if proc.proc is not None and proc.proc.poll() is None:
                try:
                    proc.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            proc.kill()

    def stopped_from_outside(self) -> list[str]:
        """Processes that began a graceful shutdown the test never asked for (a stray signal from
        another program on the machine): their failures are not the server's."""
        return [p.name for p in self.processes if p.stopped_from_outside()]

    def logs(self, chars: int = 3000) -> str:
        return "\n".join(
            f"----- {p.name} ({p.log_path}) -----\n{p.log(chars)}" for p in self.processes
        )

    def problems(self) -> dict[str, list[str]]:
        return {p.name: lines for p in self.processes if (lines := p.problem_lines())}


# ---------------------------------------------------------------- HTTP helpers


async def post_json(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any]
) -> tuple[int, dict[str, str], bytes]:
    async with session.post(
        url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
    ) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def create_runs(base_url: str, count: int, experiment_name: str = "fault") -> list[str]:
    """An experiment and ``count`` active runs in it; their run ids."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        status, _, raw = await post_json(
            session, base_url + API + "/experiments/create", {"name": experiment_name}
        )
        assert status == 200, (status, raw)
        experiment_id = orjson.loads(raw)["experiment_id"]
        run_ids = []
        for i in range(count):
            body = {
                "experiment_id": experiment_id,
                "start_time": 1_700_000_000_000,
                "run_name": f"r{i}",
            }
            status, _, raw = await post_json(session, base_url + API + "/runs/create", body)
            assert status == 200, (status, raw)
            run_ids.append(orjson.loads(raw)["run"]["info"]["run_id"])
        return run_ids


# ---------------------------------------------------------------- the load


@dataclass
class Request:
    """One request's points. The body is fixed: a retry sends exactly the same bytes."""

    index: int
    run_id: str
    points: list[tuple[str, int, int, float]]  # (key, step, timestamp_ms, value)
    single: bool  # runs/log-metric instead of runs/log-batch
    attempts: list[str] = field(default_factory=list)  # "200", "503", "ClientConnectorError", ...
    acked: bool = False
    acked_at: float | None = None
    acked_by: str | None = None

    @property
    def path(self) -> str:
        return API + ("/runs/log-metric" if self.single else "/runs/log-batch")

    def body(self) -> bytes:
        if self.single:
            key, step, ts, value = self.points[0]
            return orjson.dumps(
                {
                    "run_id": self.run_id,
                    "key": key,
                    "value": value,
                    "timestamp": ts,
                    "step": step,
                }
            )
        metrics = [
            {"key": k, "value": v, "timestamp": ts, "step": s} for k, s, ts, v in self.points
        ]
        return orjson.dumps({"run_id": self.run_id, "metrics": metrics})

    def expected(self) -> dict[PointKey, PointVal]:
        return {(self.run_id, k, s): (ts, v) for k, s, ts, v in self.points}


class PointPlan:
    """Generates requests with a distinct (run, key, step) for every point, round-robin over runs.

    Request i goes to run ``runs[i % len(runs)]`` and carries keys ``m0..m{B-1}`` (``key_prefix``) at step
    ``i // len(runs)``; every ``single_every``-th request is a runs/log-metric of one point.
    Values are exact binary fractions, so JSON round trips cannot blur them.
    """

    def __init__(
        self,
        run_ids: Sequence[str],
        batch_points: int = 20,
        single_every: int = 10,
        base_ts: int = 1_700_000_000_000,
        key_prefix: str = "m",
    ):
        self.run_ids = list(run_ids)
        self.batch_points = batch_points
        self.single_every = single_every
        self.base_ts = base_ts
        self.key_prefix = key_prefix
        self._counter = itertools.count()

    def next(self) -> Request:
        i = next(self._counter)
        run_id = self.run_ids[i % len(self.run_ids)]
        step = i // len(self.run_ids)
        single = self.single_every > 0 and i % self.single_every == self.single_every - 1
        n = 1 if single else self.batch_points
        points = [
            (
                f"{self.key_prefix}{j}",
                step,
                self.base_ts + step * 10 + j,
                i * 64 + j + 0.25,
            )
            for j in range(n)
        ]
        return Request(i, run_id, points, single)


class LoadDriver:
    """Sends requests from a ``PointPlan`` at ``concurrency`` in flight, retrying each until it is acknowledged.

    ``targets`` returns the base URLs to use now (round-robin over them per attempt).
    Run it with ``start()``; ``stop_new()`` stops generating new requests; ``finish()`` waits
    until every generated request is acknowledged.
    """

    def __init__(
        self,
        plan: PointPlan,
        targets: Callable[[], Sequence[str]],
        *,
        concurrency: int = 8,
        rate_per_s: float | None = None,
        max_requests: int | None = None,
        request_timeout_s: float = 15.0,
    ) -> None:
        self.plan = plan
        self.targets = targets
        self.concurrency = concurrency
        self.rate_per_s = rate_per_s
        self.max_requests = max_requests
        self.request_timeout_s = request_timeout_s
        self.requests: list[Request] = []
        self.status_counts: Counter[str] = Counter()
        self.retry_after_missing = 0
        self.retry_after_values: Counter[str] = Counter()
        self.bad_responses: list[tuple[int, str, bytes]] = []  # non-200, non-retryable, or 500s
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._rr = itertools.count()
        self._gen_lock = asyncio.Lock()
        self._next_send_at = 0.0
        self.started_at = 0.0

    # -- accounting

    @property
    def acked(self) -> list[Request]:
        return [r for r in self.requests if r.acked]

    def acked_points(self) -> int:
        return sum(len(r.points) for r in self.requests if r.acked)

    def expected(self) -> dict[PointKey, PointVal]:
        out: dict[PointKey, PointVal] = {}
        for r in self.requests:
            if r.acked:
                out.update(r.expected())
        return out

    def unacked(self) -> list[Request]:
        return [r for r in self.requests if not r.acked]

    def summary(self) -> str:
        retried = sum(1 for r in self.requests if len(r.attempts) > 1)
        return (
            f"{len(self.requests)} requests ({self.acked_points()} points acknowledged, "
            f"{len(self.unacked())} requests unacknowledged), {retried} retried; "
            f"attempt outcomes {dict(self.status_counts)}; Retry-After values {dict(self.retry_after_values)}"
        )

    # -- running

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.concurrency * 2, force_close=False)
        timeout = aiohttp.ClientTimeout(total=self.request_timeout_s)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)
        self.started_at = time.monotonic()
        self._next_send_at = self.started_at
        self._tasks = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]

    def stop_new(self) -> None:
        self._stop.set()

    async def finish(self, timeout_s: float = 60.0) -> None:
        """Wait until every request is acknowledged (raises on timeout). Without ``max_requests``
        new requests stop now; with it, all ``max_requests`` are sent first."""
        if self.max_requests is None:
            self.stop_new()
        if self._session is None or self._session.closed:
            return
        try:
            await asyncio.wait_for(asyncio.gather(*self._tasks), timeout_s)
        except TimeoutError:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            raise AssertionError(
                f"load did not finish within {timeout_s} s: {self.summary()}"
            ) from None
        finally:
            if self._session is not None:
                await self._session.close()

    async def run_until(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        """Wait (while the load runs) until ``predicate()`` holds."""
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not reached within {timeout_s} s: {self.summary()}"
                )
            await asyncio.sleep(0.02)

    async def _take(self) -> Request | None:
        async with self._gen_lock:
            if self._stop.is_set():
                return None
            if self.max_requests is not None and len(self.requests) >= self.max_requests:
                return None
            if self.rate_per_s:
                now = time.monotonic()
                wait = self._next_send_at - now
                self._next_send_at = max(now, self._next_send_at) + 1.0 / self.rate_per_s
                if wait > 0:
                    await asyncio.sleep(wait)
                if self._stop.is_set():
                    return None
            request = self.plan.next()
            self.requests.append(request)
            return request

    async def _worker(self) -> None:
        while (request := await self._take()) is not None:
            await self.send_until_acked(request)

    async def send_until_acked(self, request: Request) -> None:
        assert self._session is not None
        body = request.body()
        backoff = 0.05
        while True:
            targets = self.targets()
            base = targets[next(self._rr) % len(targets)] if targets else None
            sleep_s = backoff
            if base is None:
                request.attempts.append("no-target")
            else:
                try:
                    async with self._session.post(
                        base + request.path,
                        data=body,
                        headers={"Content-Type": "application/json"},
                    ) as resp:
                        raw = await resp.read()
                        status = resp.status
                        retry_after = resp.headers.get("Retry-After")
                except (
                    aiohttp.ClientError,
                    TimeoutError,
                    ConnectionError,
                    OSError,
                ) as exc:
                    outcome = type(exc).__name__
                    request.attempts.append(outcome)
                    self.status_counts[outcome] += 1
                else:
                    request.attempts.append(str(status))
                    self.status_counts[str(status)] += 1
                    if status == 200:
                        request.acked = True
                        request.acked_at = time.monotonic()
                        request.acked_by = base
                        return
                    if status not in RETRYABLE_STATUSES:
                        # A bug (500, or a 4xx for a valid request): keep it for the test to fail on,
                        # and retry so the exact check still runs on everything else.
                        self.bad_responses.append((status, request.path, raw[:300]))
                    if status in (429, 503):
                        if retry_after is None:
                            self.retry_after_missing += 1
                        else:
                            self.retry_after_values[retry_after] += 1
                            with contextlib.suppress(ValueError):
                                sleep_s = max(sleep_s, float(retry_after))
            await asyncio.sleep(min(sleep_s, MAX_RETRY_SLEEP_S) * (0.5 + random.random()))
            backoff = min(backoff * 2, MAX_RETRY_SLEEP_S)


# ---------------------------------------------------------------- Redis stream inspection


@dataclass
class StreamState:
    streams: dict[str, int]  # stream key -> XLEN
    groups: dict[str, list[dict[str, Any]]]  # stream key -> XINFO GROUPS rows
    consumers: dict[str, list[dict[str, Any]]]  # "stream/group" -> XINFO CONSUMERS rows

    @property
    def pending(self) -> int:
        return sum(int(g.get("pending") or 0) for gs in self.groups.values() for g in gs)

    @property
    def undelivered(self) -> int | None:
        """Entries not yet read by some group (XINFO GROUPS ``lag``); None when Redis cannot tell."""
        total = 0
        for key, gs in self.groups.items():
            for g in gs:
                lag = g.get("lag")
                if lag is None:
                    if self.streams.get(key, 0) == 0:
                        continue
                    return None
                total += int(lag)
        return total

    def describe(self) -> str:
        parts = []
        for key, length in sorted(self.streams.items()):
            gs = ", ".join(
                f"{g.get('name')}: pending={g.get('pending')} lag={g.get('lag')} consumers={g.get('consumers')}"
                for g in self.groups.get(key, [])
            )
            parts.append(f"{key} len={length} [{gs}]")
        return "; ".join(parts) or "(no streams)"


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {_decode(k): _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _id(value: Any) -> tuple[int, int]:
    text = _decode(value) or "0-0"
    ms, _, seq = str(text).partition("-")
    return int(ms), int(seq or 0)


async def stream_state(redis_url: str, *, with_consumers: bool = False) -> StreamState:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        keys = [_decode(k) async for k in client.scan_iter(_type="STREAM", count=1000)]
        streams: dict[str, int] = {}
        groups: dict[str, list[dict[str, Any]]] = {}
        consumers: dict[str, list[dict[str, Any]]] = {}
        for key in keys:
            streams[key] = int(await client.xlen(key))
            groups[key] = [_decode(g) for g in await client.xinfo_groups(key)]
            if any(g.get("lag") is None for g in groups[key]):
                # Redis cannot always compute lag (tombstones); compare ids instead.
                last = _decode((await client.xinfo_stream(key)).get("last-generated-id"))
                for g in groups[key]:
                    if g.get("lag") is None:
                        g["lag"] = 0 if _id(g.get("last-delivered-id")) >= _id(last) else None
            if with_consumers:
                for g in groups[key]:
                    consumers[f"{key}/{g['name']}"] = [
                        _decode(c) for c in await client.xinfo_consumers(key, g["name"])
                    ]
        return StreamState(streams, groups, consumers)
    finally:
        await client.aclose()


async def pending_by_consumer(redis_url: str) -> dict[str, int]:
    state = await stream_state(redis_url, with_consumers=True)
    totals: Counter[str] = Counter()
    for rows in state.consumers.values():
        for c in rows:
            totals[str(c.get("name"))] += int(c.get("pending") or 0)
    return dict(totals)


async def entries_added(redis_url: str) -> int:
    """XADDs ever made to the ingest streams (dead-letter streams excluded). Minus the number of
    200 answers, that is how many applied-but-unacknowledged copies a fault left behind."""
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        total = 0
        async for key in client.scan_iter(_type="STREAM", count=1000):
            if b"dead" not in key:
                total += int((await client.xinfo_stream(key)).get("entries-added") or 0)
        return total
    finally:
        await client.aclose()


async def dead_letters(redis_url: str) -> dict[str, int]:
    """Entries parked in dead-letter streams (any stream named *dead*): points that never reach PostgreSQL."""
    state = await stream_state(redis_url)
    return {k: n for k, n in state.streams.items() if "dead" in k and n}


@dataclass
class PendingSnapshot:
    entries: int  # pending (delivered, unacknowledged) entries in all groups
    points: int  # points they carry
    committed_points: int  # of those, points already in PostgreSQL (committed, not yet XACKed)
    by_consumer: dict[str, int]


async def pending_snapshot(redis_url: str, db_url: str) -> PendingSnapshot:
    """What the pending entries hold and how much of it is already committed: tells a kill that
    landed before COMMIT (0 committed) from one between COMMIT and XACK (all committed)."""
    from metricgate.domain.metrics import wire  # the server's own entry codec

    client = aioredis.Redis.from_url(redis_url, socket_timeout=5)
    points: list[PointKey] = []
    by_consumer: Counter[str] = Counter()
    entries = 0
    try:
        keys = [k async for k in client.scan_iter(_type="STREAM", count=1000)]
        for key in keys:
            for g in await client.xinfo_groups(key):
                rows = await client.xpending_range(key, g["name"], min="-", max="+", count=100_000)
                for row in rows:
                    entries += 1
                    by_consumer[_decode(row["consumer"])] += 1
                    found = await client.xrange(key, min=row["message_id"], max=row["message_id"])
                    if not found:
                        continue
                    batch = wire.decode(found[0][1])
                    points.extend(
                        (batch.run_id, k, int(s))
                        for k, s in zip(batch.keys, batch.steps, strict=True)
                    )
    finally:
        await client.aclose()
    committed = 0
    if points:
        conn = await asyncpg.connect(db_url, timeout=5)
        try:
            committed = int(
                await conn.fetchval(
                    "SELECT count(*) FROM metrics m JOIN unnest($1::text[], $2::text[], $3::bigint[]) "
                    "AS p(run_id, key, step) USING (run_id, key, step)",
                    [p[0] for p in points],
                    [p[1] for p in points],
                    [p[2] for p in points],
                )
            )
        finally:
            await conn.close()
    return PendingSnapshot(entries, len(points), committed, dict(by_consumer))


# ---------------------------------------------------------------- PostgreSQL checks


async def metrics_count(db_url: str, run_ids: Iterable[str] | None = None) -> int:
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        if run_ids is None:
            return int(await conn.fetchval("SELECT count(*) FROM metrics"))
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM metrics WHERE run_id = ANY($1::text[])",
                list(run_ids),
            )
        )
    finally:
        await conn.close()


@dataclass
class DrainResult:
    count: int
    seconds: float
    state: StreamState
    history: list[tuple[float, int, int, int | None]]  # (t, rows, pending, undelivered)


async def wait_drained(
    db_url: str,
    redis_url: str,
    expected_rows: int,
    *,
    timeout_s: float = 30.0,
    settle_s: float = 0.6,
) -> DrainResult:
    """Poll until no group has pending or undelivered entries and the row count has been stable for
    ``settle_s`` (or equals ``expected_rows``). Returns the last observation; never raises on a
    count mismatch (``check_exact`` reports that), but raises if the backlog never drains."""
    started = time.monotonic()
    history: list[tuple[float, int, int, int | None]] = []
    last_count = -1
    stable_since = time.monotonic()
    while True:
        now = time.monotonic()
        try:
            count = await metrics_count(db_url)
            state = await stream_state(redis_url)
        except (OSError, asyncpg.PostgresError, aioredis.RedisError) as exc:
            if now - started > timeout_s:
                raise AssertionError(
                    f"services unreachable while waiting for the drain: {exc!r}"
                ) from exc
            await asyncio.sleep(0.2)
            continue
        history.append((round(now - started, 2), count, state.pending, state.undelivered))
        if count != last_count:
            last_count = count
            stable_since = now
        backlog_clear = state.pending == 0 and state.undelivered == 0
        if backlog_clear and (count == expected_rows or now - stable_since >= settle_s):
            return DrainResult(count, now - started, state, history)
        if now - started > timeout_s:
            raise AssertionError(
                f"backlog did not drain within {timeout_s} s: {count}/{expected_rows} rows; "
                f"streams {state.describe()}; history tail {history[-8:]}"
            )
        await asyncio.sleep(0.1)


@dataclass
class ExactReport:
    expected: int
    rows: int
    distinct_points: int
    missing: list[PointKey]
    extra: list[PointKey]
    wrong_value: list[tuple[PointKey, PointVal, PointVal]]
    duplicates: list[tuple[PointKey, int]]
    # Points that two different requests carried: stored once per request by design.
    carried_twice: int = 0

    @property
    def ok(self) -> bool:
        return (
            not (self.missing or self.extra or self.wrong_value or self.duplicates)
            and self.rows == self.expected + self.carried_twice
        )

    def __str__(self) -> str:
        return (
            f"expected {self.expected} points, PostgreSQL has {self.rows} rows "
            f"({self.distinct_points} distinct (run, key, step)); missing {len(self.missing)} "
            f"{self.missing[:5]}; extra {len(self.extra)} {self.extra[:5]}; wrong value "
            f"{len(self.wrong_value)} {self.wrong_value[:3]}; duplicated {len(self.duplicates)} {self.duplicates[:5]}"
        )


async def check_exact(
    db_url: str, expected: dict[PointKey, PointVal], carried_twice: Collection[PointKey] = ()
) -> ExactReport:
    """Compare the ``metrics`` view (every stored point) with ``expected`` point by point.

    Storage is idempotent per request: a request replayed or retried any number of times is
    stored once. A point that two *different* requests carry is stored with each (reads fold
    identical points, MLflow's rule); ``carried_twice`` names those points, which must then be
    stored exactly twice. Every other point must be stored exactly once."""
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT run_id, key, step, timestamp_ms, value FROM metrics")
        distinct = int(
            await conn.fetchval(
                "SELECT count(*) FROM (SELECT DISTINCT run_id, key, step FROM metrics) t"
            )
        )
    finally:
        await conn.close()
    seen: Counter[PointKey] = Counter()
    stored: dict[PointKey, PointVal] = {}
    for r in rows:
        k = (r["run_id"], r["key"], int(r["step"]))
        seen[k] += 1
        stored[k] = (int(r["timestamp_ms"]), float(r["value"]))
    missing = sorted(set(expected) - set(stored))
    extra = sorted(set(stored) - set(expected))
    wrong = [
        (k, expected[k], stored[k]) for k in expected if k in stored and stored[k] != expected[k]
    ]
    twice = set(carried_twice)
    dups = sorted((k, n) for k, n in seen.items() if n != (2 if k in twice else 1))
    return ExactReport(len(expected), len(rows), distinct, missing, extra, wrong, dups, len(twice))


async def check_latest_metrics(db_url: str, expected: dict[PointKey, PointVal]) -> list[str]:
    """latest_metrics must hold, per (run, key), the point with the highest (step, timestamp, value)."""
    want: dict[tuple[str, str], tuple[int, int, float]] = {}
    for (run_id, key, step), (ts, value) in expected.items():
        cand = (step, ts, value)
        if (run_id, key) not in want or cand > want[(run_id, key)]:
            want[(run_id, key)] = cand
    conn = await asyncpg.connect(db_url, timeout=5)
    try:
        rows = await conn.fetch("SELECT run_id, key, step, timestamp_ms, value FROM latest_metrics")
    finally:
        await conn.close()
    have = {
        (r["run_id"], r["key"]): (
            int(r["step"]),
            int(r["timestamp_ms"]),
            float(r["value"]),
        )
        for r in rows
    }
    problems = []
    for k, v in want.items():
        if have.get(k) != v:
            problems.append(f"latest_metrics{k}: expected {v}, found {have.get(k)}")
    for k in set(have) - set(want):
        problems.append(f"latest_metrics{k}: unexpected row {have[k]}")
    return problems


async def read_history(
    base_url: str, run_id: str, key: str, timeout_s: float = 20.0
) -> tuple[int, list[dict[str, Any]]]:
    """metrics/get-history of one (run, key), all pages; (status of the first non-200 or 200, metrics)."""
    out: list[dict[str, Any]] = []
    token = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session:
        while True:
            params = {"run_id": run_id, "metric_key": key, "max_results": "25000"}
            if token:
                params["page_token"] = token
            async with session.get(base_url + API + "/metrics/get-history", params=params) as resp:
                raw = await resp.read()
                if resp.status != 200:
                    return resp.status, out
            doc = orjson.loads(raw)
            out.extend(doc.get("metrics", []))
            token = doc.get("next_page_token")
            if not token:
                return 200, out


def assert_exact(
    report: ExactReport,
    driver: LoadDriver | None = None,
    cluster: Cluster | None = None,
    extra: str = "",
) -> None:
    if report.ok:
        return
    parts = [str(report)]
    if driver is not None:
        parts.append("load: " + driver.summary())
    if extra:
        parts.append(extra)
    if cluster is not None:
        parts.append(cluster.logs())
    raise AssertionError("\n".join(parts))


# ---------------------------------------------------------------- shutdown (test_fault_shutdown.py)


def send_signal(proc: MgProcess, signum: int = signal.SIGTERM) -> None:
    """Send ``signum`` to the process (marked as the test's own stop, see ``stopped_from_outside``)."""
    assert proc.proc is not None and proc.proc.poll() is None, f"{proc.name} is not running"
    proc.stopping = True
    proc.proc.send_signal(signum)


def wait_exit(proc: MgProcess, timeout_s: float) -> int | None:
    """The exit code once the process has exited, or None if it is still running after ``timeout_s``."""
    assert proc.proc is not None
    try:
        return proc.proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None


def workers_gateway(
    cluster: Cluster, name: str = "gateway", workers: int = 2, **env: Any
) -> MgProcess:
    """``metricgate serve --workers N`` (one port, N processes; the parent forwards signals)."""
    port = devservices.find_free_port()
    args = ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    proc = MgProcess(name, args, cluster.env(**env), cluster.tmp_path / f"{name}.log", port)
    cluster.processes.append(proc)
    return proc


def worker_pids(parent_pid: int) -> list[int]:
    """The worker processes of ``serve --workers N`` (children of the parent, from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) != parent_pid:
            continue
        with contextlib.suppress(OSError):
            # Not multiprocessing's resource tracker, which is a child of the parent too.
            if b"spawn_main" in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
    return pids


def pid_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie counts as gone: it runs no code)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def port_refuses(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port`` (a connection is refused)."""
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


class HeldRequest:
    """A log-batch request whose body never finishes arriving: the gateway counts it in flight,
    so a graceful shutdown waits for it up to METRICGATE_SHUTDOWN_TIMEOUT_S."""

    def __init__(self, port: int, run_id: str) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        body = orjson.dumps({"run_id": run_id, "metrics": []})
        head = (
            f"POST {API}/runs/log-batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body) + 100}\r\n\r\n"
        )
        self.sock.sendall(head.encode() + body[:5])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
