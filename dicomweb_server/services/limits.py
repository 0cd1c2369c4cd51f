"""Limits on failures: how often a sender may fail before it must wait (429).

Failures are counted per client address and per claimed principal (an API key's id) in the
last minute. With a FailureLog (the database) every server process counts the same failures,
so N processes allow no more attempts than one; without one (a single process, tests of the
pure rule) they are counted in this process's memory.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from dicomweb_server.services.ports.limits import FailureLog


class FailureLimit:
    """A sliding window of a minute: past the limit a sender waits until its oldest failure
    in the window is a minute old."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, log: FailureLog | None = None) -> None:
        self._limit = per_minute
        self._log = log
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._seen.setdefault(client, deque())
        while times and times[0] <= now - self.WINDOW:
            times.popleft()
        return times

    def blocked(self, *subjects: str | None) -> int | None:
        """Seconds the first of `subjects` over the limit must wait, or None."""
        for subject in subjects:
            if subject is not None:
                wait = self._wait(subject)
                if wait is not None:
                    return wait
        return None

    def _wait(self, subject: str) -> int | None:
        if self._log is not None:
            now = time.time()
            count, oldest = self._log.recent(subject, now - self.WINDOW)
            if count < self._limit or oldest is None:
                return None
            return max(1, int(oldest + self.WINDOW - now + 0.999))
        now = time.monotonic()
        with self._lock:
            times = self._recent(subject, now)
            if len(times) < self._limit:
                if not times:
                    self._seen.pop(subject, None)
                return None
            return max(1, int(times[0] + self.WINDOW - now + 0.999))

    def failed(self, *subjects: str | None) -> None:
        named = [s for s in subjects if s is not None]
        if not named:
            return
        if self._log is not None:
            self._log.failed(named, time.time(), self.WINDOW)
            return
        now = time.monotonic()
        with self._lock:
            for subject in named:
                self._recent(subject, now).append(now)
            if len(self._seen) > 100_000:
                # Bounded memory whatever the number of addresses: forget the quietest.
                for quiet in [c for c, t in self._seen.items() if len(t) <= 1][:50_000]:
                    del self._seen[quiet]
