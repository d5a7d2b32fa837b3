"""The aioboto3 client behind ``S3ArtifactStore``, and how S3's errors map onto metricgate's.

Credentials and region come from the usual AWS sources (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, profiles, instance roles) unless given
explicitly; only the endpoint URL is metricgate configuration, so no secret is ever in a
metricgate setting or file.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote, urlparse

from metricgate.domain.errors import InvalidParameter, MetricgateError, NotFound, Unavailable
from metricgate.stores.artifacts.files import Descriptor

log = logging.getLogger(__name__)

# Client-side mistakes S3 reports for multipart work (wrong ETag, order, size, digest).
_CLIENT_MISTAKES = {
    "InvalidPart",
    "InvalidPartOrder",
    "EntityTooSmall",
    "EntityTooLarge",
    "BadDigest",
    "InvalidDigest",
    "InvalidArgument",
    "InvalidRequest",
}
_MISSING = {"NoSuchKey", "NoSuchUpload", "NotFound", "404"}
_REFUSED = {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403", "ExpiredToken"}


def client_config(endpoint_url: str | None) -> Any:
    from botocore.config import Config

    return Config(
        # A custom endpoint (SeaweedFS, MinIO, moto) serves buckets by path, not by host name.
        s3={
            "addressing_style": "path" if endpoint_url else "auto",
            # We send Content-MD5 computed while the bytes streamed in; SHA-256-signing the
            # payload as well would make botocore re-read every part on the event loop.
            "payload_signing_enabled": False,
        },
        # Same reason: no extra CRC pass over bodies we have already hashed (MD5 is verified).
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        max_pool_connections=64,
        connect_timeout=10,
        read_timeout=300,
    )


def split_s3_uri(uri: str, what: str = "S3 URI") -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ("bucket", "some/prefix") (prefix without slashes at the ends)."""
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidParameter(f"Invalid {what} {uri[:200]!r}: expected s3://bucket/key")
    return parsed.netloc, unquote(parsed.path).strip("/")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code or (str(status) if status else "")


def translate(exc: BaseException, what: str) -> MetricgateError:
    """An S3/botocore failure as the metricgate error the API renders."""
    from botocore.exceptions import (
        ClientError,
        HTTPClientError,
        NoCredentialsError,
        PartialCredentialsError,
    )
    from botocore.exceptions import (
        ConnectionError as BotoConnectionError,
    )

    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return MetricgateError(
            "The server has no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
            "(or AWS_PROFILE, or run with an instance role)"
        )
    if isinstance(exc, ClientError):
        code = error_code(exc)
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        if code in _MISSING:
            return NotFound(f"No such {what}")
        if code in _CLIENT_MISTAKES:
            return InvalidParameter(f"{what}: {message} ({code})")
        if code in _REFUSED:
            # Our credentials, not the caller's: a server-side configuration problem.
            log.error("S3 refused %s: %s %s", what, code, message)
            return MetricgateError(
                f"The artifact store refused access ({code}); check the server's S3 credentials"
            )
        if code in ("SlowDown", "ServiceUnavailable", "503", "500", "InternalError"):
            return Unavailable(
                f"The artifact store is unavailable ({code}); retry later", retry_after_s=2
            )
        log.error("S3 error on %s: %s %s", what, code, message)
        return MetricgateError(f"The artifact store failed on {what} ({code})")
    if isinstance(exc, (BotoConnectionError, HTTPClientError, OSError)):
        log.warning("S3 unreachable on %s: %s", what, exc)
        return Unavailable("The artifact store cannot be reached; retry later", retry_after_s=2)
    return MetricgateError(f"The artifact store failed on {what}")


@contextlib.contextmanager
def s3_errors(what: str) -> Iterator[None]:
    """Re-raise botocore failures inside the block as metricgate errors (ours pass through)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except MetricgateError:
        raise
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what) from exc


def open_spool() -> int:
    """A temp file (in $TMPDIR) that is unlinked at once: nothing to clean up after a crash."""
    fd, path = tempfile.mkstemp(prefix="metricgate-part-")
    os.unlink(path)
    return fd


class SpoolReader(io.RawIOBase):
    """A spooled part as a seekable request body, read with ``pread`` through its Descriptor.

    aiohttp reads request bodies in executor threads and botocore seeks back to 0 to retry;
    positional reads through the Descriptor keep a late read from touching a reused fd.
    """

    def __init__(self, spool: Descriptor) -> None:
        super().__init__()
        self._spool = spool
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            self._position = offset
        elif whence == io.SEEK_CUR:
            self._position += offset
        else:
            self._position = self._spool.call(os.fstat).st_size + offset
        return self._position

    def readinto(self, buffer: Any) -> int:
        data = self._spool.call(os.pread, len(buffer), self._position)
        buffer[: len(data)] = data
        self._position += len(data)
        return len(data)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self._spool.call(os.fstat).st_size - self._position
        data = self._spool.call(os.pread, size, self._position)
        self._position += len(data)
        return data
