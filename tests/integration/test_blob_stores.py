"""The blob store port on its own, for each adapter: the filesystem on a real folder and S3
on a real S3-protocol server on loopback (moto), through the same contract."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from dicomweb_server.blobs.filesystem import FilesystemBlobStore
from dicomweb_server.blobs.s3 import S3BlobStore, S3Location
from dicomweb_server.services.ports import BlobStore
from tests.conftest import S3_ACCESS, new_bucket

KEY = "1.2.3/1.2.3.4/1.2.3.4.5.abc123.dcm"


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "filesystem":
        blobs: BlobStore = FilesystemBlobStore(tmp_path / "objects")
    else:
        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"blobs-{uuid.uuid4().hex[:12]}"
        new_bucket(endpoint, bucket)
        blobs = S3BlobStore(
            S3Location(
                bucket,
                prefix="archive",
                endpoint_url=endpoint,
                region="us-east-1",
                access_key_id=S3_ACCESS["s3_access_key_id"],
                secret_access_key=S3_ACCESS["s3_secret_access_key"],
                addressing_style="path",
            )
        )
    try:
        yield blobs
    finally:
        blobs.close()


def _file(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / f"part-{uuid.uuid4().hex}"
    path.write_bytes(data)
    return path


def test_the_contract_put_read_iterate_list_delete(store: BlobStore, tmp_path: Path) -> None:
    data = bytes(range(256)) * 5000  # 1.25 MB: more than one chunk
    store.check()
    before = time.time() - 5
    store.put_file(KEY, _file(tmp_path, data))
    assert store.read_range(KEY, 10, 5) == data[10:15]
    assert b"".join(store.iter_range(KEY, 100, 700_000, chunk_size=65536)) == data[100:700_100]
    assert b"".join(store.iter_range(KEY)) == data
    assert b"".join(store.iter_range(KEY, len(data) - 3)) == data[-3:]
    listed = dict(store.iter_keys())
    assert list(listed) == [KEY] and listed[KEY] >= before
    store.delete(KEY)
    store.delete(KEY)  # deleting what is gone is no error
    assert dict(store.iter_keys()) == {}
    with pytest.raises((FileNotFoundError, KeyError, LookupError, OSError)):
        store.read_range(KEY, 0, 1)


def test_a_second_put_under_a_key_replaces_it_whole(store: BlobStore, tmp_path: Path) -> None:
    store.put_file(KEY, _file(tmp_path, b"first" * 1000))
    store.put_file(KEY, _file(tmp_path, b"second" * 10))
    assert b"".join(store.iter_range(KEY)) == b"second" * 10


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "", "a//b", "./a"])
def test_keys_never_leave_the_store(store: BlobStore, tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError):
        store.read_range(key, 0, 1)
    with pytest.raises(ValueError):
        store.put_file(key, _file(tmp_path, b"x"))
