"""A server process killed in the middle of a large STOW-RS request loses nothing acknowledged.

A real `dicomweb-server serve` shares the archive (database and object store) of the test
server. It is killed with SIGKILL while a multipart request is streaming; after a restart,
everything acknowledged before is retrievable, no index row lacks its object, and
`check --repair` leaves the archive consistent.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance, to_bytes
from tests.helpers import STOW_TYPE, stow


def start_server(archive: RunningServer) -> tuple[subprocess.Popen[bytes], str]:
    return start_serve(archive.settings)


def test_kill_during_a_large_stow(archive: RunningServer, client: httpx.Client) -> None:
    process, base = start_server(archive)
    try:
        study = generate_uid()
        acknowledged = [make_instance(study, rows=32, columns=32) for _ in range(4)]
        with httpx.Client(base_url=base, timeout=60) as c:
            assert stow(c, acknowledged).status_code == 200

        # A long request: parts keep coming until the server is killed under it.
        killed = threading.Event()
        boundary = "crash-test-boundary"

        def body() -> Iterator[bytes]:
            for _ in range(10_000):
                if killed.is_set():
                    return
                part = to_bytes(make_instance(study, rows=64, columns=64, frames=4))
                yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                yield part + b"\r\n"
                time.sleep(0.01)

        def send() -> None:
            # The server dies under this request: a transport error is expected.
            with contextlib.suppress(httpx.HTTPError):
                httpx.post(
                    f"{base}/studies",
                    content=body(),
                    timeout=60,
                    headers={"Content-Type": STOW_TYPE.format(boundary)},
                )

        sender = threading.Thread(target=send)
        sender.start()
        # Kill once some parts of the long request have been stored.
        deadline = time.monotonic() + 30
        while len(client.get(f"/studies/{study}/instances").json()) < 8:
            assert time.monotonic() < deadline, "the long request stored nothing"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        killed.set()
        sender.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    assert archive.container.store.spool.leftovers(), "the killed request left no spool folder"
    # The killed process left its request's spool folder and, maybe, an object it wrote but
    # never indexed. The restarted process removes both by itself (start-up sweep), no
    # `check --repair` needed; a short grace period stands for "long after the crash".
    process, base = start_serve(archive.settings.model_copy(update={"orphan_grace_seconds": 1}))
    try:
        deadline = time.monotonic() + 30
        while not (report := archive.container.consistency.check(grace_seconds=0)).clean:
            assert time.monotonic() < deadline, report
            time.sleep(0.5)
        assert report.missing == []
        with httpx.Client(base_url=base, timeout=60) as c:
            for ds in acknowledged:
                url = (
                    f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
                )
                r = c.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
                assert r.status_code == 200
                assert to_bytes(ds) in r.content
            # Every indexed instance is whole: its object is there and is served.
            listed = c.get(f"/studies/{study}/instances").json()
            for item in listed:
                url = item["00081190"]["Value"][0]
                assert c.get(url + "/metadata").status_code == 200
                assert c.get(url).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
