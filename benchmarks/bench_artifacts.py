#!/usr/bin/env python3
"""Large-artifact throughput on one private SeaweedFS: metricgate vs direct S3 vs stock MLflow.

One run, one machine, the same file (default 2 GiB; ``--quick``: 128 MiB), each contender in turn,
``--repeat`` times, medians reported:
- ``direct``: aioboto3 ``upload_file``/``download_file`` straight to the bucket (managed multipart,
  ``--parallel`` parts of ``--part-size`` in flight): the ceiling.
- ``metricgate``: ``metricgate.client`` through metricgate's resumable upload API (parallel parts,
  per-part SHA-256; the whole-file SHA-256 recorded) and parallel Range GETs (SHA-256 verified).
- ``mlflow->metricgate``: the unmodified mlflow client, proxied multipart upload
  (``MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD``) and proxied download, against metricgate.
- ``mlflow->mlflow``: the same client against stock ``mlflow server --artifacts-destination s3://``
  (installed into its own venv under the cache dir, as ``compare.py`` does).

PostgreSQL and Redis come from ``compare.py``'s helpers; SeaweedFS from ``tests/s3_services.py``.
Prints a table with ratios to ``direct`` (target: metricgate upload >= 0.7x) and one JSON line.

    .venv/bin/python benchmarks/bench_artifacts.py --quick            # ~128 MiB, a minute or two
    .venv/bin/python benchmarks/bench_artifacts.py --size 2G --repeat 3
    .venv/bin/python benchmarks/bench_artifacts.py --contenders direct,metricgate
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks"), str(REPO / "tests"), str(REPO)]

import compare  # noqa: E402  (process, venv and service helpers shared with the ingest comparison)
import s3_services  # noqa: E402
from metricgate.cli.artifacts import parse_size  # noqa: E402
from metricgate.client import download_async, upload_async  # noqa: E402
from scripts import devservices  # noqa: E402

MIB = 1024 * 1024
CONTENDERS = ("direct", "metricgate", "mlflow->metricgate", "mlflow->mlflow")
BUCKET = "bench"


@dataclass
class Stack:
    tmp: Path
    endpoint: s3_services.S3Endpoint
    metricgate: compare.Server
    mlflow: compare.Server | None


def _gateway_env(pg: devservices.PostgresInstance, redis: devservices.RedisInstance,
                 endpoint: s3_services.S3Endpoint, artifacts_uri: str) -> dict[str, str]:  # fmt: skip
    env = {k: v for k, v in compare._base_env().items() if not k.startswith("AWS_")}
    env.update(endpoint.env(), METRICGATE_DATABASE_URL=pg.url("bench_metricgate"), METRICGATE_REDIS_URL=redis.url,
               METRICGATE_ARTIFACTS_URI=artifacts_uri, METRICGATE_LOG_LEVEL="WARNING")  # fmt: skip
    return env


def start_metricgate_s3(tmp: Path, pg: devservices.PostgresInstance, redis: devservices.RedisInstance,
                        endpoint: s3_services.S3Endpoint, local_store: bool = False) -> compare.Server:  # fmt: skip
    devservices.create_database(pg, "bench_metricgate")
    root = (tmp / "artifacts").as_uri() if local_store else f"s3://{endpoint.bucket}/metricgate"
    env = _gateway_env(pg, redis, endpoint, root)
    compare.run_checked(
        [sys.executable, "-m", "metricgate", "migrate"], env=env, what="metricgate migrate"
    )
    port = devservices.find_free_port()
    cmd = [sys.executable, "-m", "metricgate", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return compare.Server("metricgate", compare.spawn(cmd, env, tmp / "metricgate.log"), f"http://127.0.0.1:{port}",
                          tmp / "metricgate.log")  # fmt: skip


def start_mlflow_s3(tmp: Path, pg: devservices.PostgresInstance, endpoint: s3_services.S3Endpoint,
                    cache: Path, version: str) -> compare.Server:  # fmt: skip
    venv = compare.ensure_venv(
        cache / "mlflow-s3-venv", [f"mlflow=={version}", "psycopg2-binary", "boto3"]
    )
    devservices.create_database(pg, "bench_mlflow")
    port = devservices.find_free_port()
    env = {k: v for k, v in compare._base_env().items() if not k.startswith("AWS_")}
    env.update(MLFLOW_S3_ENDPOINT_URL=endpoint.url, AWS_ACCESS_KEY_ID=endpoint.access_key,
               AWS_SECRET_ACCESS_KEY=endpoint.secret_key, AWS_DEFAULT_REGION=endpoint.region)  # fmt: skip
    backend = pg.url("bench_mlflow").replace("postgresql://", "postgresql+psycopg2://", 1)
    cmd = [str(venv / "bin" / "mlflow"), "server", "--backend-store-uri", backend,
           "--artifacts-destination", f"s3://{endpoint.bucket}/mlflow",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    return compare.Server(
        "mlflow",
        compare.spawn(cmd, env, tmp / "mlflow.log"),
        f"http://127.0.0.1:{port}",
        tmp / "mlflow.log",
    )


@contextlib.contextmanager
def stack(
    *, with_mlflow: bool, cache: Path, mlflow_version: str, keep: bool, local_store: bool = False
) -> Iterator[Stack]:
    """PostgreSQL + Redis (compare.services), a private SeaweedFS, metricgate on it, maybe stock mlflow."""
    with compare.services(keep) as (tmp, pg, redis):
        weed = s3_services.start_seaweed(tmp / "seaweed", bucket=BUCKET)
        try:
            gateway = start_metricgate_s3(tmp, pg, redis, weed.endpoint, local_store)
            compare.wait_ready(gateway)
            mlflow = (
                start_mlflow_s3(tmp, pg, weed.endpoint, cache, mlflow_version)
                if with_mlflow
                else None
            )
            if mlflow is not None:
                compare.wait_ready(mlflow)
            yield Stack(tmp, weed.endpoint, gateway, mlflow)
        finally:
            compare.stop_all()
            weed.stop()


# ---------------------------------------------------------------- contenders


def write_source(path: Path, size: int) -> None:
    block = random.Random(0).randbytes(8 * MIB)
    with open(path, "wb") as f:
        for offset in range(0, size, len(block)):
            # A different first 8 bytes per block, so no two blocks are equal.
            chunk = (offset // len(block)).to_bytes(8, "little") + block[8:]
            f.write(chunk[: size - offset])


def purge(endpoint: s3_services.S3Endpoint, prefix: str = "") -> None:
    """Delete the bucket's objects (each measurement leaves a full copy behind; disk is finite)."""
    s3 = endpoint.client()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=endpoint.bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=endpoint.bucket, Delete={"Objects": keys, "Quiet": True})


