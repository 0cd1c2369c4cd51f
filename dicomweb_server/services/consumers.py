"""Event consumers of plugins (services/ports/plugins.py): the change log's entries handed
to each in order, in batches, by one server process at a time (a lease in the database),
at least once (the cursor moves after `consume` returns)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Sequence

from dicomweb_server.services.changes import Alarm
from dicomweb_server.services.ports.changes import ChangeLog
from dicomweb_server.services.ports.plugins import ConsumerCursors, EventConsumer

log = logging.getLogger("dicomweb_server.consumers")
_BATCH = 500
_LEASE_SECONDS = 30.0
_COALESCE_SECONDS = 0.01


class Consumers:
    def __init__(
        self,
        consumers: Sequence[EventConsumer],
        cursors: ConsumerCursors,
        changes: ChangeLog,
        poll_seconds: float,
    ) -> None:
        self.consumers = list(consumers)
        self._cursors = cursors
        self._changes = changes
        self._poll = poll_seconds
        # This process, as the holder of a consumer's lease.
        self._owner = secrets.token_hex(8)
        self.wake = Alarm()

    def deliver(self) -> int:
        """One round: each consumer whose lease this process holds gets what it has not yet
        consumed; how many entries were handed over. A consumer that fails is tried again
        at the next round, from the same entry; the others go on."""
        handed = 0
        for consumer in self.consumers:
            try:
                handed += self._deliver(consumer)
            except Exception as exc:  # noqa: BLE001 - a plugin's failure, retried
                log.warning("event consumer %s failed: %s", consumer.name, type(exc).__name__)
        return handed

    def _deliver(self, consumer: EventConsumer) -> int:
        handed = 0
        while True:
            cursor = self._cursors.claim(consumer.name, self._owner, time.time(), _LEASE_SECONDS)
            if cursor is None:
                return handed
            batch = self._changes.read(cursor, _BATCH, None)
            if not batch:
                return handed
            consumer.consume(batch)
            if not self._cursors.advance(consumer.name, self._owner, batch[-1].sequence):
                return handed
            handed += len(batch)
            if len(batch) < _BATCH:
                return handed

    async def run(self) -> None:
        """Deliver at every wake (this process's stores) and every poll interval."""
        if not self.consumers:
            return
        self.wake.bind()
        while True:
            try:
                await asyncio.to_thread(self.deliver)
            except Exception as exc:  # noqa: BLE001 - the database; the next round tries again
                log.warning("event consumers failed this round: %s", type(exc).__name__)
            if await self.wake.wait(self._poll):
                await asyncio.sleep(_COALESCE_SECONDS)
