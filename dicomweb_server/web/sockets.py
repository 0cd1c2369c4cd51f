"""What every server-to-client WebSocket here does: refuse with a close code and the
reason, and send until the sender ends or the client hangs up."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from dicomweb_server.web.errors import error_response, status_of


async def refuse(websocket: WebSocket, exc: Exception) -> None:
    """Accept and close at once with the reason: 1013 (try again later) for what would be a
    503, else 1008 (policy: credential, scope, request)."""
    status = status_of(type(exc)) or 400
    await accept(websocket)
    await websocket.close(1013 if status == 503 else 1008, str(exc)[:120])


async def accept(websocket: WebSocket) -> None:
    """Accept the connection unless it was already (authentication in the first message)."""
    if websocket.application_state == WebSocketState.CONNECTING:
        await websocket.accept()


async def pump(websocket: WebSocket, send: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `send` until it ends or the client goes (nothing is expected from the client:
    what it sends is read and dropped), then stop both."""

    async def hang_up() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    sender, listener = asyncio.create_task(send()), asyncio.create_task(hang_up())
    try:
        await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, listener):
            task.cancel()
        for task in (sender, listener):
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await task


async def upgrade_required(request: Request) -> Response:
    """A plain HTTP request to a WebSocket resource: 426, naming the protocol to upgrade to
    (RFC 9110 15.5.22)."""
    return error_response(
        426, "this resource is a WebSocket: upgrade the connection", {"Upgrade": "websocket"}
    )
