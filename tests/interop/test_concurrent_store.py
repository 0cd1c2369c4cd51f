"""Concurrent STOW-RS of one SOP Instance UID gives the outcome of some serial order.

Twelve clients store the same SOP Instance UID at once through a `serve --workers 2` process,
each into a study of its own: exactly one is stored, every other is failure A900 (the UID is
in another series), and every RetrieveURL any response lists resolves. Stored into one series
at once, one copy is stored and the others are warned B00E with a URL that resolves.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance
from tests.helpers import sequence, stow

CLIENTS = 12


def _race(base: str, datasets: list) -> list[httpx.Response]:
    barrier = threading.Barrier(len(datasets))
    answers: list[httpx.Response | None] = [None] * len(datasets)

    def one(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            barrier.wait()
            answers[n] = stow(http, [datasets[n]])

    threads = [threading.Thread(target=one, args=(n,)) for n in range(len(datasets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def _retrieve_urls(answers: list[httpx.Response]) -> list[str]:
    return [item["00081190"]["Value"][0] for a in answers for item in sequence(a, "00081199")]


@pytest.fixture
def workers(archive: RunningServer):
    if archive.backend not in ("postgresql", "sqlite"):
        pytest.skip("one run per database is enough: the race is in the index")
    process, base = start_serve(archive.settings, "--workers", "2")
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_one_uid_into_many_studies_at_once(workers: str) -> None:
    uid = generate_uid()
    answers = _race(workers, [make_instance(sop_instance_uid=uid) for _ in range(CLIENTS)])
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [409] * (CLIENTS - 1), [a.text[:300] for a in answers]
    for answer in answers:
        if answer.status_code == 409:
            (failed,) = sequence(answer, "00081198")
            assert failed["00081197"]["Value"] == [0xA900]
    urls = _retrieve_urls(answers)
    assert len(urls) == 1
    with httpx.Client(timeout=60) as http:
        for url in urls:
            assert http.get(url, headers={"Accept": "*/*"}).status_code == 200


def test_one_uid_into_one_series_at_once(workers: str) -> None:
    study, series, uid = generate_uid(), generate_uid(), generate_uid()
    answers = _race(workers, [make_instance(study, series, uid) for _ in range(CLIENTS)])
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200] + [202] * (CLIENTS - 1), [a.text[:300] for a in answers]
    urls = _retrieve_urls(answers)
    assert len(urls) == CLIENTS
    with httpx.Client(timeout=60) as http:
        for url in set(urls):
            assert http.get(url, headers={"Accept": "*/*"}).status_code == 200
        (found,) = http.get(f"{workers}/studies", params={"StudyInstanceUID": study}).json()
        assert found["00201208"]["Value"] == [1]  # NumberOfStudyRelatedInstances
