"""The revocation port: which credentials stopped working lately, for open streams."""

from __future__ import annotations

from typing import Protocol


class RevocationIndex(Protocol):
    def ended_between(self, since: float, until: float) -> set[str]:
        """The principals (`key:<id>`, `share:<id>`) whose key or share was revoked, or
        expired, after `since` and up to `until`."""
