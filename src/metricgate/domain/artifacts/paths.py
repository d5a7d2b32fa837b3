"""Validation and normalisation of artifact paths; pure, so every store shares one set of rules.

An artifact path is relative to the artifact root and '/'-separated, e.g. ``1/<run>/artifacts/a.txt``.
Paths arrive from URLs and query strings, so anything that could climb out of the root, or
that a filesystem or object store could read differently from us, is refused here rather than
in each store.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlparse

from metricgate.domain.errors import InvalidParameter

# S3 caps keys at 1024 bytes; using the same cap keeps paths portable between stores.
MAX_PATH_BYTES = 1024
# NAME_MAX on every common filesystem.
MAX_SEGMENT_BYTES = 255
# The HTTP layer decodes once; we decode a few more times only to *detect* traversal that a
# second decoder (a proxy, an object-store SDK) could turn into '..' or '/'.
_MAX_DECODE_ROUNDS = 4

_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:")


def _shown(path: str) -> str:
    """The path as it may appear in an error message: bounded and with control chars escaped."""
    return ascii(path[:200]) if len(path) > 200 else ascii(path)


def _reject(path: str, reason: str) -> InvalidParameter:
    return InvalidParameter(f"Invalid artifact path {_shown(path)}: {reason}")


def _check_characters(original: str, path: str) -> None:
    if "\x00" in path:
        raise _reject(original, "it contains a NUL byte")
    if _CONTROL_CHARS.search(path):
        raise _reject(original, "it contains control characters")
    if "\\" in path:
        # Backslash is a separator on Windows and in some object-store tools: '..\\x' climbs.
        raise _reject(original, "backslashes are not allowed")


def _check_shape(original: str, path: str) -> list[str]:
    """Check one spelling of the path and return its segments."""
    _check_characters(original, path)
    if path.startswith("/"):
        raise _reject(original, "it must be relative to the artifact root, not absolute")
    if _WINDOWS_DRIVE.match(path):
        raise _reject(original, "it must be relative to the artifact root, not a drive path")
    segments = path.split("/")
    for segment in segments:
        if segment == "..":
            raise _reject(original, "'..' segments are not allowed")
        if segment == ".":
            raise _reject(original, "'.' segments are not allowed")
        if segment == "":
            raise _reject(original, "empty segments ('//') are not allowed")
    return segments


def _check_decoded_forms(original: str, path: str) -> None:
    """Refuse paths that turn into traversal once percent-decoded again."""
    current = path
    for _ in range(_MAX_DECODE_ROUNDS):
        decoded = unquote(current)
        if decoded == current:
            return
        try:
            _check_shape(original, decoded)
        except InvalidParameter:
            raise _reject(original, "it contains percent-encoded traversal or separators") from None
        current = decoded


def _check_lengths(original: str, segments: list[str]) -> None:
    try:
        encoded = [segment.encode("utf-8") for segment in segments]
    except UnicodeEncodeError:
        # Lone surrogates: no filesystem or object store can name them consistently.
        raise _reject(original, "it is not valid UTF-8") from None
    if sum(len(e) for e in encoded) + len(encoded) - 1 > MAX_PATH_BYTES:
        raise _reject(original, f"it is longer than {MAX_PATH_BYTES} bytes")
    for segment in encoded:
        if len(segment) > MAX_SEGMENT_BYTES:
            raise _reject(original, f"a segment is longer than {MAX_SEGMENT_BYTES} bytes")


def normalize_artifact_path(path: str | None, *, allow_root: bool = False) -> str:
    """The canonical form of ``path`` ('a/b/c'), or '' for the root when ``allow_root``.

    One trailing '/' is tolerated (directory spellings from clients and the UI); every other
    irregularity is an ``InvalidParameter`` because silently "fixing" it could make two
    different spellings address the same file in one store and different files in another.
    """
    if path is None:
        path = ""
    if not isinstance(path, str):
        raise InvalidParameter(
            f"Invalid artifact path: expected a string, got {type(path).__name__}"
        )
    if path == "":
        if allow_root:
            return ""
        raise InvalidParameter(
            "Invalid artifact path '': a path relative to the artifact root is required"
        )
    # The trailing slash is stripped before the shape check so that '/' alone stays absolute.
    candidate = path[:-1] if path.endswith("/") and len(path) > 1 else path
    segments = _check_shape(path, candidate)
    _check_decoded_forms(path, candidate)
    _check_lengths(path, segments)
    return "/".join(segments)


def join_artifact_path(*parts: str) -> str:
    """Join already-normalised paths; empty parts (the root) are skipped."""
    return "/".join(part for part in parts if part)


def artifact_basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


# Where MLflow's proxied artifact API lives in http(s) spellings of a run's artifact URI.
PROXY_ENDPOINT = "/mlflow-artifacts/artifacts"


def proxied_store_path(artifact_uri: str) -> str | None:
    """The store path behind a proxied artifact URI, or None when this server does not serve it:
    ``mlflow-artifacts:/1/<run>/artifacts`` (host optional) and
    ``http(s)://host/.../mlflow-artifacts/artifacts/1/<run>/artifacts`` both map to
    ``1/<run>/artifacts``; anything that would climb out of the root is None too."""
    parsed = urlparse(artifact_uri)
    if parsed.scheme == "mlflow-artifacts":
        tail = parsed.path
    elif parsed.scheme in ("http", "https") and PROXY_ENDPOINT in parsed.path:
        tail = parsed.path.split(PROXY_ENDPOINT, 1)[1]
    else:
        return None
    try:
        return normalize_artifact_path(tail.lstrip("/"), allow_root=True)
    except InvalidParameter:
        return None  # a URI we did not write; nothing we could serve safely
