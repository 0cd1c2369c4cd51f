"""Work every server process runs now and then in the background (purges): each round in a
worker thread, a failure logged without its text (which may name hosts) and tried again at
the next round."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("dicomweb_server.periodic")


def purge_interval(retention_seconds: float) -> float:
    """A tenth of the retention, between 1 s and 5 min."""
    return min(max(retention_seconds / 10, 1.0), 300.0)


async def periodically(call: Callable[[], object], interval: float, what: str) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await asyncio.to_thread(call)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("%s failed: %s", what, type(exc).__name__)
