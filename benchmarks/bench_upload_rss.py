#!/usr/bin/env python3
"""Peak RSS of the metricgate gateway during one very large upload (default 20 GiB; ``--quick``: 1 GiB).

The bytes never touch the client's disk: parts are generated on the fly (a random 8 MiB block with
the part's offset stamped into every block, so no two blocks are equal) and sent through
metricgate's resumable upload API (``metricgate.client.http.Api``: retries, per-part SHA-256)
``--parallel`` at a time, into the same stack as ``bench_artifacts.py`` (private PostgreSQL, Redis,
SeaweedFS; ``--store local`` puts the artifacts on the local filesystem instead). While it runs,
the gateway's ``VmRSS`` is sampled from ``/proc/PID/status`` and its ``VmHWM`` (the kernel's own
peak) read at the end. Target: peak < 300 MB, whatever the size.

    .venv/bin/python benchmarks/bench_upload_rss.py --quick
    .venv/bin/python benchmarks/bench_upload_rss.py --size 20G
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO / "benchmarks"), str(REPO / "tests")]

import bench_artifacts  # noqa: E402  (the stack: PostgreSQL, Redis, SeaweedFS, metricgate on S3)
import compare  # noqa: E402
from metricgate.cli.artifacts import parse_size  # noqa: E402
from metricgate.client.http import Api  # noqa: E402
from metricgate.client.progress import ByteProgress  # noqa: E402
from metricgate.client.sources import sha256_hex  # noqa: E402
from metricgate.client.upload import UPLOADS  # noqa: E402

MIB = 1024 * 1024


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class RssSampler(threading.Thread):
    """VmRSS of one process every ``interval_s`` (a thread: sampling must not wait on the upload)."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(proc_kib(self.pid, "VmRSS"))
            self.stop.wait(self.interval_s)


def make_part(block: bytes, offset: int, length: int) -> bytes:
    out = bytearray(length)
    for at in range(0, length, len(block)):
        piece = (offset + at).to_bytes(8, "little") + block[8:]
        out[at : at + len(piece)] = piece[: length - at]
    return bytes(out)


async def generated_upload(
    url: str, run_id: str, size: int, part: int, parallel: int, progress: ByteProgress
) -> str:
    block = random.Random(1).randbytes(8 * MIB)
    async with Api(url, connections=parallel + 2) as api:
        session = await api.json("POST", UPLOADS, body={"run_id": run_id, "path": "stream.bin", "part_size": part,
                                                         "files": [{"size": size}]})  # fmt: skip
        upload_id = session["upload_id"]
        numbers = iter(range(1, session["files"][0]["part_count"] + 1))
        done = 0

        async def worker() -> None:
            nonlocal done
            for n in numbers:
                offset = (n - 1) * part
                data = await asyncio.to_thread(make_part, block, offset, min(part, size - offset))
                sha = await asyncio.to_thread(sha256_hex, data)
                await api.put_bytes(f"{UPLOADS}/{upload_id}/files/0/parts/{n}", data,
                                    {"X-Checksum-SHA256": sha}, what=f"part {n}")  # fmt: skip
                done += len(data)
                progress(done, size)

        await asyncio.gather(*(worker() for _ in range(parallel)))
        final = await api.json("POST", f"{UPLOADS}/{upload_id}/complete")
        while final["state"] == "committing":
            await asyncio.sleep(0.5)
            final = await api.json("GET", f"{UPLOADS}/{upload_id}")
        if final["state"] != "committed":
            raise compare.BenchError(f"upload ended {final['state']}: {final.get('failure')}")
        return upload_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default=20 * 1024 * MIB,
        help="bytes to upload, e.g. 20G (default)",
    )
    parser.add_argument("--quick", action="store_true", help="1 GiB")
    parser.add_argument("--part-size", type=parse_size, default=64 * MIB)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--store", choices=("s3", "local"), default="s3")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    size = 1024 * MIB if args.quick else args.size
    try:
        with bench_artifacts.stack(with_mlflow=False, cache=compare.DEFAULT_CACHE, mlflow_version="",
                                   keep=args.keep, local_store=args.store == "local") as s:  # fmt: skip
            pid = s.metricgate.proc.pid
            run_id = bench_artifacts.new_run(s.metricgate.url)
            baseline = proc_kib(pid, "VmRSS")
            sampler = RssSampler(pid)
            sampler.start()
            progress = ByteProgress("upload (generated)", enabled=args.progress)
            started = time.perf_counter()
            try:
                asyncio.run(
                    generated_upload(
                        s.metricgate.url, run_id, size, args.part_size, args.parallel, progress
                    )
                )
            finally:
                sampler.stop.set()
                sampler.join()
            seconds = time.perf_counter() - started
            progress.close("committed")
            hwm = proc_kib(pid, "VmHWM")
            if args.store == "s3":
                bench_artifacts.purge(s.endpoint)
    except compare.BenchError as exc:
        print(f"bench_upload_rss: {exc}", file=sys.stderr)
        return 1
    samples = sorted(sampler.samples)
    print(f"{size / MIB:,.0f} MiB generated upload to the {args.store} store, part {args.part_size // MIB} MiB "
          f"x {args.parallel} parallel, {seconds:.0f} s ({size / MIB / seconds:.0f} MiB/s)")  # fmt: skip
    median_kib = samples[len(samples) // 2]
    print(f"gateway RSS: before {baseline / 1024:.0f} MiB, median {median_kib / 1024:.0f} MiB, "
          f"max sampled {samples[-1] / 1024:.0f} MiB, peak (VmHWM) {hwm / 1024:.0f} MiB  "
          "(target < 300 MB)")  # fmt: skip
    print(json.dumps({
        "size_bytes": size, "store": args.store, "part_size": args.part_size, "parallel": args.parallel,
        "seconds": round(seconds, 1), "rss_before_kib": baseline, "rss_median_kib": samples[len(samples) // 2],
        "rss_max_sampled_kib": samples[-1], "vm_hwm_kib": hwm, "samples": len(samples),
        "peak_mb": round(hwm * 1024 / 1e6, 1), "target_met": hwm * 1024 < 300e6,
    }))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
