"""`metricgate bench --quick` against a real metricgate server: every accepted point is read back
exactly, with no errors."""

from __future__ import annotations

import json
import subprocess
import sys

import aiohttp
import pytest

from metricgate.bench.loadgen import BulkUnsupported, bulk_counts


@pytest.mark.parametrize("read", ["auto", "history"])
def test_quick_bench_against_live_server(live_server: str, read: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "metricgate",
        "bench",
        "--url",
        live_server,
        "--quick",
        "--workload",
        "a,b",
    ]
    cmd += ["--no-progress", "--visible-timeout-s", "30", "--visible-read", read]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert "accepted pts/s" in lines[0]  # the table comes first, the JSON line last
    report = json.loads(lines[-1])
    results = report["results"]
    assert [(r["workload"], r["concurrency"]) for r in results] == [
        ("a-quick", 8),
        ("a-quick", 32),
        ("b-quick", 5),
    ]
    for r in results:
        assert r["errors"] == {} and r["error_count"] == 0, r
        assert r["requests_sent"] == r["requests_ok"] == r["requests_planned"]
        assert r["points_accepted"] == r["points_planned"] == r["runs"] * r["steps"] * r["keys"]
        assert r["visible_checked"] and r["visible_complete"], r
        assert r["missing_points"] == 0 and r["extra_points"] == 0
        if read == "history":
            assert r["visible_via"] == "history" and r["visible_reads"] >= r["runs"] * r["keys"]
        else:  # metricgate serves get-history-bulk-interval: one read per key for <= 100 runs
            assert (
                r["visible_via"] == "bulk"
                and r["keys"] <= r["visible_reads"] < r["runs"] * r["keys"]
            )
        assert r["accepted_pts_s"] > 0 and r["visible_pts_s"] > 0
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
        assert not r["capped"]


async def test_bulk_read_detects_a_server_without_the_endpoint(live_server: str) -> None:
    # A server that does not serve get-history-bulk-interval (404 here) makes the read-back fall
    # back to get-history instead of polling forever.
    async with aiohttp.ClientSession() as session:
        with pytest.raises(BulkUnsupported):
            await bulk_counts(session, live_server + "/no-such-prefix", ["0" * 32], "m")
