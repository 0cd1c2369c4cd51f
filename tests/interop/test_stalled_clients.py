"""No unbounded waits: stalled uploads, slow headers and idle connections end by themselves.

A real `dicomweb-server serve` with short timeouts and a small upload bound: uploads that
stop sending half-way are answered 408 (or closed) and leave no spool behind; a client that
never finishes its request headers is disconnected; uploads beyond the bound answer 503 with
Retry-After; once the stalled clients are gone every request is served again.
"""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance, to_bytes
from tests.helpers import stow

STALLED = 40


def _port(base: str) -> int:
    return int(base.split(":")[2].split("/")[0])


def _stalled_upload(port: int, path: str) -> socket.socket:
    """A STOW-RS request whose body stops half-way through its first part."""
    part = to_bytes(make_instance())
    body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part[: len(part) // 2]
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        'Content-Type: multipart/related; type="application/dicom"; boundary=b\r\n'
        f"Content-Length: {len(body) * 4}\r\n\r\n"
    ).encode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(head + body)
    return sock


def _closed_or_answered(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing, or None if it kept silent past `within`."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


@pytest.fixture
def strict_server(archive: RunningServer):
    if archive.backend not in ("sqlite", "postgresql"):
        pytest.skip("timeouts do not depend on the blob store")
    settings = archive.settings.model_copy(
        update={
            "body_timeout_seconds": 2,
            "header_timeout_seconds": 2,
            "max_concurrent_uploads": 8,
        }
    )
    process, base = start_serve(settings)
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_stalled_uploads_are_answered_and_leave_nothing(
    archive: RunningServer, strict_server: str
) -> None:
    base = strict_server
    port = _port(base)
    path = base.split(str(port), 1)[1] + "/studies"
    socks = [_stalled_upload(port, path) for _ in range(STALLED)]
    time.sleep(0.5)
    try:
        # Beyond the bound, an upload is refused at once (503 with Retry-After).
        with httpx.Client(base_url=base, timeout=30) as c:
            busy = c.post(
                "/studies",
                content=b"--b--\r\n",
                headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
            )
        assert busy.status_code == 503, busy.text
        assert busy.headers.get("retry-after")
        started = time.monotonic()
        answers = [_closed_or_answered(s, within=20) for s in socks]
        assert all(a is not None for a in answers), "a stalled upload was held open"
        assert time.monotonic() - started < 20
        # Those admitted time out (408); those past the bound were refused at once (503).
        statuses = {a[:12] for a in answers if a}
        assert statuses <= {b"HTTP/1.1 408", b"HTTP/1.1 503"}, statuses
        assert b"HTTP/1.1 408" in statuses
    finally:
        for s in socks:
            s.close()
    # Nothing of the stalled uploads is kept, and the server serves everyone again.
    deadline = time.monotonic() + 10
    while archive.container.store.spool.leftovers() or list(
        archive.container.store.spool.root.iterdir()
    ):
        assert time.monotonic() < deadline, list(archive.container.store.spool.root.iterdir())
        time.sleep(0.2)
    with httpx.Client(base_url=base, timeout=30) as c:
        body = b"--b\r\nContent-Type: application/dicom\r\n\r\n" + to_bytes(make_instance())
        r = c.post(
            "/studies",
            content=body + b"\r\n--b--\r\n",
            headers={"Content-Type": 'multipart/related; type="application/dicom"; boundary=b'},
        )
        assert r.status_code == 200, r.text


def test_slow_headers_are_disconnected(strict_server: str) -> None:
    port = _port(strict_server)
    socks = []
    for _ in range(20):
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        socks.append(sock)
    idle = socket.create_connection(("127.0.0.1", port), timeout=30)  # sends nothing at all
    socks.append(idle)
    try:
        started = time.monotonic()
        for sock in socks:
            assert _closed_or_answered(sock, within=15) is not None, "a slow client was kept"
        assert time.monotonic() - started < 15
        assert httpx.get(strict_server.rsplit("/", 1)[0] + "/health").status_code == 200
    finally:
        for sock in socks:
            sock.close()


def test_running_out_of_file_descriptors_is_never_a_500(archive: RunningServer) -> None:
    """With a low file limit, idle connections take every descriptor: requests then wait or
    answer 503, never 500, and all is served again once the idle ones are dropped."""
    if archive.backend != "sqlite":
        pytest.skip("once is enough")
    settings = archive.settings.model_copy(update={"header_timeout_seconds": 3})
    process, base = start_serve(settings, prefix=("prlimit", "--nofile=128:128"))
    port = _port(base)
    try:
        idle = []
        for _ in range(200):
            try:
                idle.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            except OSError:
                break
        statuses = []
        with httpx.Client(base_url=base, timeout=30) as c:
            for _ in range(5):
                try:
                    statuses.append(stow(c, [make_instance()]).status_code)
                except httpx.TransportError:
                    statuses.append(0)  # not accepted in time: a wait, not an error
        assert 500 not in statuses, statuses
        for s in idle:
            s.close()
        time.sleep(1)
        with httpx.Client(base_url=base, timeout=30) as c:
            assert stow(c, [make_instance()]).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
