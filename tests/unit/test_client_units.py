"""Pieces of the artifact client that need no server: sizes, part sizing, the resume record and
the byte progress line (its retries are tested against a server in tests/api/test_client_retries.py)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from metricgate.cli.artifacts import parse_size
from metricgate.client.progress import ByteProgress, human_bytes
from metricgate.client.resume import ResumeRecord, ResumeStore, SourceFile
from metricgate.client.upload import MAX_PARTS_PER_FILE, choose_part_size

MIB = 1024 * 1024


def test_sizes_and_part_sizing() -> None:
    assert parse_size("67108864") == 64 * MIB
    assert parse_size("64M") == parse_size("64MiB") == parse_size("64mb") == 64 * MIB
    assert parse_size("2G") == 2048 * MIB
    with pytest.raises(Exception, match="invalid size"):
        parse_size("lots")
    assert choose_part_size(20 * 1024 * MIB, None) == 32 * MIB
    big = 400 * 1024 * 1024 * MIB
    assert big / choose_part_size(big, None) <= MAX_PARTS_PER_FILE
    assert choose_part_size(10, 5 * MIB) == 5 * MIB
    assert human_bytes(512) == "512 B" and human_bytes(3 * MIB / 2) == "1.5 MiB"


def test_resume_record_round_trip_and_change_detection(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    store = ResumeStore(tmp_path / "state", base_url="http://h:1", run_id="r", dest="d", source=src)
    files = [SourceFile("", str(src), 1, 123)]
    assert store.load() is None
    store.save(ResumeRecord("a" * 32, 5 * MIB, files))
    loaded = store.load()
    assert loaded is not None and loaded.upload_id == "a" * 32 and loaded.matches(files)
    assert not loaded.matches([SourceFile("", str(src), 1, 124)])  # touched since: a new session
    other = ResumeStore(
        tmp_path / "state", base_url="http://h:1", run_id="r", dest="other", source=src
    )
    assert other.load() is None
    store.clear()
    assert store.load() is None


def test_progress_line_shows_bytes_rate_and_eta() -> None:
    out = io.StringIO()
    bar = ByteProgress("upload x", stream=out, log_interval_s=0.0)
    bar(0, 100 * MIB)
    bar.started -= 2.0  # as if two seconds had passed
    bar(50 * MIB, 100 * MIB)
    line = out.getvalue().strip().splitlines()[-1]
    assert "50.0 MiB/100.0 MiB" in line and "MiB/s" in line and "ETA 0:0" in line, line
