"""The retention port: old rows of the logs removed in batches, by one process at a time."""

from __future__ import annotations

from typing import Protocol

# What is pruned: the audit table, the change log, delivered webhook deliveries, share uses,
# failed credentials and expired share sessions.
AUDIT, CHANGES, DELIVERIES, SHARE_USES, FAILURES, SESSIONS = (
    "audit events",
    "change log entries",
    "delivered webhook deliveries",
    "share uses",
    "failed credentials",
    "expired share sessions",
)


class RetentionIndex(Protocol):
    def take_lease(self, name: str, owner: str, now: float, until: float) -> bool:
        """Hold the lease `name` until `until` (when nobody else holds it at `now`)."""

    def release(self, name: str, owner: str) -> None: ...

    def prune(self, kind: str, before: float, limit: int) -> int:
        """Remove at most `limit` of the oldest rows of `kind` older than `before` (one
        transaction); how many were removed."""

    def count(self, kind: str) -> int:
        """The rows of `kind` kept now."""
