"""Client side of metricgate's large-artifact support, for training scripts and the CLI.

    from metricgate.client import upload, download
    upload("ckpt/", run_id, "checkpoints/step-1000", url="http://127.0.0.1:5000")
    download(run_id, "checkpoints/step-1000", "/tmp/restore", url="http://127.0.0.1:5000")

``upload`` resumes an interrupted upload of the same source to the same run and destination;
``download`` verifies the SHA-256 ``upload`` recorded. Both have ``*_async`` variants.
"""

from metricgate.client.download import DownloadResult, download, download_async
from metricgate.client.errors import ChecksumMismatch, ClientError, ServerUnavailable
from metricgate.client.upload import UploadResult, upload, upload_async

__all__ = [
    "ChecksumMismatch",
    "ClientError",
    "DownloadResult",
    "ServerUnavailable",
    "UploadResult",
    "download",
    "download_async",
    "upload",
    "upload_async",
]
