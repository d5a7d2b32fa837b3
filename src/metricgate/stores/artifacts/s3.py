"""Artifacts in an S3 bucket (``s3://bucket/prefix``) through aioboto3; any S3-compatible endpoint.

Guarantees, matching the local store:
- ``put`` is atomic: a small body is one PUT, a large one a multipart upload, and S3 shows
  neither until it is complete; a failed or cancelled upload is aborted.
- Memory is bounded whatever the size: ``put`` holds at most one part being filled plus
  ``UPLOAD_CONCURRENCY`` parts in flight; staged parts are spooled to a temp file (hashed on the
  way) and sent from there; reads stream the object in chunks.
- Staged uploads (``stage_*``) are S3 multipart uploads: invisible until CompleteMultipartUpload.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from metricgate.domain.artifacts.paths import normalize_artifact_path
from metricgate.domain.errors import InvalidParameter
from metricgate.domain.tracking.entities import ArtifactEntry
from metricgate.domain.uploads.entities import S3_PART_LIMITS, PartLimits
from metricgate.domain.uploads.rules import (
    check_part_number,
    checksum_mismatch,
    normalize_sha256,
    strip_etag,
)
from metricgate.stores.artifacts.base import StagedPart
from metricgate.stores.artifacts.files import Descriptor
from metricgate.stores.artifacts.parts import spool_hashed
from metricgate.stores.artifacts.s3_client import (
    SpoolReader,
    client_config,
    error_code,
    open_spool,
    s3_errors,
    split_s3_uri,
)

log = logging.getLogger(__name__)

# S3's minimum for every part but the last is 5 MiB; 8 MiB parts reach 78 GiB in 10,000 parts,
# and put() doubles the part size every 2,000 parts so even larger files fit.
DEFAULT_PART_BYTES = 8 * 1024 * 1024
UPLOAD_CONCURRENCY = 2
READ_CHUNK_BYTES = 1024 * 1024
_PARTS_PER_SIZE_STEP = 2000
_MAX_PART_BYTES = 512 * 1024 * 1024


class _PastTheEnd(Exception):
    pass


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")


class _MultipartPut:
    """One ``put`` that outgrew a single PUT: parts go up while the next one is being filled."""

    def __init__(self, store: S3ArtifactStore, key: str, upload_id: str) -> None:
        self._store = store
        self._key = key
        self._upload_id = upload_id
        self._in_flight: set[asyncio.Task[dict[str, Any]]] = set()
        self._done: list[dict[str, Any]] = []
        self.next_part = 1
        self.size = 0

    async def add(self, data: bytes) -> None:
        while len(self._in_flight) >= UPLOAD_CONCURRENCY:
            await self._collect(asyncio.FIRST_COMPLETED)
        task = asyncio.ensure_future(self._upload(self.next_part, data))
        self._in_flight.add(task)
        self.next_part += 1
        self.size += len(data)

    async def _upload(self, number: int, data: bytes) -> dict[str, Any]:
        md5 = await asyncio.to_thread(_md5_b64, data)
        with s3_errors(f"upload of part {number} of '{self._key}'"):
            response = await self._store.client.upload_part(
                Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id,
                PartNumber=number, Body=data, ContentLength=len(data), ContentMD5=md5,
            )  # fmt: skip
        return {"PartNumber": number, "ETag": response["ETag"]}

    async def _collect(self, when: str) -> None:
        done, self._in_flight = await asyncio.wait(self._in_flight, return_when=when)
        for task in done:
            self._done.append(task.result())  # re-raises a failed part

    async def finish(self) -> None:
        if self._in_flight:
            await self._collect(asyncio.ALL_COMPLETED)
        parts = sorted(self._done, key=lambda p: p["PartNumber"])
        with s3_errors(f"completion of '{self._key}'"):
            await self._store.client.complete_multipart_upload(
                Bucket=self._store.bucket, Key=self._key, UploadId=self._upload_id,
                MultipartUpload={"Parts": parts},
            )  # fmt: skip

    def abandon(self) -> None:
        """Synchronous (safe under cancellation): cancel parts, abort the upload in the background."""
        for task in self._in_flight:
            task.cancel()
        self._store.abort_later(self._key, self._upload_id)


class S3ArtifactStore:
    """``ArtifactStore`` on ``s3://bucket/prefix``; see the module docstring for the guarantees."""

    part_limits: PartLimits = S3_PART_LIMITS

    def __init__(
        self, client: Any, bucket: str, prefix: str, *, part_bytes: int = DEFAULT_PART_BYTES
    ) -> None:
        self.client = client
        self.bucket = bucket
        self._prefix = prefix.strip("/")
        self._part_bytes = part_bytes
        self._exit_stack: contextlib.AsyncExitStack | None = None
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(
        cls,
        uri: str,
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        part_bytes: int = DEFAULT_PART_BYTES,
    ) -> S3ArtifactStore:
        """Connect and check the bucket is reachable (fail at start-up, not at the first upload)."""
        import aioboto3

        bucket, prefix = split_s3_uri(uri, "artifact root")
        session = aioboto3.Session(
            aws_access_key_id=access_key, aws_secret_access_key=secret_key, region_name=region
        )
        stack = contextlib.AsyncExitStack()
        client = await stack.enter_async_context(
            session.client(
                "s3", endpoint_url=endpoint_url or None, config=client_config(endpoint_url)
            )
        )
        store = cls(client, bucket, prefix, part_bytes=part_bytes)
        store._exit_stack = stack
        try:
            with s3_errors(f"bucket '{bucket}'"):
                await client.head_bucket(Bucket=bucket)
        except BaseException:
            await stack.aclose()
            raise
        return store

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self._prefix}" if self._prefix else f"s3://{self.bucket}"

    # ------------------------------------------------------------------ keys

    def _key(self, rel: str) -> str:
        return f"{self._prefix}/{rel}" if self._prefix and rel else (self._prefix or rel)

    def _dir_prefix(self, rel: str) -> str:
        key = self._key(rel)
        return key + "/" if key else ""

    def _rel_of(self, key: str) -> str:
        return key[len(self._prefix) + 1 :] if self._prefix else key

    def _part_size(self, number: int) -> int:
        return min(self._part_bytes << ((number - 1) // _PARTS_PER_SIZE_STEP), _MAX_PART_BYTES)

    def abort_later(self, key: str, upload_id: str) -> None:
        task = asyncio.ensure_future(self._abort(key, upload_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=upload_id
            )
        except Exception as exc:  # the GC sweeper retries what is left
            if error_code(exc) != "NoSuchUpload":
                log.warning("could not abort multipart upload of %s: %s", key, exc)

    # ------------------------------------------------------------------ writes

    async def put(self, path: str, chunks: AsyncIterable[bytes]) -> int:
        key = self._key(normalize_artifact_path(path))
        pending: list[bytes] = []
        pending_bytes = 0
        upload: _MultipartPut | None = None
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                pending.append(bytes(chunk))
                pending_bytes += len(chunk)
                number = upload.next_part if upload is not None else 1
                if pending_bytes >= self._part_size(number):
                    if upload is None:
                        upload = await self._start_multipart(key)
                    await upload.add(b"".join(pending))
                    pending, pending_bytes = [], 0
            if upload is None:
                return await self._put_small(key, b"".join(pending))
            if pending:
                await upload.add(b"".join(pending))
            await upload.finish()
            return upload.size
        except BaseException:
            if upload is not None:
                upload.abandon()
            raise

    async def _start_multipart(self, key: str) -> _MultipartPut:
        with s3_errors(f"upload of '{key}'"):
            response = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        return _MultipartPut(self, key, response["UploadId"])

    async def _put_small(self, key: str, data: bytes) -> int:
        md5 = await asyncio.to_thread(_md5_b64, data)
        with s3_errors(f"upload of '{key}'"):
            await self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentMD5=md5)
        return len(data)

    # ------------------------------------------------------------------ reads

    async def size(self, path: str) -> int:
        rel = normalize_artifact_path(path)
        return (await self._head(self.bucket, self._key(rel), f"artifact '{rel}'"))[0]

    async def _head(self, bucket: str, key: str, what: str) -> tuple[int, str | None]:
        with s3_errors(what):
            response = await self.client.head_object(Bucket=bucket, Key=key)
        return int(response["ContentLength"]), strip_etag(response.get("ETag")) or None

    def read(
        self, path: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        rel = normalize_artifact_path(path)
        if start < 0 or (end is not None and end < start):
            raise InvalidParameter(f"Invalid byte range [{start}, {end}) for artifact {rel!r}")
        return self._stream(self.bucket, self._key(rel), start, end, f"artifact '{rel}'")

    async def _stream(
        self, bucket: str, key: str, start: int, end: int | None, what: str
    ) -> AsyncGenerator[bytes, None]:
        if end is not None and end == start:
            await self._head(bucket, key, what)  # still NotFound for a missing object
            return
        args: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if start or end is not None:
            args["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            with s3_errors(what):
                try:
                    response = await self.client.get_object(**args)
                except Exception as exc:
                    if error_code(exc) == "InvalidRange":
                        raise _PastTheEnd from exc
                    raise
        except _PastTheEnd:
            return  # a start at or past the end reads nothing, like a local file
        body = response["Body"]
        try:
            with s3_errors(what):
                async for chunk in body.iter_chunks(READ_CHUNK_BYTES):
                    yield chunk
        finally:
            body.close()

    async def list(self, path: str) -> list[ArtifactEntry]:
        rel = normalize_artifact_path(path, allow_root=True)
        prefix = self._dir_prefix(rel)
        entries: dict[str, ArtifactEntry] = {}
        with s3_errors(f"listing of '{rel}'"):
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = common["Prefix"][len(prefix) :].rstrip("/")
                    if name and "/" not in name:
                        entries[name] = ArtifactEntry(name, True, None)
                for obj in page.get("Contents", []):
                    name = obj["Key"][len(prefix) :]
                    if name and not name.endswith(
                        "/"
                    ):  # "dir/" keys are folder markers of S3 consoles
                        entries.setdefault(name, ArtifactEntry(name, False, int(obj["Size"])))
        return sorted(entries.values(), key=lambda e: e.path)

    # ------------------------------------------------------------------ deletes

    async def delete(self, path: str) -> None:
        rel = normalize_artifact_path(path)
        key = self._key(rel)
        directories = {key + "/"}
        with s3_errors(f"deletion of '{rel}'"):
            await self.client.delete_object(Bucket=self.bucket, Key=key)
            paginator = self.client.get_paginator("list_objects_v2")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=key + "/"):
                objects = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
                for obj in objects:
                    parent = obj["Key"].rsplit("/", 1)[0]
                    while len(parent) > len(key):
                        directories.add(parent + "/")
                        parent = parent.rsplit("/", 1)[0]
                if objects:  # a page holds at most 1,000 keys, DeleteObjects' limit
                    await self.client.delete_objects(
                        Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
                    )
            # Servers with real directories (SeaweedFS) keep listing emptied ones until their
            # "dir/" entries are deleted, deepest first; elsewhere these deletes are no-ops.
            for directory in sorted(directories, key=lambda d: d.count("/"), reverse=True):
                await self.client.delete_object(Bucket=self.bucket, Key=directory)

    # ------------------------------------------------------------------ staged uploads

    def _staged_key(self, path: str) -> tuple[str, str]:
        rel = normalize_artifact_path(path)
        return rel, self._key(rel)

    async def stage_begin(self, path: str) -> str:
        rel, key = self._staged_key(path)
        with s3_errors(f"upload of '{rel}'"):
            response = await self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        return str(response["UploadId"])

    async def stage_part(
        self,
        path: str,
        staging_id: str,
        part_number: int,
        chunks: AsyncIterable[bytes],
        expected_sha256: str | None = None,
    ) -> StagedPart:
        rel, key = self._staged_key(path)
        check_part_number(part_number)
        expected = normalize_sha256(expected_sha256)
        # UploadPart needs its length up front and we verify before anything reaches S3, so the
        # part is spooled to an (already unlinked) temp file: memory stays at one batch.
        # Descriptor: a cancelled request must not close the fd under a worker thread still
        # writing or reading it (the number could be reused by another open file or socket).
        spool = Descriptor(await asyncio.to_thread(open_spool))
        try:
            digest = await spool_hashed(chunks, spool)
            sha256 = digest.sha256.hexdigest()
            if expected is not None and sha256 != expected:
                raise checksum_mismatch(f"part {part_number} of '{rel}'", expected, sha256)
            with s3_errors(f"part {part_number} of '{rel}'"):
                response = await self.client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=staging_id, PartNumber=part_number,
                    Body=SpoolReader(spool), ContentLength=digest.size,
                    ContentMD5=base64.b64encode(digest.md5.digest()).decode("ascii"),
                )  # fmt: skip
        finally:
            spool.release()
        return StagedPart(part_number, digest.size, strip_etag(response.get("ETag")), sha256)

    async def stage_parts(self, path: str, staging_id: str) -> builtins.list[StagedPart]:
        # SeaweedFS lists every version of a re-uploaded part; the newest (LastModified, one-second
        # resolution, then listing order) is the one a resume should trust.
        return [versions[-1] for versions in (await self._part_versions(path, staging_id)).values()]

    async def _part_versions(
        self, path: str, staging_id: str
    ) -> dict[int, builtins.list[StagedPart]]:
        rel, key = self._staged_key(path)
        listed: list[tuple[int, Any, StagedPart]] = []
        with s3_errors(f"staged upload of '{rel}'"):
            paginator = self.client.get_paginator("list_parts")
            async for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=staging_id):
                for part in page.get("Parts", []):
                    staged = StagedPart(
                        int(part["PartNumber"]), int(part["Size"]), strip_etag(part["ETag"]), ""
                    )
                    listed.append((staged.part_number, part.get("LastModified"), staged))
        versions: dict[int, list[StagedPart]] = {}
        for number, _, staged in sorted(
            listed, key=lambda item: (item[0], item[1] is not None, item[1] or 0)
        ):
            versions.setdefault(number, []).append(staged)
        return versions

    async def stage_commit(
        self, path: str, staging_id: str, parts: builtins.list[StagedPart]
    ) -> int:
        rel, key = self._staged_key(path)
        if not parts:
            raise InvalidParameter(f"Cannot complete the upload of '{rel}': no parts were given")
        stored = await self._part_versions(path, staging_id)
        previous = 0
        for part in parts:
            if part.part_number <= previous:
                raise InvalidParameter(
                    f"Parts of '{rel}' must be listed in ascending part-number order"
                )
            previous = part.part_number
            versions = stored.get(part.part_number)
            if not versions:
                raise InvalidParameter(f"Part {part.part_number} of '{rel}' was never uploaded")
            if not any(v.size == part.size and v.etag == strip_etag(part.etag) for v in versions):
                raise InvalidParameter(
                    f"Part {part.part_number} of '{rel}' does not match the stored part"
                )
        listed = [{"PartNumber": p.part_number, "ETag": f'"{strip_etag(p.etag)}"'} for p in parts]
        with s3_errors(f"completion of '{rel}'"):
            await self.client.complete_multipart_upload(
                Bucket=self.bucket, Key=key, UploadId=staging_id, MultipartUpload={"Parts": listed}
            )
        return sum(p.size for p in parts)

    async def stage_abort(self, path: str, staging_id: str) -> None:
        rel = normalize_artifact_path(path, allow_root=True)
        await self._abort(self._key(rel), staging_id)

    async def stage_list(self) -> builtins.list[tuple[str, str, float]]:
        found: list[tuple[str, str, float]] = []
        prefix = self._dir_prefix("")
        with s3_errors("listing of staged uploads"):
            paginator = self.client.get_paginator("list_multipart_uploads")
            async for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    found.append(
                        (
                            self._rel_of(upload["Key"]),
                            upload["UploadId"],
                            upload["Initiated"].timestamp(),
                        )
                    )
        return sorted(found, key=lambda item: item[2])

    # ------------------------------------------------------------------ external objects

    async def head_external(self, uri: str) -> tuple[int, str | None]:
        bucket, key = split_s3_uri(uri, "reference URI")
        return await self._head(bucket, key, f"object {uri[:200]!r}")

    def read_external(
        self, uri: str, start: int = 0, end: int | None = None
    ) -> AsyncGenerator[bytes, None]:
        bucket, key = split_s3_uri(uri, "reference URI")
        if start < 0 or (end is not None and end < start):
            raise InvalidParameter(f"Invalid byte range [{start}, {end}) for {uri[:200]!r}")
        return self._stream(bucket, key, start, end, f"object {uri[:200]!r}")

    async def aclose(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=10)
        if self._exit_stack is not None:
            stack, self._exit_stack = self._exit_stack, None
            await stack.aclose()
