"""Pure validation of upload requests: part sizes and counts, checksums, destination paths."""

from __future__ import annotations

import base64
import binascii
import math
import re
from typing import Any

from metricgate.domain.artifacts.paths import join_artifact_path, normalize_artifact_path
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.uploads.entities import (
    MAX_PART_NUMBER,
    MIN_PART_NUMBER,
    PartLimits,
    PartSizes,
)

MAX_PARTS_PER_FILE = MAX_PART_NUMBER
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def sha256_hex(value: Any, what: str) -> str | None:
    """A SHA-256 given as 64 hex digits or as base64 of the 32 bytes (S3's x-amz-checksum-sha256)."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParameter(f"Invalid {what}: expected a hex or base64 SHA-256 string")
    text = value.strip()
    if _SHA256_HEX.match(text.lower()):
        return text.lower()
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise InvalidParameter(
            f"Invalid {what} {text[:80]!r}: expected 64 hex digits or base64 of 32 bytes"
        )
    return raw.hex()


def md5_hex(value: str | None) -> str | None:
    """Content-MD5 (base64 of the 16-byte digest, RFC 1864) as hex."""
    if value is None or value == "":
        return None
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 16:
        raise InvalidParameter(
            f"Invalid Content-MD5 {value[:80]!r}: expected base64 of a 16-byte MD5 digest"
        )
    return raw.hex()


def part_size_bounds(min_part_bytes: int, max_part_bytes: int, limits: PartLimits) -> PartSizes:
    """The configured part sizes, within what the store can commit: on S3 a configured minimum
    below 5 MiB would accept sessions that can only fail at completion, after the whole upload."""
    lowest = max(min_part_bytes, limits.min_part_bytes)
    highest = max(max_part_bytes, limits.min_part_bytes)
    if limits.max_part_bytes is not None:
        highest = min(highest, limits.max_part_bytes)
    return PartSizes(lowest, highest)


def check_part_size(part_size: Any, allowed: PartSizes) -> int:
    if isinstance(part_size, bool) or not isinstance(part_size, int):
        raise InvalidParameter(
            f"Invalid part_size {part_size!r}: expected an integer number of bytes"
        )
    if part_size < allowed.min_part_bytes:
        raise InvalidParameter(
            f"part_size {part_size} is too small: parts must be at least {allowed.min_part_bytes} bytes "
            "(only a file's last part may be smaller)"
        )
    if part_size > allowed.max_part_bytes:
        raise InvalidParameter(
            f"part_size {part_size} is too large: at most {allowed.max_part_bytes} bytes"
        )
    return part_size


def part_count(size: int, part_size: int, what: str, max_parts: int = MAX_PARTS_PER_FILE) -> int:
    """Parts a file of ``size`` bytes takes; an empty file is one empty part."""
    count = max(1, math.ceil(size / part_size))
    if count > max_parts:
        raise InvalidParameter(
            f"{what} needs {count} parts of {part_size} bytes; at most {max_parts} parts "
            "are allowed, use a larger part_size"
        )
    return count


def check_file_size(size: Any, what: str) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise InvalidParameter(f"Invalid size {size!r} for {what}: expected a non-negative integer")
    return size


def destination(run_root: str, rel_path: str | None, *, allow_root: bool) -> tuple[str, str]:
    """(normalised path relative to the run's root, store path)."""
    rel = normalize_artifact_path(rel_path or "", allow_root=allow_root)
    return rel, join_artifact_path(run_root, rel)


def check_part_number(part_number: int) -> int:
    if isinstance(part_number, bool) or not isinstance(part_number, int):
        raise InvalidParameter(f"Invalid part number {part_number!r}: expected an integer")
    if not MIN_PART_NUMBER <= part_number <= MAX_PART_NUMBER:
        raise InvalidParameter(
            f"Invalid part number {part_number}: must be between {MIN_PART_NUMBER} and {MAX_PART_NUMBER}"
        )
    return part_number


def normalize_sha256(value: str | None) -> str | None:
    """Lower-case hex SHA-256, or None; anything else is a client mistake."""
    if value is None:
        return None
    lowered = value.strip().lower()
    if not _SHA256_HEX.match(lowered):
        raise InvalidParameter(f"Invalid SHA-256 {value[:80]!r}: expected 64 hexadecimal digits")
    return lowered


def checksum_mismatch(what: str, expected: str, actual: str) -> InvalidParameter:
    return InvalidParameter(
        f"Checksum mismatch for {what}: expected SHA-256 {expected}, received data has {actual}"
    )


def strip_etag(etag: str | None) -> str:
    """S3 returns ETags in double quotes; the contract keeps the bare value."""
    return (etag or "").strip().strip('"')
