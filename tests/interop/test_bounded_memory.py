"""Every request's memory is bounded by settings, whatever its parameters.

A real `dicomweb-server serve` (one process, so its peak resident size, VmHWM, is the
server's) with a small decode budget: concurrent transcodes of an object that is small when
stored but large once decoded take turns within the budget; a rendering whose output would
be huge is refused before any work; WADO-URI streams an object in its stored syntax like
WADO-RS, however large it is and however many ask at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import RLELossless, generate_uid

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance, to_bytes
from tests.helpers import stow

MiB = 2**20
# One transcode of the 100 MiB object below takes about 600 MiB at its peak (the object is
# decoded, re-encoded, written and sent): the budget holds one such at a time.
BUDGET = 700 * MiB
RESPONSE = 128 * MiB


def peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def current_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture
def small_budget(archive: RunningServer) -> Iterator[tuple[int, str]]:
    if archive.backend != "sqlite":
        pytest.skip("memory bounds do not depend on the backends; run once")
    settings = archive.settings.model_copy(
        update={"decode_memory_bytes": BUDGET, "max_transcode_bytes": RESPONSE}
    )
    process, base = start_serve(settings)
    try:
        yield process.pid, base
    finally:
        process.terminate()
        process.wait(timeout=30)


def rle_object(frames: int) -> bytes:
    """Small when stored (RLE of flat frames), `frames` x 512 KiB once decoded."""
    one = make_instance(rows=512, columns=512)
    one.PixelData = np.full((512, 512), 7, dtype="<u2").tobytes()
    one.compress(RLELossless, generate_instance_uid=False)
    fragment = next(iter(_fragments(one)))
    ds = make_instance(rows=512, columns=512, frames=1)
    ds.NumberOfFrames = frames
    ds.PixelData = encapsulate([fragment] * frames)
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = RLELossless
    return to_bytes(ds)


def _fragments(ds):
    from pydicom.encaps import generate_frames

    return generate_frames(ds.PixelData, number_of_frames=1)


def _parallel(count: int, call) -> list:
    results: list = [None] * count

    def one(n: int) -> None:
        results[n] = call()

    threads = [threading.Thread(target=one, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    return results


def test_concurrent_transcodes_take_turns_within_the_budget(small_budget: tuple[int, str]) -> None:
    pid, base = small_budget
    data = rle_object(frames=200)  # 100 MiB decoded, a few hundred kB stored
    with httpx.Client(base_url=base, timeout=300) as c:
        r = stow(c, [data])
        assert r.status_code == 200, r.text
        url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
    before = current_rss(pid)
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.1'

    def transcode() -> int:
        with httpx.Client(timeout=300) as c:
            got = c.get(url, headers={"Accept": accept})
            return got.status_code if got.status_code != 200 or len(got.content) > 100 * MiB else 0

    statuses = _parallel(4, transcode)
    assert all(s in (200, 503) for s in statuses), statuses
    assert 200 in statuses
    grown = peak_rss(pid) - before
    print(f"\n4 concurrent transcodes of 100 MiB decoded: peak grew {grown / MiB:.0f} MiB")
    # Four at once without the budget: about four times one transcode (well over 1 GB).
    assert grown < BUDGET + 100 * MiB, f"peak grew {grown / MiB:.0f} MiB"
    # One that alone needs more than a response may decode is refused before any work.
    huge = rle_object(frames=300)  # 150 MiB decoded
    with httpx.Client(base_url=base, timeout=300) as c:
        r = stow(c, [huge])
        big_url = r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]
        refused = c.get(big_url, headers={"Accept": accept})
        assert refused.status_code == 406 and "transfer-syntax=*" in refused.text
        as_stored = 'multipart/related; type="application/dicom"; transfer-syntax=*'
        assert c.get(big_url, headers={"Accept": as_stored}).status_code == 200


def test_huge_renderings_are_refused_before_any_work(small_budget: tuple[int, str]) -> None:
    pid, base = small_budget
    ds = make_instance(rows=16, columns=16, frames=3)
    with httpx.Client(base_url=base, timeout=60) as c:
        assert stow(c, [ds]).status_code == 200
        url = (
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        before = peak_rss(pid)
        for path, params in (
            ("/rendered", {"viewport": "16384,16384"}),
            ("/rendered", {"viewport": "16384,16384", "accept": "image/gif"}),
            ("/frames/1,2,3/rendered", {"viewport": "16384,16384"}),
            ("/thumbnail", {"viewport": "16384,16384"}),
        ):
            accept = params.pop("accept", "image/gif")
            r = c.get(url + path, params=params, headers={"Accept": accept})
            assert r.status_code == 400, (path, r.status_code, r.text[:200])
            assert "pixels" in r.json()["error"]
        query = {
            "requestType": "WADO",
            "studyUID": ds.StudyInstanceUID,
            "seriesUID": ds.SeriesInstanceUID,
            "objectUID": ds.SOPInstanceUID,
            "contentType": "image/gif",
            "rows": "16384",
            "columns": "16384",
        }
        assert c.get("/wado", params=query).status_code == 400
        assert peak_rss(pid) - before < 50 * MiB
        # Within the bound the same requests are served.
        r = c.get(
            url + "/rendered", params={"viewport": "512,512"}, headers={"Accept": "image/gif"}
        )
        assert r.status_code == 200


def test_wado_uri_streams_the_stored_object(small_budget: tuple[int, str]) -> None:
    pid, base = small_budget
    study = generate_uid()
    ds = make_instance(study, rows=1024, columns=1024, frames=100)  # 200 MiB, past RESPONSE
    with httpx.Client(base_url=base, timeout=300) as c:
        assert stow(c, [ds]).status_code == 200
    size = len(to_bytes(ds))
    query = {
        "requestType": "WADO",
        "studyUID": study,
        "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID,
        "contentType": "application/dicom",
    }
    before = current_rss(pid)

    def fetch() -> int:
        received = 0
        with httpx.stream("GET", base + "/wado", params=query, timeout=300) as r:
            assert r.status_code == 200, r.read()[:200]
            for chunk in r.iter_bytes():
                received += len(chunk)
        return received

    assert _parallel(6, fetch) == [size] * 6
    grown = peak_rss(pid) - before
    print(f"\n6 concurrent WADO-URI downloads of {size / MiB:.0f} MiB: grew {grown / MiB:.0f} MiB")
    assert grown < 100 * MiB, f"peak grew {grown / MiB:.0f} MiB for 6 x {size / MiB:.0f} MiB"