async def direct(
    endpoint: s3_services.S3Endpoint, src: Path, out: Path, part: int, parallel: int
) -> tuple[float, float]:
    import aioboto3
    from boto3.s3.transfer import TransferConfig

    config = TransferConfig(
        multipart_threshold=part, multipart_chunksize=part, max_concurrency=parallel
    )
    key = f"direct/{uuid.uuid4().hex}.bin"
    session = aioboto3.Session(aws_access_key_id=endpoint.access_key, aws_secret_access_key=endpoint.secret_key,
                               region_name=endpoint.region)  # fmt: skip
    async with session.client("s3", endpoint_url=endpoint.url) as s3:
        started = time.perf_counter()
        await s3.upload_file(str(src), endpoint.bucket, key, Config=config)
        up = time.perf_counter() - started
        started = time.perf_counter()
        await s3.download_file(endpoint.bucket, key, str(out), Config=config)
        down = time.perf_counter() - started
    return up, down


def new_run(url: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url)
    return str(
        client.create_run(client.create_experiment(f"bench-{uuid.uuid4().hex[:8]}")).info.run_id
    )


async def through_client(
    url: str, src: Path, out: Path, part: int, parallel: int
) -> tuple[float, float]:
    run_id = new_run(url)
    started = time.perf_counter()
    await upload_async(
        src,
        run_id,
        "ckpt.bin",
        url=url,
        part_size=part,
        parallel=parallel,
        state_dir=out.parent / "state",
    )
    up = time.perf_counter() - started
    started = time.perf_counter()
    got = await download_async(run_id, "ckpt.bin", out, url=url, parallel=parallel, chunk_size=part)
    down = time.perf_counter() - started
    assert got.files[0].verified, "the recorded SHA-256 was not checked"
    return up, down


def through_mlflow(url: str, src: Path, out: Path, part: int) -> tuple[float, float]:
    import mlflow
    from mlflow import MlflowClient

    os.environ.update(MLFLOW_ENABLE_PROXY_MULTIPART_UPLOAD="true", MLFLOW_MULTIPART_UPLOAD_MINIMUM_FILE_SIZE=str(part),
                      MLFLOW_MULTIPART_UPLOAD_CHUNK_SIZE=str(part), MLFLOW_DISABLE_TELEMETRY="true")  # fmt: skip
    run_id = new_run(url)
    started = time.perf_counter()
    MlflowClient(tracking_uri=url).log_artifact(run_id, str(src))
    up = time.perf_counter() - started
    started = time.perf_counter()
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=src.name, dst_path=str(out.parent / "ml"),
                                                tracking_uri=url)  # fmt: skip
    down = time.perf_counter() - started
    if Path(local).stat().st_size != src.stat().st_size:
        raise compare.BenchError(f"mlflow downloaded {Path(local).stat().st_size} bytes from {url}")
    shutil.rmtree(out.parent / "ml", ignore_errors=True)
    return up, down


