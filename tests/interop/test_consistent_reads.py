"""Reads while the instance is overwritten see the old or the new object, never an error.

With the `overwrite` duplicate policy, one client stores the same SOP Instance again and
again while others retrieve it (instance, metadata, frame): every answer is 200 and holds one
of the stored versions whole. The replaced copies are retired, not deleted at once, so a
reader that looked one up just before the replacement still reads it.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance, to_bytes
from tests.helpers import parts, stow


def test_reading_while_overwriting(archive: RunningServer) -> None:
    if archive.backend == "sqlite+s3":
        pytest.skip("one S3 run (PostgreSQL) is enough")
    settings = archive.settings.model_copy(update={"duplicate_policy": "overwrite"})
    process, base = start_serve(settings)
    try:
        study, series, uid = generate_uid(), generate_uid(), generate_uid()
        versions = [
            make_instance(study, series, uid, rows=64, columns=64, study_description=f"V{n}")
            for n in range(4)
        ]
        encoded = {to_bytes(v) for v in versions}
        with httpx.Client(base_url=base, timeout=60) as c:
            assert stow(c, [versions[0]]).status_code == 200
        url = f"/studies/{study}/series/{series}/instances/{uid}"
        stop = threading.Event()
        failures: list[str] = []
        reads = [0]

        def writer() -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                n = 0
                while not stop.is_set():
                    n += 1
                    r = stow(c, [versions[n % len(versions)]])
                    if r.status_code != 200:
                        failures.append(f"store {r.status_code} {r.text[:200]}")

        def reader() -> None:
            with httpx.Client(base_url=base, timeout=60) as c:
                while not stop.is_set():
                    r = c.get(url, headers={"Accept": "*/*"})
                    m = c.get(url + "/metadata")
                    f = c.get(url + "/frames/1", headers={"Accept": "*/*"})
                    reads[0] += 1
                    for answer in (r, m, f):
                        if answer.status_code != 200:
                            failures.append(f"{answer.url} {answer.status_code} {answer.text}")
                    if r.status_code == 200 and parts(r)[0][1] not in encoded:
                        failures.append("an instance that is none of the stored versions")

        threads = [threading.Thread(target=writer)] + [
            threading.Thread(target=reader) for _ in range(3)
        ]
        for t in threads:
            t.start()
        time.sleep(6)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert failures == [], failures[:5]
        assert reads[0] > 20
        # Every replaced copy is kept (retired) until the grace period has passed.
        report = archive.container.consistency.check()
        assert report.orphans == [] and report.missing == [], report
        # Past it, the sweep removes them; the current copy stays and is served.
        consistency = archive.container.consistency
        consistency.check(repair=True, grace_seconds=0)
        assert len(list(archive.container.blobs.iter_keys())) == 1
        assert consistency.check().clean
        with httpx.Client(base_url=base, timeout=60) as c:
            assert c.get(url, headers={"Accept": "*/*"}).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
