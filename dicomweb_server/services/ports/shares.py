"""The share port: share links, their sessions and their uses (only hashes of secrets)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# What a share's code_sha256 holds once its one-time code has been redeemed.
CODE_USED = "used"


@dataclass(frozen=True)
class StoredShare:
    share_id: str
    study_uid: str
    series_uid: str | None
    rights: str  # view | download
    created_by: str
    created_at: float
    expires_at: float
    max_uses: int | None
    uses: int
    revoked_at: float | None
    token_sha256: str
    code_sha256: str | None = None
    code_failures: int = 0


@dataclass(frozen=True)
class StoredSession:
    session_id: str
    share_id: str
    secret_sha256: str
    created_at: float
    expires_at: float


@dataclass(frozen=True)
class ShareUse:
    at: float
    client: str | None
    outcome: str


class ShareIndex(Protocol):
    def add_share(self, share: StoredShare) -> None: ...

    def share(self, share_id: str) -> StoredShare | None: ...

    def shares(self) -> list[StoredShare]:
        """Every share, newest first."""

    def revoke_share(self, share_id: str, at: float) -> bool:
        """Mark it revoked (False when there is no such share, or it already was)."""

    def use_share(
        self, share_id: str, at: float, max_code_failures: int, code_sha256: str | None = None
    ) -> bool:
        """Count one use, atomically and only while the share is usable (not revoked, not
        expired, not used up, not locked by wrong codes); with `code_sha256`, only while the
        share still holds that code, which the same statement marks used (CODE_USED): a
        one-time code redeems once. Whether it was counted."""

    def new_code(self, share_id: str, code_sha256: str) -> bool:
        """Give the share a new one-time code and clear its wrong codes (False when there is
        no such share or it is revoked)."""

    def code_failed(self, share_id: str) -> int:
        """Count one wrong code; the share's wrong codes so far."""

    def add_session(self, session: StoredSession) -> None: ...

    def session(self, session_id: str) -> tuple[StoredSession, StoredShare] | None:
        """The session and its share, in one read."""

    def record_use(self, share_id: str, at: float, client: str | None, outcome: str) -> None: ...

    def uses(self, share_id: str, limit: int) -> list[ShareUse]:
        """The latest uses of the share, newest first."""
