from __future__ import annotations

import pytest

from metricgate.domain.artifacts.paths import (
    MAX_PATH_BYTES,
    MAX_SEGMENT_BYTES,
    artifact_basename,
    join_artifact_path,
    normalize_artifact_path,
)
from metricgate.domain.errors import InvalidParameter


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a.txt", "a.txt"),
        ("1/abc/artifacts/model/MLmodel", "1/abc/artifacts/model/MLmodel"),
        ("1/abc/artifacts/dir/", "1/abc/artifacts/dir"),  # one trailing slash: a directory spelling
        ("...", "..."),  # not a traversal segment
        ("a/..b/c..", "a/..b/c.."),
        (".hidden/file", ".hidden/file"),
        ("with space/ümlaut.txt", "with space/ümlaut.txt"),
        ("50%.txt", "50%.txt"),  # a literal percent that decodes to nothing
        ("a%2Fb.txt", "a%2Fb.txt"),  # decodes to a harmless 'a/b.txt': kept as written
        ("~/x", "~/x"),  # never expanded, so just a name
    ],
)
def test_normal_forms_are_kept(raw: str, expected: str) -> None:
    assert normalize_artifact_path(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "..",
        "../etc/passwd",
        "a/../../etc",
        "a/..",
        "a/../b",
        ".",
        "./a",
        "a/./b",
        "/etc/passwd",
        "/",
        "//server/share",
        "a//b",
        "a/b//",
        "a\\..\\b",
        "..\\windows",
        "a\\b",
        "C:/Windows",
        "c:evil",
        "a\x00b",
        "a\nb",
        "a\x7fb",
        "%2e%2e/etc",
        "%2E%2E%2Fetc",
        "..%2fetc",
        "a/%2e%2e%2f%2e%2e/etc",
        "%2fetc/passwd",
        "%252e%252e/etc",  # double-encoded
        "a%5c..%5cb",
        "a%00b",
        "a%2f%2fb",
        "%2e/a",
        "file:///etc/passwd",
        "\ud800",  # lone surrogate
    ],
)
def test_traversal_and_malformed_paths_are_rejected(raw: str) -> None:
    with pytest.raises(InvalidParameter) as info:
        normalize_artifact_path(raw)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert "Invalid artifact path" in info.value.message


def test_error_message_escapes_control_characters() -> None:
    with pytest.raises(InvalidParameter) as info:
        normalize_artifact_path("bad\x00name")
    assert "\x00" not in info.value.message
    assert "NUL" in info.value.message


def test_empty_path_needs_allow_root() -> None:
    with pytest.raises(InvalidParameter):
        normalize_artifact_path("")
    with pytest.raises(InvalidParameter):
        normalize_artifact_path(None)
    assert normalize_artifact_path("", allow_root=True) == ""
    assert normalize_artifact_path(None, allow_root=True) == ""


def test_root_spelled_as_slash_is_still_absolute() -> None:
    with pytest.raises(InvalidParameter):
        normalize_artifact_path("/", allow_root=True)


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidParameter):
        normalize_artifact_path(123)  # type: ignore[arg-type]


def test_length_limits() -> None:
    longest_segment = "s" * MAX_SEGMENT_BYTES
    assert normalize_artifact_path(longest_segment) == longest_segment
    with pytest.raises(InvalidParameter, match="segment"):
        normalize_artifact_path("s" * (MAX_SEGMENT_BYTES + 1))
    # Multi-byte characters count in bytes, not characters.
    with pytest.raises(InvalidParameter, match="segment"):
        normalize_artifact_path("é" * (MAX_SEGMENT_BYTES // 2 + 1))
    at_limit = "/".join(["d" * 100] * 10) + "/" + "f" * (MAX_PATH_BYTES - 1010)
    assert len(at_limit.encode()) == MAX_PATH_BYTES
    assert normalize_artifact_path(at_limit) == at_limit
    with pytest.raises(InvalidParameter, match="longer than"):
        normalize_artifact_path(at_limit + "f")


def test_join_and_basename() -> None:
    assert join_artifact_path("1/run/artifacts", "") == "1/run/artifacts"
    assert join_artifact_path("", "sub") == "sub"
    assert join_artifact_path("a", "b/c") == "a/b/c"
    assert artifact_basename("a/b/c.txt") == "c.txt"
    assert artifact_basename("c.txt") == "c.txt"
