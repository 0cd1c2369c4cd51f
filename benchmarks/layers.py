"""What one request pays in each layer, in microseconds of CPU, measured in this process.

    python -m benchmarks.layers [--repetitions N]

Each layer is timed on its own with the server's real objects (a container on an empty
embedded archive, as the README's command makes it), by CPU time over many repetitions; the
whole request is timed through the ASGI app in-process, in the open and in the production
profile (an API key on every request, the audit table). The HTTP server's own share (uvicorn
with httptools and uvloop: parsing, the socket writes) is not in-process; the benchmark's
`qido_empty_floor` measures it with the rest. Prints a Markdown table (docs/performance.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# A request that matches nothing: the per-request floor of the issue that asked for it.
PATH = "/dicomweb/studies"
QUERY = b"limit=1"


def _cpu(fn: Callable[[], object], n: int) -> float:
    """CPU microseconds per call of `fn` (the process's, all threads)."""
    for _ in range(min(n, 200)):
        fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) * 1e6 / n


def _acpu(loop: asyncio.AbstractEventLoop, fn: Callable[[], Awaitable[object]], n: int) -> float:
    async def many(count: int) -> None:
        for _ in range(count):
            await fn()

    loop.run_until_complete(many(min(n, 200)))
    start = time.process_time()
    loop.run_until_complete(many(n))
    return (time.process_time() - start) * 1e6 / n


def _scope(headers: list[tuple[bytes, bytes]], app: Any = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "query_string": QUERY,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
        "app": app,
    }


def measure(n: int) -> list[tuple[str, float, str]]:
    os.environ["DICOMWEB_DATA_DIR"] = tempfile.mkdtemp(prefix="layers-")
    import uvloop

    from dicomweb_server.serving import configure_logging
    from dicomweb_server.settings import Settings
    from dicomweb_server.web.access import name_requests_in_logs

    configure_logging(Settings())
    name_requests_in_logs()
    rows: list[tuple[str, float, str]] = []
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    with Path(os.devnull).open("w") as nowhere:
        logging.getLogger().handlers[0].setStream(nowhere)  # type: ignore[attr-defined]
        rows += _open_profile(loop, n)
        rows += _production_profile(loop, n)
    loop.close()
    return rows


def _made(production: bool) -> tuple[Any, Any, list[tuple[bytes, bytes]]]:
    """A container on an empty archive (the production profile's with a key), its app, and
    the request headers that profile sends."""
    from dicomweb_server.app import create_app
    from dicomweb_server.container import build_container, upgrade_database
    from dicomweb_server.services.context import READ
    from dicomweb_server.settings import Settings

    settings = Settings(auth="api-key", audit="table") if production else Settings()
    upgrade_database(settings)
    container = build_container(settings)
    headers = [(b"host", b"127.0.0.1:8080"), (b"accept", b"application/dicom+json")]
    if production:
        key = container.access.create_key("layers", {READ}).secret
        headers.append((b"x-api-key", key.encode()))
    return container, create_app(container), headers


async def _request(app: Any, headers: list[tuple[bytes, bytes]]) -> None:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message: dict[str, Any]) -> None:
        return None

    await app(_scope(headers), receive, send)


