"""A server process killed in the middle of a large STOW-RS request loses nothing acknowledged.

A real `dicomweb-server serve` shares the archive (database and object store) of the test
server. It is killed with SIGKILL while a multipart request is streaming; after a restart,
everything acknowledged before is retrievable, no index row lacks its object, and
`check --repair` leaves the archive consistent.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import httpx
from pydicom import dcmread
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


def test_kill_under_concurrent_batched_stores_loses_nothing_acknowledged(
    archive: RunningServer, client: httpx.Client
) -> None:
    """Four uploaders send requests of several instances each (indexed as one batch, made
    durable together before the answer); the server is killed with SIGKILL under them. Every
    instance of every answered request is there afterwards, whole, with its study's and
    series' counts exact; nothing of an unanswered request is half there."""
    process, base = start_server(archive)
    study = generate_uid()
    series = [generate_uid() for _ in range(4)]
    acknowledged: dict[str, bytes] = {}
    sent: dict[str, bytes] = {}
    series_of: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def upload(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            while not stop.is_set():
                batch = [
                    to_bytes(make_instance(study, series[n], rows=32, columns=32)) for _ in range(6)
                ]
                uids = [str(dcmread(io.BytesIO(b)).SOPInstanceUID) for b in batch]
                with lock:
                    sent.update(zip(uids, batch, strict=True))
                    series_of.update(dict.fromkeys(uids, series[n]))
                try:
                    r = stow(c, batch)
                except httpx.HTTPError:
                    return  # the server died under this request: not acknowledged
                assert r.status_code == 200, r.text
                with lock:
                    acknowledged.update(zip(uids, batch, strict=True))

    uploaders = [threading.Thread(target=upload, args=(n,)) for n in range(4)]
    try:
        for t in uploaders:
            t.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 60:
            assert time.monotonic() < deadline, "the uploads stored nothing"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
        for t in uploaders:
            t.join(timeout=30)

    listed = client.get(f"/studies/{study}/instances").json()
    indexed = {item["00080018"]["Value"][0]: item["00081190"]["Value"][0] for item in listed}
    assert set(acknowledged) <= set(indexed)
    # What was indexed was sent, acknowledged or not, and is whole.
    assert set(indexed) <= set(sent)
    for uid, url in indexed.items():
        r = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
        assert r.status_code == 200 and sent[uid] in r.content
    (found,) = client.get("/studies", params={"StudyInstanceUID": study}).json()
    assert found["00201208"]["Value"] == [len(indexed)]
    for item in client.get(f"/studies/{study}/series").json():
        uid = item["0020000E"]["Value"][0]
        held = [u for u in indexed if series_of[u] == uid]
        assert item["00201209"]["Value"] == [len(held)]
    # The change log (issue 16) agrees with the index: one create per indexed instance, none
    # for an instance that is not there.
    feed = client.get("/changefeed", params={"limit": 1000}).json()
    assert sorted(e["SopInstanceUid"] for e in feed) == sorted(indexed)
    assert {(e["Action"], e["State"]) for e in feed} == {("create", "current")}
    assert archive.container.consistency.check(grace_seconds=3600).missing == []
    # The killed requests' spool folders and the objects they staged but never indexed.
    archive.container.consistency.check(repair=True, grace_seconds=0)
    assert archive.container.consistency.check(grace_seconds=0).clean
    # A folder the kill caught while it was being made is left for a minute (it may be a
    # request starting in another process); the fixture wants the spool empty now.
    for staging in archive.container.store.spool.root.glob(".new-*"):
        shutil.rmtree(staging)
