"""The change feed (outside PS3.18; Microsoft's field names) and its live streams.

- `GET {root}/changefeed?after=&limit=&includemetadata=`: the entries after a sequence, in
  order (`offset` is taken as `after`, as Microsoft's first version reads it).
- `GET {root}/changefeed/latest`: the newest entry (`null` when there is none).
- `GET {root}/changefeed/stream`: Server-Sent Events, one event per entry (`id:` its
  sequence, `event:` its action); resumed with `after=` or the `Last-Event-ID` header.
- `{root}/changefeed/ws`: WebSocket, one JSON text message per entry; resumed with `after=`.

Both streams take a filter in their query (services/changes.parse_filter) and show only the
studies the caller may see; each needs scope read, checked again every minute (a revoked key
ends its streams).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket

from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.matching import parse_boolean
from dicomweb_server.dicom.numbers import parse_integer
from dicomweb_server.services.changes import (
    MAX_FEED_LIMIT,
    ChangeFilter,
    Subscription,
    entry_fields,
    parse_filter,
)
from dicomweb_server.services.context import Caller
from dicomweb_server.services.errors import ServiceError
from dicomweb_server.services.ports.changes import Change
from dicomweb_server.web.access import after_response
from dicomweb_server.web.auth import (
    authenticate_first_message,
    caller,
    while_authorized,
)
from dicomweb_server.web.context import container
from dicomweb_server.web.sockets import accept, pump, refuse
from dicomweb_server.web.threads import in_thread
from dicomweb_server.web.urls import Urls, urls

# Server-Sent Events: a comment this often keeps proxies from closing a quiet stream.
KEEPALIVE_SECONDS = 15.0
_STREAM_PARAMETERS = frozenset({"after"})


def _sequence(name: str, value: str | None, minimum: int = 0) -> int | None:
    if value is None or value == "":
        return None
    return parse_integer(value, name, minimum)


def entry(change: Change, here: Urls) -> dict[str, Any]:
    found = entry_fields(change)
    if change.metadata is not None:
        found["Metadata"] = orjson.loads(here.with_base([change.metadata]))[0]
    return found


def _json(value: Any) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


async def read_change_feed(request: Request) -> Response:
    after: int | None = 0
    limit: int | None = None
    with_metadata = with_stable = False
    for name, value in request.query_params.multi_items():
        lowered = name.lower()
        if lowered in ("after", "offset"):
            after = _sequence(name, value)
        elif lowered == "limit":
            limit = parse_integer(value, name, 1, MAX_FEED_LIMIT)
        elif lowered == "includemetadata":
            with_metadata = parse_boolean(name, value)
        elif lowered == "includestable":
            with_stable = parse_boolean(name, value)
        else:
            raise InvalidQuery(
                f"unknown parameter {name!r}; the change feed takes after, limit, "
                "includemetadata and includestable"
            )
    found = await in_thread(
        container(request).changes.read,
        caller(request),
        after or 0,
        limit,
        with_metadata,
        with_stable,
    )
    here = urls(request)
    return _json([entry(c, here) for c in found])


async def read_latest_change(request: Request) -> Response:
    with_stable = False
    for name, value in request.query_params.multi_items():
        if name.lower() != "includestable":
            raise InvalidQuery(f"unknown parameter {name!r}; latest takes includestable")
        with_stable = parse_boolean(name, value)
    found = await in_thread(container(request).changes.latest, caller(request), with_stable)
    return _json(None if found is None else entry(found, urls(request)))


def _stream_request(connection: HTTPConnection) -> tuple[ChangeFilter, int | None]:
    """The filter and the sequence to resume after (None: from now on)."""
    params = connection.query_params.multi_items()
    after = None
    for name, value in params:
        if name.lower() == "after":
            after = _sequence(name, value)
    resumed = connection.headers.get("last-event-id")
    if after is None and resumed is not None:
        after = _sequence("Last-Event-ID", resumed.strip())
    wanted = parse_filter((n, v) for n, v in params if n.lower() not in _STREAM_PARAMETERS)
    return wanted, after


async def _subscribe(
    connection: HTTPConnection,
) -> tuple[Caller, Subscription]:
    """The caller and its subscription, placed in the log now (before the stream's first
    byte: whatever is committed once the client sees the stream open reaches it)."""
    wanted, after = _stream_request(connection)
    who = caller(connection)
    return who, await container(connection).hub.open(who, wanted, after)


async def _batches(
    connection: HTTPConnection, subscription: Subscription
) -> AsyncIterator[list[Change]]:
    """The subscription's batches (empty: a quiet interval), ending when the caller's
    credential no longer gives read."""
    async for batch in while_authorized(connection, subscription.batches(KEEPALIVE_SECONDS)):
        yield batch


async def stream_changes(request: Request) -> Response:
    """Server-Sent Events (HTML Living Standard 9.2)."""
    _, subscription = await _subscribe(request)
    # Also when the client goes before the body begins.
    after_response(request.scope, subscription.close)
    here = urls(request)

    async def events() -> AsyncIterator[bytes]:
        try:
            yield b": change feed\n\n"  # the headers and a first byte at once
            async for batch in _batches(request, subscription):
                if not batch:
                    yield b": keep-alive\n\n"
                    continue
                yield b"".join(
                    b"id: %d\nevent: %s\ndata: %s\n\n"
                    % (c.sequence, c.action.encode(), orjson.dumps(entry(c, here)))
                    for c in batch
                )
        finally:
            subscription.close()

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def stream_changes_ws(websocket: WebSocket) -> None:
    """One JSON text message per entry. A request that cannot be served is accepted and
    closed at once with the reason: 1008 (policy: credential, scope, filter) or 1013 (try
    again later)."""
    await authenticate_first_message(websocket)
    try:
        _, subscription = await _subscribe(websocket)
    except (ServiceError, InvalidQuery) as exc:
        await refuse(websocket, exc)
        return
    await accept(websocket)
    here = urls(websocket)
    batches = _batches(websocket, subscription)

    async def send() -> None:
        async for batch in batches:
            for c in batch:
                await websocket.send_text(orjson.dumps(entry(c, here)).decode())
        await websocket.close(1008, "the credential no longer gives read")

    try:
        await pump(websocket, send)
    finally:
        await batches.aclose()  # type: ignore[attr-defined]
        subscription.close()
