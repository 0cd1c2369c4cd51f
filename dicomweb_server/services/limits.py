"""Limits on failures: how often a client may fail before it must wait (429)."""

from __future__ import annotations

import threading
import time
from collections import deque


class FailureLimit:
    """Failures per client address or principal in the last minute, in this process (a
    sliding window); past the limit the address waits until its oldest failure is a minute
    old. Each process counts its own: N processes allow N times the limit (a share's wrong
    codes are also counted in the database, where every process sees them)."""

    WINDOW = 60.0

    def __init__(self, per_minute: int) -> None:
        self._limit = per_minute
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and times[0] <= now - self.WINDOW:
            times.popleft()
        return times

    def blocked(self, client: str | None) -> int | None:
        """Seconds the client must wait, or None."""
        if client is None:
            return None
        now = time.monotonic()
        with self._lock:
            times = self._recent(client, now)
            if len(times) < self._limit:
                if not times:
                    self._seen.pop(client, None)
                return None
            return max(1, int(times[0] + self.WINDOW - now + 0.999))

    def failed(self, client: str | None) -> None:
        if client is None:
            return
        now = time.monotonic()
        with self._lock:
            self._recent(client, now).append(now)
            if len(self._seen) > 100_000:
                # Bounded memory whatever the number of addresses: forget the quietest.
                for quiet in [c for c, t in self._seen.items() if len(t) <= 1][:50_000]:
                    del self._seen[quiet]
