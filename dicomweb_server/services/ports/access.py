"""The access ports: the API keys the archive has issued (only a hash of each secret), and the
access-control labels of the studies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredKey:
    key_id: str
    name: str
    secret_sha256: str
    scopes: frozenset[str]
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None
    last_used_at: float | None = None
    # The access-control labels of the studies it may see; None: every study.
    labels: frozenset[str] | None = None

    def state(self, now: float) -> str:
        """active, revoked or expired."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class KeyIndex(Protocol):
    def add_key(self, key: StoredKey) -> None: ...

    def key(self, key_id: str) -> StoredKey | None:
        """The key with this id, revoked or not (None when there is none)."""

    def keys(self) -> list[StoredKey]:
        """Every key, oldest first."""

    def revoke_key(self, key_id: str, at: float) -> bool:
        """Mark the key revoked (False when there is no such key, or it already was)."""

    def key_used(self, key_id: str, at: float) -> None: ...


class LabelIndex(Protocol):
    def labels(self, study_uid: str) -> list[str] | None:
        """The study's labels, sorted; None when no such study is stored."""

    def set_labels(self, study_uid: str, labels: frozenset[str]) -> bool:
        """Make `labels` the study's labels (False when no such study is stored)."""
