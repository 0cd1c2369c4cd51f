"""Who the request is from: each request's `Caller`, made by `make_caller`.

The request log layer (which gives the request its id) asks for it before any route; the
route table checks the caller against each route's scope, and the handlers hand it to every
service call. The credential is an OpenID Connect access token or an API key, sent as
`Authorization: Bearer <token>` (RFC 6750 2.1), or an API key as `X-API-Key: <key>`; with
DICOMWEB_AUTH=none every request may do everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TypeVar

import orjson
from starlette.requests import HTTPConnection
from starlette.types import Scope
from starlette.websockets import WebSocket, WebSocketDisconnect

from dicomweb_server.services.access import AccessService
from dicomweb_server.services.context import READ, Caller
from dicomweb_server.web.access import request_id
from dicomweb_server.web.threads import in_thread, read

T = TypeVar("T")
# A stream's credential is checked again this often (a revoked key or share ends its streams
# sooner: services/revocations.py).
RECHECK_SECONDS = 60.0


async def make_caller(scope: Scope) -> Caller:
    """The `Caller` of a request or WebSocket (the request log layer, web/access.py, asks
    once per connection, before any route)."""
    if not scope["app"].state.container.access.kinds:
        return Caller.anonymous(request_id(scope), _address(scope))
    return await _caller_of(scope, _credential(scope))


def _address(scope: Scope) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None


async def _caller_of(scope: Scope, credential: str | None) -> Caller:
    """The caller `credential` stands for on this connection. A key's row is read on every
    request (revocations reach every process), on the event loop when the embedded
    database allows (a key unchanged since this process last read it costs no query); a
    token may need the provider's keys fetched: off the event loop."""
    archive = scope["app"].state.container
    access: AccessService = archive.access
    address = _address(scope)
    # A valid key by reads alone: on the event loop, no hop (web/threads.py `read`).
    known = (
        await read(True, access.known_caller, credential, request_id(scope), address)
        if archive.reads_inline and credential is not None
        else None
    )
    if known is not None:
        return known
    made = await in_thread(access.caller, credential, request_id(scope), address)
    return replace(made, client=address)


def _credential(scope: Scope) -> str | None:
    # A WebSocket that authenticated in its first message (below) keeps the credential here.
    given = scope.get("state", {}).get("credential")
    if isinstance(given, str):
        return given
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


FIRST_MESSAGE_SECONDS = 10.0


async def authenticate_first_message(websocket: WebSocket) -> None:
    """A browser cannot set headers on a WebSocket, and a credential never goes into a URL:
    a WebSocket opened without one (while access control is on) is accepted and must send
    `{"authorization": "Bearer <token>"}` as its first text message, within 10 s. Its caller
    is then made from that credential, as the middleware makes every other one; what it
    cannot use is refused as a missing credential would be, by the handler."""
    access = websocket.app.state.container.access
    if not access.kinds or _credential(websocket.scope) is not None:
        return
    await websocket.accept()
    token = None
    try:
        text = await asyncio.wait_for(websocket.receive_text(), FIRST_MESSAGE_SECONDS)
        message = orjson.loads(text)
        if isinstance(message, dict) and isinstance(message.get("authorization"), str):
            kind, _, value = message["authorization"].partition(" ")
            if kind.lower() == "bearer" and value.strip():
                token = value.strip()
    except (TimeoutError, orjson.JSONDecodeError, WebSocketDisconnect, KeyError, RuntimeError):
        token = None
    state = websocket.scope.setdefault("state", {})
    if token is None:
        state["caller"] = Caller.refused(
            'send {"authorization": "Bearer <token>"} as the first message',
            request_id(websocket.scope),
            token=False,
        )
        return
    state["credential"] = token
    state["caller"] = await _caller_of(websocket.scope, token)


def caller(request: HTTPConnection) -> Caller:
    """The caller of this request (made by `Callers`)."""
    found = request.scope.get("state", {}).get("caller")
    return found if isinstance(found, Caller) else Caller.anonymous(request_id(request.scope))


async def recheck(connection: HTTPConnection, scope: str) -> bool:
    """Whether the connection's credential still gives `scope` (a long-lived stream asks
    again now and then: a key revoked or a token expired since it began ends it)."""
    if not connection.app.state.container.access.kinds:
        return True
    made = await _caller_of(connection.scope, _credential(connection.scope))
    return made.refusal is None and scope in made.scopes


async def while_authorized(
    connection: HTTPConnection, items: AsyncIterator[T], scope: str = READ
) -> AsyncIterator[T]:
    """`items` while the caller may have them: a key or share revoked (or expired) in any
    process ends the stream within about a second (services/revocations.py); any credential
    is checked again every RECHECK_SECONDS, and one that no longer gives `scope` ends it."""
    principal = caller(connection).principal
    revocations = connection.app.state.container.revocations
    watched = principal is not None and principal.startswith(("key:", "share:"))
    ended = revocations.watch(principal) if watched else asyncio.Event()
    stop = asyncio.ensure_future(ended.wait())
    checked = time.monotonic()
    try:
        while True:
            following = asyncio.ensure_future(items.__anext__())
            await asyncio.wait({following, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not following.done():
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await following
                return
            try:
                item = following.result()
            except StopAsyncIteration:
                return
            if time.monotonic() - checked >= RECHECK_SECONDS:
                checked = time.monotonic()
                if not await recheck(connection, scope):
                    return
            yield item
    finally:
        stop.cancel()
        if watched and principal is not None:
            revocations.forget(principal, ended)
