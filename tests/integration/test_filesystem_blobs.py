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
