"""Objects in an S3-compatible bucket (AWS S3, MinIO, Ceph), through boto3.

Uploads stream from the spool file with multipart upload (boto3's transfer manager reads the
file part by part, so no object is ever whole in memory); frames and bulk data are ranged
GETs; retrieval reads the response body in chunks. Every call here blocks: the services run
them in the thread pool, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dicomweb_server.services.errors import Unavailable

# Parts of 16 MiB: a 1 GB object is 64 parts, well under S3's 10,000-part limit for any size
# the server accepts (8 GiB by default), and memory per upload stays at a few parts.
PART_SIZE = 16 * 2**20


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    addressing_style: str = "auto"  # "path" for MinIO and Ceph
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 5
    max_pool_connections: int = 50


class BlobStoreError(Unavailable):
    """The bucket cannot be reached or used (503 with Retry-After); the message says why."""


class S3BlobStore:
    def __init__(self, location: S3Location) -> None:
        self._bucket = location.bucket
        self._prefix = location.prefix.strip("/") + "/" if location.prefix.strip("/") else ""
        credentials: dict[str, Any] = {}
        if location.access_key_id and location.secret_access_key:
            credentials = {
                "aws_access_key_id": location.access_key_id,
                "aws_secret_access_key": location.secret_access_key,
            }
        # Otherwise boto3's standard chain: environment, shared files, instance/pod roles.
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=location.endpoint_url,
            region_name=location.region,
            config=Config(
                s3={"addressing_style": location.addressing_style},
                connect_timeout=location.connect_timeout,
                read_timeout=location.read_timeout,
                retries={"max_attempts": location.max_attempts, "mode": "standard"},
                # Many threads share one client (the thread pool, several responses at once).
                max_pool_connections=location.max_pool_connections,
            ),
            **credentials,
        )
        self._transfer = TransferConfig(
            multipart_threshold=PART_SIZE,
            multipart_chunksize=PART_SIZE,
            max_concurrency=4,
            use_threads=True,
        )
        # Named without the endpoint: messages may reach clients and logs (no hosts there).
        self.description = f"bucket {self._bucket}" + (
            f" (prefix {self._prefix})" if self._prefix else ""
        )

    def _key(self, key: str) -> str:
        parts = key.split("/")
        if not key or key.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"blob key {key!r} leaves the store")
        return self._prefix + key

    def put_file(self, key: str, path: Path) -> None:
        try:
            self._client.upload_file(str(path), self._bucket, self._key(key), Config=self._transfer)
        except (BotoCoreError, ClientError) as exc:
            raise BlobStoreError(
                f"the blob store ({self.description}) could not write the object: {exc}"
            ) from exc
        path.unlink(missing_ok=True)

    def sync(self, keys: Sequence[str]) -> None:
        """Nothing to do: an object whose upload has returned is durable in the bucket."""

    def read_cached(self, key: str, offset: int, length: int) -> bytes | None:
        """Never: every read of a bucket is a round trip (made off the event loop)."""
        return None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        return b"".join(self.iter_range(key, offset, length))

    def iter_range(
        self, key: str, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        if length == 0:
            return
        end = "" if length is None else str(offset + length - 1)
        try:
            response = self._client.get_object(
                Bucket=self._bucket, Key=self._key(key), Range=f"bytes={offset}-{end}"
            )
        except (BotoCoreError, ClientError) as exc:
            code = exc.response.get("Error", {}).get("Code") if isinstance(exc, ClientError) else ""
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"object {key} is not in {self.description}") from exc
            raise BlobStoreError(
                f"the blob store ({self.description}) could not read object {key}: {exc}"
            ) from exc
        body = response["Body"]
        received = 0
        try:
            for chunk in body.iter_chunks(chunk_size):
                received += len(chunk)
                yield chunk
        finally:
            body.close()
        if length is not None and received < length:
            raise OSError(f"object {key} is shorter than its index says")

    def delete(self, key: str) -> None:
        try:
            self._client.delete_object(Bucket=self._bucket, Key=self._key(key))
        except (BotoCoreError, ClientError) as exc:
            raise BlobStoreError(
                f"the blob store ({self.description}) could not delete object {key}: {exc}"
            ) from exc

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=self._prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                yield item["Key"][len(self._prefix) :], item["LastModified"].timestamp()

    def check(self) -> None:
        try:
            self._client.head_bucket(Bucket=self._bucket)
        except (BotoCoreError, ClientError) as exc:
            raise BlobStoreError(f"the {self.description} cannot be used: {exc}") from exc

    def close(self) -> None:
        self._client.close()
