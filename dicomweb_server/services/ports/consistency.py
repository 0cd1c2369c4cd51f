"""The consistency port: what the index points at, for the sweep and the check."""

from __future__ import annotations

from typing import Protocol


class ConsistencyIndex(Protocol):
    def blob_keys(self) -> set[str]:
        """The blob key of every indexed instance, of every rejected one (kept until it is
        purged) and of every original version kept."""

    def retired(self) -> dict[str, float]:
        """Copies replaced by newer ones: blob key -> when (seconds since the epoch); their
        objects are kept for readers until the sweep removes them."""

    def forget_retired(self, key: str) -> None:
        """The retired copy `key` has been removed from the blob store."""