# ---------------------------------------------------------------- report


@dataclass
class Result:
    name: str
    up_s: list[float] = field(default_factory=list)
    down_s: list[float] = field(default_factory=list)

    def rate(self, size: int, which: str) -> float:
        return size / MIB / statistics.median(self.up_s if which == "up" else self.down_s)


def table(results: list[Result], size: int) -> str:
    base = next((r for r in results if r.name == "direct"), None)
    lines = [f"{'contender':<20} {'upload MiB/s':>13} {'x direct':>9} {'download MiB/s':>15} {'x direct':>9}  runs",
             "-" * 78]  # fmt: skip
    for r in results:
        up, down = r.rate(size, "up"), r.rate(size, "down")
        ru = f"{up / base.rate(size, 'up'):.2f}" if base else "-"
        rd = f"{down / base.rate(size, 'down'):.2f}" if base else "-"
        lines.append(f"{r.name:<20} {up:>13.1f} {ru:>9} {down:>15.1f} {rd:>9}  {len(r.up_s)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size", type=parse_size, default=2 * 1024 * MIB, help="file size, e.g. 2G (default)"
    )
    parser.add_argument("--quick", action="store_true", help="128 MiB, one repetition: a smoke run")
    parser.add_argument(
        "--repeat", type=int, default=3, help="measurements per contender (medians reported)"
    )
    parser.add_argument("--part-size", type=parse_size, default=32 * MIB)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--cache-dir", type=Path, default=compare.DEFAULT_CACHE)
    parser.add_argument("--mlflow-version", default="3.17.2")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args(argv)
    size, repeat = (128 * MIB, 1) if args.quick else (args.size, args.repeat)
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    if unknown := set(names) - set(CONTENDERS):
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    try:
        with stack(with_mlflow="mlflow->mlflow" in names, cache=args.cache_dir.expanduser(),
                   mlflow_version=args.mlflow_version, keep=args.keep) as s:  # fmt: skip
            src, out = s.tmp / "source.bin", s.tmp / "out" / "copy.bin"
            out.parent.mkdir()
            compare.say(f"writing a {size / MIB:.0f} MiB source file")
            write_source(src, size)
            runs: dict[str, Callable[[], tuple[float, float]]] = {
                "direct": lambda: asyncio.run(
                    direct(s.endpoint, src, out, args.part_size, args.parallel)
                ),
                "metricgate": lambda: asyncio.run(
                    through_client(s.metricgate.url, src, out, args.part_size, args.parallel)
                ),
                "mlflow->metricgate": lambda: through_mlflow(
                    s.metricgate.url, src, out, args.part_size
                ),
                "mlflow->mlflow": lambda: through_mlflow(s.mlflow.url, src, out, args.part_size),  # type: ignore[union-attr]
            }
            results = [Result(n) for n in names]
            for i in range(
                repeat
            ):  # round robin: drift on a shared machine hits every contender alike
                for r in results:
                    up, down = runs[r.name]()
                    r.up_s.append(up)
                    r.down_s.append(down)
                    compare.say(
                        f"{r.name} #{i + 1}: up {size / MIB / up:.1f} MiB/s, down {size / MIB / down:.1f} MiB/s"
                    )
                    out.unlink(missing_ok=True)
                    purge(s.endpoint)
    except compare.BenchError as exc:
        print(f"bench_artifacts: {exc}", file=sys.stderr)
        return 1
    print(f"{size / MIB:.0f} MiB file, part {args.part_size // MIB} MiB x {args.parallel} parallel, "
          f"median of {repeat}, SeaweedFS on 127.0.0.1")  # fmt: skip
    print(table(results, size))
    by = {r.name: r for r in results}
    summary: dict[str, Any] = {
        "size_bytes": size, "part_size": args.part_size, "parallel": args.parallel, "repeat": repeat,
        "git": compare.git_describe(REPO),
        "results": {r.name: {"upload_mib_s": round(r.rate(size, "up"), 1),
                             "download_mib_s": round(r.rate(size, "down"), 1),
                             "upload_s": r.up_s, "download_s": r.down_s} for r in results},
    }  # fmt: skip
    if "direct" in by:
        for r in results:
            summary["results"][r.name]["upload_x_direct"] = round(
                r.rate(size, "up") / by["direct"].rate(size, "up"), 3
            )
            summary["results"][r.name]["download_x_direct"] = round(
                r.rate(size, "down") / by["direct"].rate(size, "down"), 3
            )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
