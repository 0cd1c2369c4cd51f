"""Open streams end within a second of their credential's revocation, in every process.

A stream (the change feed's SSE and WebSocket, the worklist stream, a UPS event channel)
registers its caller's principal. While any is registered, this process asks the database
once a second which keys and shares were revoked or expired since its last look (one query
for all of its streams, whichever process revoked them) and sets the events of the streams
of those principals, which then end. OpenID Connect tokens are not revoked here: their
streams end at the next recheck after they expire.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from dicomweb_server.services.errors import Unavailable
from dicomweb_server.services.ports.revocations import RevocationIndex


class Revocations:
    def __init__(self, index: RevocationIndex, poll_seconds: float = 1.0) -> None:
        self._index = index
        self._poll = poll_seconds
        self._watchers: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._last = time.time()

    def watch(self, principal: str) -> asyncio.Event:
        """An event set once `principal`'s key or share stops working."""
        ended = asyncio.Event()
        if not self._watchers:
            self._last = time.time()
        self._watchers[principal].add(ended)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return ended

    def forget(self, principal: str, ended: asyncio.Event) -> None:
        held = self._watchers.get(principal)
        if held is not None:
            held.discard(ended)
            if not held:
                del self._watchers[principal]

    async def _run(self) -> None:
        while self._watchers:
            await asyncio.sleep(self._poll)
            now = time.time()
            try:
                # A little overlap: a revocation committed just before the last look, by a
                # clock a little behind, is seen too (setting an event twice does nothing).
                ended = await asyncio.to_thread(self._index.ended_between, self._last - 2, now)
            except Unavailable:
                continue  # the database is back soon: the next look covers the gap
            self._last = now
            for principal in ended:
                for event in self._watchers.get(principal, ()):
                    event.set()