def _open_profile(loop: asyncio.AbstractEventLoop, n: int) -> list[tuple[str, float, str]]:
    import orjson
    from starlette.routing import Match

    from dicomweb_server.dicom.attributes import Level
    from dicomweb_server.dicom.matching import parse_search
    from dicomweb_server.services.context import READ, Caller
    from dicomweb_server.services.ports.inline import DEADLINE
    from dicomweb_server.web import metrics
    from dicomweb_server.web.access import RequestLog
    from dicomweb_server.web.threads import in_thread

    container, app, headers = _made(False)
    rows = [
        (
            "whole request in-process, open profile",
            _acpu(loop, lambda: _request(app, headers), n),
            "ASGI app, no socket",
        )
    ]

    async def empty(_scope: Any, _receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[]"})

    logged = RequestLog(empty, observe=metrics.observe)
    bare = _acpu(loop, lambda: _request(empty, headers), n)
    rows.append(
        (
            "request log, id and metrics (one layer)",
            _acpu(loop, lambda: _request(logged, headers), n) - bare,
            "web/access.py RequestLog around an empty app; the log line written",
        )
    )
    rows.append(
        (
            "metrics alone",
            _cpu(lambda: metrics.observe("GET", "/studies", 200, 0.001, 0, 2), n),
            "counter and histogram of prometheus-client",
        )
    )
    anonymous = Caller.anonymous("rid")
    rows.append(("scope check", _cpu(lambda: anonymous.require(READ), n), "Caller.require"))
    scope = _scope(headers, app)
    scope["state"]["caller"] = anonymous

    def matched(router: Any, where: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        # As web/routes.py IndexedRouter: the routes of the path's first segment, in order.
        path = where["path"][len(where.get("root_path", "")) :]
        for route in router._candidates(path):
            match, child = route.matches(where)
            if match is Match.FULL:
                return route, {**where, **child}
        raise LookupError(where["path"])

    def route_of() -> tuple[Any, dict[str, Any]]:
        mount, inside = matched(app.router, scope)
        return matched(mount.app, inside)

    rows.append(
        (
            "routing",
            _cpu(route_of, n),
            "the root's routes of the first segment, then the DICOMweb root's, to the match",
        )
    )
    route, routed = route_of()

    async def handled() -> None:
        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(_message: dict[str, Any]) -> None:
            return None

        await route.handle({**routed, "state": dict(routed["state"])}, receive, send)

    rows.append(
        (
            "endpoint: Starlette's request and response, the QIDO handler, search and SQL",
            _acpu(loop, handled, n),
            "the matched route called: negotiation, URLs, search, JSON, the response sent",
        )
    )
    rows.append(
        (
            "thread hop (none on this path now)",
            _acpu(loop, lambda: in_thread(int), n),
            "web/threads.py in_thread of a call that does nothing",
        )
    )
    wanted = parse_search([("limit", "1")])

    def sql() -> None:
        token = DEADLINE.set(time.perf_counter() + 1.0)
        try:
            container.search.search(anonymous, Level.STUDY, wanted, "http://h/dicomweb/studies")
        finally:
            DEADLINE.reset(token)

    rows.append(
        (
            "search service and SQL",
            _cpu(sql, n),
            "the statement seen before, run through the driver on the loop",
        )
    )
    rows.append(
        (
            "query parse",
            _cpu(lambda: parse_search([("limit", "1")]), n),
            "dicom/matching.py parse_search",
        )
    )
    results = [{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]
    rows.append(
        (
            "JSON of one result",
            _cpu(lambda: orjson.dumps(results), n),
            "orjson (an empty answer is the two bytes [])",
        )
    )
    container.close()
    return rows


def _production_profile(loop: asyncio.AbstractEventLoop, n: int) -> list[tuple[str, float, str]]:
    from dicomweb_server.services import audit
    from dicomweb_server.services.context import READ, Caller
    from dicomweb_server.services.ports.inline import DEADLINE

    container, app, headers = _made(True)
    rows = [
        (
            "whole request in-process, production profile",
            _acpu(loop, lambda: _request(app, headers), n),
            "ASGI app, no socket",
        )
    ]
    trail = container.audit
    who = Caller("key:x", frozenset({READ}), None, "rid")
    rows.append(
        (
            "audit: the message made and queued",
            _cpu(lambda: trail.record(audit.query(who, "/studies?limit=1", "0")), n),
            "web/audit.py record; the writer thread's share is below",
        )
    )
    batch = [audit.query(who, "/studies?limit=1", "0") for _ in range(100)]
    kept = trail.log
    assert kept is not None
    rows.append(
        (
            "audit: the writer, per message",
            _cpu(lambda: kept.write(batch), max(1, n // 100)) / 100,
            "100 messages a transaction (50 ms of requests)",
        )
    )
    secret = headers[-1][1].decode()

    def key_on_loop() -> None:
        token = DEADLINE.set(time.perf_counter() + 1.0)
        try:
            container.access.known_caller(secret, "rid")
        finally:
            DEADLINE.reset(token)

    rows.append(
        (
            "credential: an API key checked",
            _cpu(key_on_loop, n),
            "on the loop; the key's row kept while SQLite's data_version holds",
        )
    )
    container.close()
    return rows


def markdown(rows: list[tuple[str, float, str]]) -> str:
    lines = ["| layer | us of CPU per request | what was timed |", "| --- | --- | --- |"]
    lines += [f"| {name} | {value:.1f} | {note} |" for name, value, note in rows]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.layers", description=__doc__)
    parser.add_argument("--repetitions", type=int, default=5000)
    args = parser.parse_args(argv)
    print(markdown(measure(args.repetitions)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
