"""Measuring one request: verified answers, timed repetitions (shared by run.py and scale.py)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import httpx

Result = dict[str, Any]


class Unsupported(Exception):
    """The server does not offer this endpoint."""


class Mismatch(Exception):
    """The server answered, but not what the request asked for."""


def check(response: httpx.Response) -> httpx.Response:
    if response.status_code in (404, 405, 406, 501):
        raise Unsupported(f"HTTP {response.status_code}: {response.text[:160]}")
    if response.status_code != 200:
        raise Mismatch(f"HTTP {response.status_code}: {response.text[:160]}")
    return response


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def timed(fn: Callable[[], int], warmups: int, repetitions: int) -> Result:
    """Run `fn` (which verifies its answer and returns the bytes received) repeatedly."""
    try:
        for _ in range(warmups):
            fn()
        times, sizes = [], []
        for _ in range(repetitions):
            start = time.perf_counter()
            sizes.append(fn())
            times.append(time.perf_counter() - start)
    except Unsupported as exc:
        return {"unsupported": str(exc)}
    except (Mismatch, httpx.HTTPError) as exc:
        return {"failed": str(exc)}
    median = statistics.median(times)
    result: Result = {
        "median_ms": median * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
        "n": repetitions,
    }
    if sizes and sizes[0]:
        result["mb_per_s"] = statistics.median(sizes) / median / 2**20
    return result


def concurrently(
    make: Callable[[httpx.Client, int], int],
    clients: int,
    each: int,
    warmups: int = 2,
    headers: dict[str, str] | None = None,
) -> Result:
    """`clients` threads, each with its own connection, making `each` requests one after
    the other (`make(client, n)` sends the n-th and verifies its answer): the latency each
    request saw under that load, and the requests per second of all of them together."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    times: list[float] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        with httpx.Client(timeout=600, headers=headers) as client:
            for n in range(warmups):
                make(client, index * 1000 + n)
            for n in range(each):
                start = time.perf_counter()
                make(client, index * 1000 + warmups + n)
                with lock:
                    times.append(time.perf_counter() - start)

    try:
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(worker, range(clients)))
        wall = time.perf_counter() - start
    except Unsupported as exc:
        return {"unsupported": str(exc)}
    except (Mismatch, httpx.HTTPError) as exc:
        return {"failed": str(exc)}
    return {
        "median_ms": statistics.median(times) * 1000,
        "p95_ms": percentile(times, 0.95) * 1000,
        "requests_per_s": len(times) / wall,
        "n": len(times),
        "clients": clients,
    }
