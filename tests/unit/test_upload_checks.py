"""Pure rules of the upload API: checksums, part counts, destinations, file lists, reference URIs."""

from __future__ import annotations

import base64
import hashlib

import pytest

from metricgate.config import UploadSettings
from metricgate.domain.artifacts.paths import proxied_store_path
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.uploads import rules as checks
from metricgate.domain.uploads.entities import (
    LOCAL_PART_LIMITS,
    S3_PART_LIMITS,
    PartSizes,
    UploadFile,
)
from metricgate.uploads.references import check_reference_uri
from metricgate.uploads.sessions import parse_files

DIGEST = hashlib.sha256(b"abc").digest()


def test_sha256_accepts_hex_and_base64() -> None:
    assert checks.sha256_hex(DIGEST.hex().upper(), "x") == DIGEST.hex()
    assert checks.sha256_hex(base64.b64encode(DIGEST).decode(), "x") == DIGEST.hex()
    assert checks.sha256_hex(None, "x") is None and checks.sha256_hex("", "x") is None
    for bad in ("abc", DIGEST.hex()[:-1], base64.b64encode(DIGEST[:16]).decode(), 5):
        with pytest.raises(InvalidParameter):
            checks.sha256_hex(bad, "x")


def test_content_md5_is_base64_of_16_bytes() -> None:
    digest = hashlib.md5(b"abc").digest()
    assert checks.md5_hex(base64.b64encode(digest).decode()) == digest.hex()
    with pytest.raises(InvalidParameter):
        checks.md5_hex(digest.hex())  # hex is not what Content-MD5 carries


def test_part_size_bounds_and_part_counts() -> None:
    allowed = PartSizes(min_part_bytes=10, max_part_bytes=100)
    assert checks.check_part_size(10, allowed) == 10
    for bad in (9, 101, True, "50", 5.0):
        with pytest.raises(InvalidParameter):
            checks.check_part_size(bad, allowed)
    assert checks.part_count(0, 10, "f") == 1
    assert checks.part_count(10, 10, "f") == 1
    assert checks.part_count(11, 10, "f") == 2
    assert checks.part_count(10 * 10_000, 10, "f") == 10_000
    with pytest.raises(InvalidParameter, match="larger part_size"):
        checks.part_count(10 * 10_000 + 1, 10, "f")


def test_expected_part_sizes() -> None:
    file = UploadFile(0, "", "d", 25, None, "s", 3, False)
    assert [file.expected_part_size(n, 10) for n in (1, 2, 3)] == [10, 10, 5]
    assert file.missing_parts() == [1, 2, 3]
    empty = UploadFile(0, "", "d", 0, None, "s", 1, False)
    assert empty.expected_part_size(1, 10) == 0


def test_run_store_root_of_proxied_uris_only() -> None:
    run = "0123456789abcdef0123456789abcdef"
    assert proxied_store_path(f"mlflow-artifacts:/1/{run}/artifacts") == f"1/{run}/artifacts"
    assert (
        proxied_store_path(f"mlflow-artifacts://host:5000/1/{run}/artifacts")
        == f"1/{run}/artifacts"
    )
    assert (
        proxied_store_path(f"http://h/api/2.0/mlflow-artifacts/artifacts/1/{run}/artifacts")
        == f"1/{run}/artifacts"
    )
    assert proxied_store_path("s3://bucket/elsewhere") is None
    assert proxied_store_path("mlflow-artifacts:/1/../../etc") is None


def test_file_lists() -> None:
    settings = UploadSettings(max_files=3)
    specs = parse_files(
        [{"path": "a/b.bin", "size": 1}, {"path": "c", "size": 0, "sha256": DIGEST.hex()}],
        True,
        settings,
    )
    assert [(s.rel_path, s.size, s.sha256) for s in specs] == [
        ("a/b.bin", 1, None),
        ("c", 0, DIGEST.hex()),
    ]
    assert parse_files([{"size": 4}], False, settings)[0].rel_path == ""
    bad_lists = [
        ([], True), ("x", True), ([{"size": 1}] * 4, True), ([{"size": 1}, {"size": 2}], False),
        ([{"path": "a", "size": 1}, {"path": "a/", "size": 1}], True),  # one file, two spellings
        ([{"path": "a", "size": 1}, {"path": "a/b", "size": 1}], True),  # a file and a dir at once
        ([{"size": 1}], True),  # a directory's files need paths
        ([{"path": "a", "size": True}], True), ([{"path": "a"}], True), (["a"], True),
    ]  # fmt: skip
    for files, directory in bad_lists:
        with pytest.raises(InvalidParameter):
            parse_files(files, directory, settings)


def test_reference_uris_stay_inside_the_allowed_prefixes() -> None:
    allowed = ("s3://bucket/ckpt", "file:///data/models/")
    assert check_reference_uri("s3://bucket/ckpt/a.pt", allowed) == "s3://bucket/ckpt/a.pt"
    assert check_reference_uri("file:///data/models/x/y.bin", allowed)
    refused = [
        "s3://bucket/ckpt-other/a.pt", "s3://bucket/other/a.pt", "s3://other/ckpt/a.pt",
        "s3://bucket/ckpt/../secret", "s3://bucket/ckpt/%2e%2e/secret", "s3://bucket/ckpt//a",
        "file:///data/models/../../etc/passwd", "file:///etc/passwd", "gs://bucket/ckpt/a",
        "http://bucket/ckpt/a", "s3:///ckpt/a", "s3://bucket/ckpt/a?versionId=1", "", None, 3,
    ]  # fmt: skip
    for uri in refused:
        with pytest.raises(InvalidParameter):
            check_reference_uri(uri, allowed)


def test_s3_part_size_bounds() -> None:
    configured = (1024, 10 * 2**30)
    assert checks.part_size_bounds(*configured, LOCAL_PART_LIMITS) == PartSizes(*configured)
    on_s3 = checks.part_size_bounds(*configured, S3_PART_LIMITS)
    assert (on_s3.min_part_bytes, on_s3.max_part_bytes) == (5 * 2**20, 5 * 2**30)
    roomy = (64 * 2**20, 256 * 2**20)
    assert checks.part_size_bounds(*roomy, S3_PART_LIMITS) == PartSizes(*roomy)
