"""How `serve` runs the app under uvicorn.

With `--workers N`, uvicorn binds the socket in the parent and hands it to each worker. A
socket that crossed processes this way no longer reports IPPROTO_TCP, so asyncio does not
set TCP_NODELAY on the connections it accepts; responses (headers and body written
separately) then wait for the client's delayed ACK, about 40 ms each. The protocol below
sets TCP_NODELAY on every connection itself.
"""

from __future__ import annotations

import asyncio
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayH11Protocol(H11Protocol):
    # H11Protocol narrows the transport to asyncio.Transport; so must this override.
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
