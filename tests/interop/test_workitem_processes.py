"""UPS-RS across two server processes sharing one PostgreSQL database: 50 simultaneous
claims of one SCHEDULED workitem (25 through each process) make exactly one owner, and a
subscriber connected to one process is sent, within a second, the event reports of changes
made through the other (the reports are rows; LISTEN/NOTIFY wakes the other process)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.api.test_ups import GLOBAL, JSON, Channel, change_state, create, kind, subscribe
from tests.conftest import make_settings, start_serve
from tests.factories import make_workitem
from tests.integration.test_migrations import pg_schema

CLAIMS = 50


@pytest.fixture(scope="module")
def two_processes(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    folder: Path = tmp_path_factory.mktemp("workitems")
    settings = make_settings(folder, pg_schema(pg_url, "workitem_processes"))
    a, url_a = start_serve(settings)
    b, url_b = start_serve(settings)
    try:
        yield [url_a, url_b]
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(timeout=30)


def test_fifty_simultaneous_claims_make_one_owner(two_processes: list[str]) -> None:
    with httpx.Client(base_url=two_processes[0], timeout=60) as http:
        uid = create(http)
    start = threading.Barrier(CLAIMS)
    clients = [httpx.Client(base_url=u, timeout=60) for u in two_processes]

    def claim(n: int) -> tuple[int, str, str]:
        txn = generate_uid()
        body = {
            "00741000": {"vr": "CS", "Value": ["IN PROGRESS"]},
            "00081195": {"vr": "UI", "Value": [txn]},
        }
        start.wait()
        answer = clients[n % 2].put(
            f"/workitems/{uid}/state", content=json.dumps([body]), headers={"Content-Type": JSON}
        )
        status = answer.json()["status"] if answer.status_code >= 400 else ""
        return answer.status_code, status, txn

    try:
        with ThreadPoolExecutor(CLAIMS) as pool:
            answers = list(pool.map(claim, range(CLAIMS)))
        winners = [a for a in answers if a[0] == 200]
        assert len(winners) == 1, answers
        # Everybody else: PS3.4 C302, the workitem is already IN PROGRESS.
        assert sorted({(s, d) for s, d, _ in answers if s != 200}) == [(409, "C302")]
        # The winner's Transaction UID is the one that completes it.
        winner = winners[0][2]
        losers = [t for s, _, t in answers if s != 200]
        assert change_state(clients[1], uid, "CANCELED", losers[0]).status_code == 400
        assert change_state(clients[0], uid, "CANCELED", winner).status_code == 200
    finally:
        for c in clients:
            c.close()


def test_reports_of_changes_through_the_other_process_arrive_within_a_second(
    two_processes: list[str],
) -> None:
    here, there = (httpx.Client(base_url=u, timeout=60) for u in two_processes)
    channel = Channel(subscribe(here, GLOBAL, "ELSEWHERE"))
    try:
        assert channel.quiet(0.5)  # nothing is left from other tests
        delays = []
        for _ in range(5):
            began = time.monotonic()
            uid = create(there, make_workitem())
            assert kind(channel.next(2.0)) == (uid, 1, "SCHEDULED")
            delays.append(time.monotonic() - began)
            began = time.monotonic()
            assert change_state(there, uid, "IN PROGRESS", generate_uid()).status_code == 200
            assert kind(channel.next(2.0)) == (uid, 1, "IN PROGRESS")
            delays.append(time.monotonic() - began)
        assert max(delays) < 1.0, delays
    finally:
        channel.close()
        here.close()
        there.close()
