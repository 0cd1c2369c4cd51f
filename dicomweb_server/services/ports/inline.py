"""Short reads of the embedded database on the event loop, instead of a worker thread.

A hop to a worker thread and back costs more CPU than a short indexed read of SQLite (two
context switches, the GIL handed over twice: about 100-450 us on the benchmark machine,
against 20-200 us for the read). The web layer may therefore run a read-only call on the
event loop with a deadline set here; the index adapter then uses a connection of its own
that never waits for a lock and aborts its statement once the deadline has passed, raising
`Overran`, and the web layer runs the call again in a worker thread. So a read that is quick
never leaves the loop, and one that is not holds the loop for at most the deadline.
"""

from __future__ import annotations

from contextvars import ContextVar

# perf_counter() past which a read on the loop gives up; None: not on the loop.
DEADLINE: ContextVar[float | None] = ContextVar("inline_read_deadline", default=None)


class Overran(Exception):
    """A read run on the event loop went past its deadline, or would have waited for a lock
    or a connection: nothing was changed, and the call is to be made in a worker thread."""
