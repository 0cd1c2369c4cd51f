"""Retention: the archive's logs (audit events, change log, delivered webhook deliveries,
share uses, failed credentials, expired share sessions) stop growing. Every process tries
each round; the one that takes the lease prunes, in batches of a bounded size (each its own
short transaction, so writers are never held up for long), the others skip the round."""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable

from dicomweb_server.services.ports.retention import FAILURES, SESSIONS, RetentionIndex

log = logging.getLogger("dicomweb_server.retention")

LEASE = "retention"
BATCH = 1000
# Failed credentials matter for a minute, expired share sessions for nothing: an hour is
# plenty, whatever the settings.
SHORT_LIVED = {FAILURES: 3600.0, SESSIONS: 3600.0}


class Retention:
    def __init__(
        self,
        index: RetentionIndex,
        kept_seconds: dict[str, float],
        batch: int = BATCH,
        lease_seconds: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        # 0 (or less): kept for ever.
        self.kept = {**SHORT_LIVED, **{k: v for k, v in kept_seconds.items() if v > 0}}
        self._batch = batch
        self._lease_seconds = lease_seconds
        self._clock = clock
        self._owner = f"{socket.gethostname()[:32]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def prune(self) -> dict[str, int]:
        """One round: what was removed, per kind (empty when another process holds the
        lease). Each kind goes until nothing older than its retention is left, or until the
        round has held the lease for most of its time (the next round goes on)."""
        now = self._clock()
        if not self._index.take_lease(LEASE, self._owner, now, now + self._lease_seconds):
            return {}
        removed: dict[str, int] = {}
        try:
            for kind, seconds in self.kept.items():
                before = now - seconds
                total = 0
                while self._clock() < now + self._lease_seconds * 0.8:
                    done = self._index.prune(kind, before, self._batch)
                    total += done
                    if done < self._batch:
                        break
                if total:
                    removed[kind] = total
        finally:
            self._index.release(LEASE, self._owner)
        if removed:
            log.info(
                "retention removed %s", ", ".join(f"{n} {kind}" for kind, n in removed.items())
            )
        return removed
