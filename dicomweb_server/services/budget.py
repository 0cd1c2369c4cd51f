"""How much memory decoding may take in one process at once.

Transcoding and rendering hold decoded pixels in memory (a whole object, or the frames of an
animation). Each such request first reserves what it will hold, estimated from the image's
size before any work; a request that alone needs more than a response may hold is refused at
once (the caller says with what), and one that finds the process's budget taken waits for
room, then gets Busy (503 with Retry-After). However many requests arrive at once, the memory
they hold together stays within the budget.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from dicomweb_server.services.errors import Busy


class MemoryBudget:
    def __init__(self, total_bytes: int = 2 * 2**30, wait_seconds: float = 30.0) -> None:
        self.total_bytes = total_bytes
        self._wait_seconds = wait_seconds
        self._used = 0
        self._room = threading.Condition()

    @property
    def used(self) -> int:
        return self._used

    @contextlib.contextmanager
    def reserve(self, amount: int) -> Iterator[None]:
        """Hold `amount` bytes of the budget for the block."""
        reservation = self.acquire(amount)
        try:
            yield
        finally:
            reservation.release()

    def acquire(self, amount: int) -> Reservation:
        """Hold `amount` bytes until the reservation is released (more than the whole budget
        holds all of it: such a request runs alone)."""
        amount = max(0, min(amount, self.total_bytes))
        deadline = time.monotonic() + self._wait_seconds
        with self._room:
            while self._used + amount > self.total_bytes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Busy(
                        "the server is decoding as much as its memory allows; try again shortly"
                    )
                self._room.wait(left)
            self._used += amount
        return Reservation(self, amount)

    def _release(self, amount: int) -> None:
        with self._room:
            self._used -= amount
            self._room.notify_all()


class Reservation:
    def __init__(self, budget: MemoryBudget, amount: int) -> None:
        self._budget: MemoryBudget | None = budget
        self.amount = amount

    def release(self) -> None:
        """Give the bytes back (once; later calls do nothing)."""
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._release(self.amount)
