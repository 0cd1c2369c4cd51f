"""`serve --workers N`: connections get TCP_NODELAY even on a socket shared across processes."""

from __future__ import annotations

import asyncio
import socket

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from dicomweb_server.serving import NoDelayH11Protocol, NoDelayHttpToolsProtocol, http_protocol


async def _accepted_nodelay(protocol: type[NoDelayH11Protocol | NoDelayHttpToolsProtocol]) -> int:
    # A listening socket whose protocol field is 0, as uvicorn's workers receive it:
    # asyncio leaves Nagle's algorithm on for the connections it accepts there.
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    config = Config(app=lambda *_: None, log_level="warning")
    config.load()
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    class Probe(protocol):  # type: ignore[valid-type,misc]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            sock = transport.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    server = await asyncio.get_running_loop().create_server(
        lambda: Probe(config, ServerState(), {}), sock=listener
    )
    _, writer = await asyncio.open_connection(*listener.getsockname())
    try:
        return await asyncio.wait_for(seen, 5)
    finally:
        writer.close()
        server.close()


@pytest.mark.parametrize("protocol", [NoDelayH11Protocol, NoDelayHttpToolsProtocol])
def test_connections_on_a_shared_socket_get_tcp_nodelay(protocol: type) -> None:
    assert asyncio.run(_accepted_nodelay(protocol)) == 1


def test_the_http_setting_picks_the_protocol() -> None:
    assert http_protocol("httptools") is NoDelayHttpToolsProtocol
    assert http_protocol("h11") is NoDelayH11Protocol
