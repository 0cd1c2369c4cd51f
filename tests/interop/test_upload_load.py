"""Sixteen uploaders at once into a `serve --workers 2` process, readers meanwhile, and
clients that hang up in the middle of their upload.

Every answer is a 2xx (no 5xx, nothing stuck: every request ends within its timeout); the
studies' and series' counts are exact afterwards; what a client that hung up had sent in
whole parts is stored, its cut part is not; no request leaves a spool file or an object
without its index row.
"""

from __future__ import annotations

import socket
import threading
import time
from urllib.parse import urlsplit

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance, to_bytes
from tests.helpers import multipart_body, stow

UPLOADERS = 16
REQUESTS = 3
PER_REQUEST = 3


def _hang_up_mid_upload(base: str, whole: list[bytes], cut: bytes) -> None:
    """Send the whole parts and half of one more, then close the connection."""
    body, content_type = multipart_body([*whole, cut])
    boundary_at = body.rindex(cut[:64])
    sent = body[: boundary_at + len(cut) // 2]
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=30) as conn:
        head = (
            f"POST {url.path}/studies HTTP/1.1\r\nHost: {url.netloc}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        conn.sendall(head.encode() + sent)


def test_sixteen_uploaders_readers_and_hang_ups(archive: RunningServer) -> None:
    if archive.backend not in ("postgresql", "sqlite"):
        pytest.skip("once per database: the load is on the index and the spool")
    process, base = start_serve(archive.settings, "--workers", "2")
    studies = [generate_uid() for _ in range(2)]
    series = {n: generate_uid() for n in range(UPLOADERS)}
    statuses: list[int] = []
    stored: dict[str, str] = {}  # SOP Instance UID -> series
    lock = threading.Lock()
    done = threading.Event()

    def upload(n: int) -> None:
        study = studies[n % 2]
        with httpx.Client(base_url=base, timeout=60) as c:
            for _ in range(REQUESTS):
                batch = [
                    make_instance(study, series[n], rows=16, columns=16) for _ in range(PER_REQUEST)
                ]
                r = stow(c, batch)
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 200:
                        stored.update({ds.SOPInstanceUID: series[n] for ds in batch})
            if n % 4 == 0:
                whole = [make_instance(study, series[n], rows=16, columns=16) for _ in range(2)]
                cut = to_bytes(make_instance(study, series[n], rows=64, columns=64))
                _hang_up_mid_upload(base, [to_bytes(ds) for ds in whole], cut)
                with lock:
                    stored.update({ds.SOPInstanceUID: series[n] for ds in whole})

    def read() -> None:
        with httpx.Client(base_url=base, timeout=60) as c:
            while not done.is_set():
                for study in studies:
                    for r in (
                        c.get("/studies", params={"StudyInstanceUID": study}),
                        c.get(f"/studies/{study}/series"),
                        c.get(f"/studies/{study}/metadata"),
                    ):
                        with lock:
                            statuses.append(r.status_code)

    try:
        readers = [threading.Thread(target=read) for _ in range(2)]
        uploaders = [threading.Thread(target=upload, args=(n,)) for n in range(UPLOADERS)]
        for t in readers + uploaders:
            t.start()
        for t in uploaders:
            t.join(timeout=300)
        done.set()
        for t in readers:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in readers + uploaders), "a request got stuck"
        assert statuses and all(s in (200, 204, 404) for s in statuses), sorted(set(statuses))

        # The hung-up requests end on the server side too, their whole parts indexed.
        with httpx.Client(base_url=base, timeout=60) as c:
            for study in studies:
                mine = _series_of(series, study, studies)
                wanted = {u for u, s in stored.items() if s in mine}
                deadline = time.monotonic() + 30
                while True:
                    listed = c.get(f"/studies/{study}/instances").json()
                    held = {item["00080018"]["Value"][0] for item in listed}
                    if held == wanted or time.monotonic() > deadline:
                        break
                    time.sleep(0.2)
                assert held == wanted
                (found,) = c.get("/studies", params={"StudyInstanceUID": study}).json()
                assert found["00201208"]["Value"] == [len(wanted)]
                assert found["00201206"]["Value"] == [UPLOADERS // 2]
                for item in c.get(f"/studies/{study}/series").json():
                    uid = item["0020000E"]["Value"][0]
                    count = sum(1 for s in stored.values() if s == uid)
                    assert item["00201209"]["Value"] == [count]
    finally:
        process.terminate()
        process.wait(timeout=30)
    report = archive.container.consistency.check(grace_seconds=0)
    assert report.clean, report


def _series_of(series: dict[int, str], study: str, studies: list[str]) -> set[str]:
    return {uid for n, uid in series.items() if studies[n % 2] == study}
