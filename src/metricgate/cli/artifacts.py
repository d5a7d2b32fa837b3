"""``metricgate artifacts upload|download``: large artifacts from a shell, resumable and verified.

Exit codes: 0 done; 1 the server refused or could not be reached (after retries); 2 bad usage or a
local path problem; 3 a downloaded file failed its SHA-256 check (nothing kept); 130 interrupted
(re-run the same upload command to resume it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
from pathlib import Path

from metricgate.cli.http import DEFAULT_URL, server_url
from metricgate.client.download import DEFAULT_CHUNK_SIZE, download_async
from metricgate.client.errors import ChecksumMismatch, ClientError, ServerUnavailable
from metricgate.client.progress import ByteProgress, human_bytes
from metricgate.client.upload import upload_async

_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b?)\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``67108864``, ``64M``, ``64MiB``, ``1g``: binary multiples (parts are sized in MiB)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"invalid size {text!r}: e.g. 67108864, 64M or 64MiB")
    return int(match.group(1)) << (10 * " kmgt".index(match.group(2).lower() or " "))


def add_artifacts_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    artifacts = sub.add_parser(
        "artifacts", help="upload or download large run artifacts (resumable, verified)"
    )
    commands = artifacts.add_subparsers(
        dest="artifacts_command", required=True, metavar="SUBCOMMAND"
    )

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--run", dest="run_id", required=True, help="run id")
        parser.add_argument(
            "--url", help=f"server URL (default: $MLFLOW_TRACKING_URI, else {DEFAULT_URL})"
        )
        parser.add_argument(
            "--parallel", type=int, default=4, help="requests in flight (default 4)"
        )
        parser.add_argument(
            "--no-progress", dest="progress", action="store_false", help="no progress bar on stderr"
        )
        parser.add_argument(
            "--json", action="store_true", help="print the result as one JSON line on stdout"
        )

    up = commands.add_parser(
        "upload", help="upload a file or a directory (one all-or-nothing session)"
    )
    up.add_argument("path", help="local file or directory")
    common(up)
    up.add_argument("--dest", help="artifact path in the run (default: the file or directory name)")
    up.add_argument(
        "--part-size",
        type=parse_size,
        help="part size, e.g. 64M (default 32 MiB; server limits apply)",
    )
    up.add_argument(
        "--server-verify",
        action="store_true",
        help="hash every file first and have the server verify the assembled file at completion",
    )
    up.add_argument(
        "--state-dir",
        type=Path,
        help="where resume records live (default ~/.cache/metricgate/uploads)",
    )

    down = commands.add_parser(
        "download", help="download a run artifact (file or directory) with parallel ranges"
    )
    down.add_argument("artifact_path", help="artifact path in the run")
    down.add_argument(
        "dest", nargs="?", default=".", help="local directory, or file name for a file (default .)"
    )
    common(down)
    down.add_argument(
        "--chunk-size", type=parse_size, default=DEFAULT_CHUNK_SIZE, help="bytes per Range request"
    )
    down.add_argument(
        "--sha256", help="expected SHA-256 (default: the one recorded at upload, if any)"
    )
    down.add_argument(
        "--fsync", action="store_true", help="flush each file to disk before renaming it into place"
    )


def run_artifacts(args: argparse.Namespace) -> int:
    url = server_url(args.url)
    if not url.startswith(("http://", "https://")):
        print(f"metricgate: the server URL must be http(s)://, got {url!r}", file=sys.stderr)
        return 2
    verb = args.artifacts_command
    label = Path(args.path).name if verb == "upload" else args.artifact_path
    bar = ByteProgress(f"{verb} {label}", enabled=args.progress)
    try:
        if verb == "upload":
            path = Path(args.path)
            if not path.exists():
                print(f"metricgate: {path}: no such file or directory", file=sys.stderr)
                return 2
            result = asyncio.run(upload_async(
                path, args.run_id, args.dest, url=url, part_size=args.part_size, parallel=args.parallel,
                progress=bar, state_dir=args.state_dir, verify_on_server=args.server_verify,
            ))  # fmt: skip
            bar.close("committed")
            summary = (f"uploaded {human_bytes(result.total_bytes)} to run {result.run_id} as {result.path!r}: "
                       f"{len(result.parts_sent)} of {result.parts_total} parts sent"
                       + (" (resumed)" if result.resumed else ""))  # fmt: skip
            payload = result.to_json()
            for warning in result.warnings:
                print(f"metricgate: warning: {warning}", file=sys.stderr)
        else:
            result_d = asyncio.run(download_async(
                args.run_id, args.artifact_path, args.dest, url=url, parallel=args.parallel,
                chunk_size=args.chunk_size, progress=bar, sha256=args.sha256, fsync=args.fsync,
            ))  # fmt: skip
            bar.close("done")
            unverified = [f.artifact_path for f in result_d.files if not f.verified]
            summary = (
                f"downloaded {human_bytes(result_d.total_bytes)} ({len(result_d.files)} files) "
                f"to {result_d.local_path}"
            )
            summary += (
                f"; {len(unverified)} without a recorded SHA-256"
                if unverified
                else "; SHA-256 verified"
            )
            payload = result_d.to_json()
    except ChecksumMismatch as exc:
        _end_bar(bar)
        print(f"metricgate: {exc}", file=sys.stderr)
        return 3
    except ClientError as exc:
        _end_bar(bar)
        print(f"metricgate: {exc}", file=sys.stderr)
        return 1 if exc.status is not None or isinstance(exc, ServerUnavailable) else 2
    except KeyboardInterrupt:
        _end_bar(bar)
        print("metricgate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(payload))
    else:
        print(summary)
    return 0


def _end_bar(bar: ByteProgress) -> None:
    if bar.enabled and bar.is_tty:
        bar.stream.write("\n")
        bar.stream.flush()
