"""Blocking work off the event loop: one thread pool per process, and a cheap hop to it.

Starlette's `run_in_threadpool` goes through anyio (finding the async library, a capacity
limiter, its own worker queues), which cost about a tenth of a frame request's CPU. This hop
is asyncio's `run_in_executor` with the caller's context variables. Like anyio's default it
never abandons a call: a cancelled caller waits until the call has returned and is then
cancelled, so nothing a call does outlives its request's clean-up (a STOW-RS request's
staged objects are removed only once no thread still indexes them).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from dicomweb_server.services.ports.inline import DEADLINE, Overran

P = ParamSpec("P")
T = TypeVar("T")

# As many threads as anyio's default limiter allowed.
_POOL = ThreadPoolExecutor(max_workers=40, thread_name_prefix="dicomweb-worker")


async def in_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in the thread pool."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    future = loop.run_in_executor(_POOL, call)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(future)
            break
        except asyncio.CancelledError:
            if future.cancelled():
                raise
            # The caller was cancelled: the call runs on; wait for it, then give way.
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


# How long a read may hold the event loop before it is made again in a worker thread.
INLINE_SECONDS = 0.002


async def read(inline: bool, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)`, a call that only reads the index: on the event loop when
    `inline` (the embedded database) and it finishes within INLINE_SECONDS, else in the
    thread pool (services/ports/inline.py)."""
    if inline:
        token = DEADLINE.set(time.perf_counter() + INLINE_SECONDS)
        try:
            return fn(*args, **kwargs)
        except Overran:
            pass
        finally:
            DEADLINE.reset(token)
    return await in_thread(fn, *args, **kwargs)
