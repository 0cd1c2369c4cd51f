"""`serve`: connections get TCP_NODELAY even on a socket shared across processes (`--workers
N`), as many workers as usable cores by default, and log lines written in batches."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import socket
import time
from pathlib import Path

import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from dicomweb_server.serving import (
    BatchingStreamHandler,
    NoDelayH11Protocol,
    NoDelayHttpToolsProtocol,
    http_protocol,
    usable_cores,
)


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


def test_workers_follow_the_cgroup_quota(tmp_path: Path) -> None:
    """`serve` with no flags: one worker per core the process may use, the cgroup's CPU
    quota included (rounded up), never fewer than one."""
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == affinity
    quota.write_text("150000 100000\n")
    assert usable_cores(quota) == min(affinity, 2)
    quota.write_text("10000 100000\n")
    assert usable_cores(quota) == 1
    assert usable_cores(tmp_path / "absent") == affinity


def test_log_lines_are_written_in_batches_and_warnings_at_once() -> None:
    out = io.StringIO()
    handler = BatchingStreamHandler()
    handler.setStream(out)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("dicomweb_server.test_batching")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("first")
        logger.info("second")
        assert out.getvalue() == ""  # waiting for the batch
        logger.warning("third")  # written at once, with the lines before it, in order
        assert out.getvalue() == "first\nsecond\nthird\n"
        logger.info("fourth")
        deadline = time.monotonic() + 5
        while "fourth" not in out.getvalue() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert out.getvalue().endswith("fourth\n")  # within FLUSH_SECONDS
        logger.info("fifth")
        handler.flush()  # what logging's shutdown does at exit
        assert out.getvalue().endswith("fifth\n")
    finally:
        logger.removeHandler(handler)
