"""The blob store port: where stored objects live, addressed by key."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol


class BlobStore(Protocol):
    """Where stored objects live, addressed by key."""

    def put_file(self, key: str, path: Path) -> None:
        """Store the local file at `path` under `key`, taking ownership of the file. The
        object is durable once `sync` has returned for its key (an index row may point at it
        only then)."""

    def sync(self, keys: Sequence[str]) -> None:
        """Make the objects put under `keys` durable, all at once (one flush per batch)."""

    def read_range(self, key: str, offset: int, length: int) -> bytes: ...

    def read_cached(self, key: str, offset: int, length: int) -> bytes | None:
        """The bytes when the store can hand them over without waiting (in memory already:
        the page cache), else None, and the caller reads them with `iter_range` off the
        event loop. Optional: a store without it is always read off the loop."""

    def iter_range(
        self, key: str, offset: int = 0, length: int | None = None, chunk_size: int = 1 << 20
    ) -> Iterator[bytes]:
        """The bytes of `key` from `offset`, `length` of them (all when None), in chunks."""

    def delete(self, key: str) -> None: ...

    def iter_keys(self) -> Iterator[tuple[str, float]]:
        """Every stored key with its last-modified time (seconds since the epoch)."""

    def check(self) -> None:
        """Raise if the store cannot be used."""

    def close(self) -> None:
        """Release connections."""
