"""Delete under load (issue 18): deletes racing stores into the same study leave its counts
exact, and a server killed with SIGKILL in the middle of deletes leaves every instance
either whole or gone, with nothing `check --repair` cannot clear."""

from __future__ import annotations

import signal
import threading
import time

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance
from tests.helpers import stow


def _skip_s3(archive: RunningServer) -> None:
    if "s3" in archive.backend:
        pytest.skip("once per database: the race is in the index")


def test_deletes_racing_stores_keep_the_counts_exact(
    archive: RunningServer, client: httpx.Client
) -> None:
    _skip_s3(archive)
    study = generate_uid()
    series = [generate_uid() for _ in range(3)]
    stop = threading.Event()
    errors: list[str] = []
    deleted: list[str] = []

    def store(n: int) -> None:
        with httpx.Client(base_url=archive.base_url, timeout=60) as c:
            for _ in range(15):
                items = [make_instance(study, series[n], rows=8, columns=8) for _ in range(2)]
                r = stow(c, items)
                if r.status_code != 200:
                    errors.append(r.text[:200])

    def delete() -> None:
        with httpx.Client(base_url=archive.base_url, timeout=60) as c:
            while not stop.is_set():
                found = c.get(f"/studies/{study}/instances", params={"limit": "3"})
                for item in found.json() if found.status_code == 200 else []:
                    url = item["00081190"]["Value"][0]
                    r = c.delete(url)
                    if r.status_code == 204:
                        deleted.append(url)
                    elif r.status_code != 404:
                        errors.append(r.text[:200])

    storers = [threading.Thread(target=store, args=(n,)) for n in range(3)]
    deleter = threading.Thread(target=delete)
    for t in (*storers, deleter):
        t.start()
    for t in storers:
        t.join()
    stop.set()
    deleter.join()
    assert errors == []
    assert deleted, "the deletes never met the stores"
    left = client.get(f"/studies/{study}/instances", params={"limit": "1000"})
    held = left.json() if left.status_code == 200 else []
    studies = client.get("/studies", params={"StudyInstanceUID": study}).json()
    if not held:
        assert studies == []
        return
    [found] = studies
    assert found["00201208"]["Value"] == [len(held)]
    by_series = {i["0020000E"]["Value"][0] for i in held}
    assert found["00201206"]["Value"] == [len(by_series)]
    for uid in by_series:
        listed = client.get(f"/studies/{study}/series", params={"SeriesInstanceUID": uid}).json()
        expected = sum(1 for i in held if i["0020000E"]["Value"][0] == uid)
        assert listed[0]["00201209"]["Value"] == [expected]


def test_kill_during_deletes_leaves_each_instance_whole_or_gone(
    archive: RunningServer, client: httpx.Client
) -> None:
    _skip_s3(archive)
    studies = [generate_uid() for _ in range(12)]
    items = {s: [make_instance(s, rows=16, columns=16) for _ in range(3)] for s in studies}
    for batch in items.values():
        assert stow(client, batch).status_code == 200
    process, base = start_serve(archive.settings)
    done: list[str] = []

    def delete() -> None:
        with httpx.Client(base_url=base, timeout=30) as c:
            for study in studies:
                try:
                    if c.delete(f"/studies/{study}").status_code == 204:
                        done.append(study)
                except httpx.HTTPError:
                    return  # the server died under this request

    deleter = threading.Thread(target=delete)
    try:
        deleter.start()
        deadline = time.monotonic() + 30
        while len(done) < 3:
            assert time.monotonic() < deadline, "no delete went through"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
        deleter.join(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    for study in studies:
        listed = client.get(f"/studies/{study}/instances")
        held = listed.json() if listed.status_code == 200 else []
        if study in done:
            assert held == []
        # Whole or gone: every instance listed is served, object and metadata.
        assert len(held) in (0, 3)
        for item in held:
            url = item["00081190"]["Value"][0]
            assert client.get(url + "/metadata").status_code == 200
            assert client.get(url).status_code == 200
    consistency = archive.container.consistency
    assert consistency.check(grace_seconds=3600).missing == []
    consistency.check(repair=True, grace_seconds=0)
    assert consistency.check(grace_seconds=0).clean
