"""What the artifact client raises: one base class, so a training script can catch it in one place."""

from __future__ import annotations


class ClientError(Exception):
    """The server refused a request (a 4xx), or it could not be reached even after retries."""

    def __init__(
        self, message: str, *, status: int | None = None, error_code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code


class ServerUnavailable(ClientError):
    """Connection errors, 5xx or 429 that outlasted every retry."""


class ChecksumMismatch(ClientError):
    """Downloaded bytes whose SHA-256 is not the one recorded for the artifact (nothing is kept)."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"SHA-256 mismatch for {path}: expected {expected}, got {actual}; the download was discarded"
        )
        self.path, self.expected, self.actual = path, expected, actual
