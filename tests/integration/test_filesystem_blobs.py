"""The filesystem blob store on a real folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from dicomweb_server.blobs.filesystem import FilesystemBlobStore


def test_put_read_range_iterate_delete(tmp_path: Path) -> None:
    store = FilesystemBlobStore(tmp_path / "objects")
    source = tmp_path / "part"
    data = bytes(range(256)) * 1000
    source.write_bytes(data)
    store.put_file("1.2/3.4/5.6.dcm", source)
    assert not source.exists()
    assert store.read_range("1.2/3.4/5.6.dcm", 10, 5) == data[10:15]
    assert (
        b"".join(store.iter_range("1.2/3.4/5.6.dcm", 100, 70000, chunk_size=4096))
        == data[100:70100]
    )
    assert b"".join(store.iter_range("1.2/3.4/5.6.dcm")) == data
    store.delete("1.2/3.4/5.6.dcm")
    store.delete("1.2/3.4/5.6.dcm")
    with pytest.raises(FileNotFoundError):
        store.read_range("1.2/3.4/5.6.dcm", 0, 1)


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a/../../b", "", "a//b", "./a"])
def test_keys_never_leave_the_store(tmp_path: Path, key: str) -> None:
    store = FilesystemBlobStore(tmp_path / "objects")
    with pytest.raises(ValueError):
        store.read_range(key, 0, 1)


def test_bytes_in_the_page_cache_are_read_without_waiting(tmp_path: Path) -> None:
    """read_cached (what the event loop reads itself): the bytes while the page cache holds
    them, None once the kernel has dropped them (a read would wait for the disk) and for
    anything unusual, which the usual read then reports."""
    import os

    store = FilesystemBlobStore(tmp_path / "objects")
    source = tmp_path / "part"
    data = os.urandom(3 * 2**20)
    source.write_bytes(data)
    key = "1.2/3.4/5.6.dcm"
    store.put_file(key, source)
    store.sync([key])
    if getattr(os, "RWF_NOWAIT", None) is None:
        assert store.read_cached(key, 0, 10) is None
        return
    assert store.read_range(key, 0, len(data)) == data  # now cached
    if store.read_cached(key, 0, 4096) is None:
        pytest.skip("this file system does not serve reads with RWF_NOWAIT (all go to the pool)")
    assert store.read_cached(key, 0, len(data)) == data
    assert store.read_cached(key, 1000, 70000) == data[1000:71000]
    assert store.read_cached(key, 0, 0) == b""
    assert store.read_cached(key, len(data) - 10, 20) is None  # past the end: short
    assert store.read_cached("1.2/3.4/none.dcm", 0, 10) is None
    assert store.read_cached("../x", 0, 10) is None
    # Dropped from the page cache (the data is on disk: synced above).
    fd = os.open(tmp_path / "objects" / key, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)
    assert store.read_cached(key, 2 * 2**20, 4096) is None
    assert store.read_range(key, 2 * 2**20, 4096) == data[2 * 2**20 : 2 * 2**20 + 4096]
