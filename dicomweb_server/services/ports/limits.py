"""The failure-count port: failed credentials kept where every server process sees them."""

from __future__ import annotations

from typing import Protocol


class FailureLog(Protocol):
    def failed(self, subjects: list[str], at: float, window: float) -> None:
        """Record one failure of each subject (a client address, a claimed key id); what is
        older than `window` seconds may be forgotten."""

    def recent(self, subject: str, since: float) -> tuple[int, float | None]:
        """The subject's failures since `since`, and the time of the oldest of them."""
