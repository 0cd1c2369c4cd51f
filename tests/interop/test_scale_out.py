"""Scale-out: two server processes (one of them with two workers) share one PostgreSQL
database and one bucket, with no coordination of their own. Four clients store one study's
instances through both, alternately; both then give identical answers and exact aggregates.
"""

from __future__ import annotations

import threading

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance
from tests.helpers import stow, values


def test_two_processes_share_one_database_and_one_bucket(archive: RunningServer) -> None:
    if archive.backend != "postgresql+s3":
        pytest.skip("scale-out is PostgreSQL and S3: the production pair")
    a, url_a = start_serve(archive.settings, "--workers", "2")
    b, url_b = start_serve(archive.settings)
    try:
        study = generate_uid()
        series = [generate_uid(), generate_uid()]
        errors: list[str] = []

        def client(n: int) -> None:
            sessions = [httpx.Client(base_url=u, timeout=60) for u in (url_a, url_b)]
            for i in range(6):
                k = (n + i) % 2  # the series (and its modality) ...
                ds = make_instance(study, series[k], modality=("CT", "MR")[k])
                r = stow(sessions[i % 2], [ds])  # ... stored through either process
                if r.status_code != 200:
                    errors.append(f"{r.url}: {r.status_code} {r.text[:200]}")
            for session in sessions:
                session.close()

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert errors == []

        answers = []
        for base in (url_a, url_b):
            with httpx.Client(base_url=base, timeout=60) as http:
                (found,) = http.get("/studies", params={"StudyInstanceUID": study}).json()
                assert values(found, "00201208") == [24]  # NumberOfStudyRelatedInstances
                assert values(found, "00201206") == [2]  # NumberOfStudyRelatedSeries
                assert sorted(values(found, "00080061")) == ["CT", "MR"]  # ModalitiesInStudy
                per_series = http.get(f"/studies/{study}/series").json()
                assert sorted(values(s, "00201209")[0] for s in per_series) == [12, 12]
                # The same answers but for the absolute URLs, which name each process.
                answers.append(
                    [
                        http.get(path).text.replace(base, "ROOT")
                        for path in (
                            f"/studies?StudyInstanceUID={study}",
                            f"/studies/{study}/series",
                            f"/studies/{study}/instances",
                            f"/studies/{study}/metadata",
                        )
                    ]
                )
        assert answers[0] == answers[1]
    finally:
        for process in (a, b):
            process.terminate()
            process.wait(timeout=30)
