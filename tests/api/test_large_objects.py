"""A 1 GB object goes in and out through streams: the server's memory stays flat.

The server runs in this process (a thread), so the process's resident memory is sampled
while the body is sent and while it is read back. The body is generated on the fly and sent
with chunked transfer encoding (no Content-Length), as dicomweb-client does.
"""

from __future__ import annotations

import io
import os
import struct
import threading
from collections.abc import Iterator

import httpx
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from tests.conftest import RunningServer
from tests.helpers import sequence

SIZE_MB = int(os.environ.get("DICOMWEB_TEST_LARGE_MB", "1024"))
ROWS = COLUMNS = 512
FRAME_BYTES = ROWS * COLUMNS * 2
LIMIT_MB = 100


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class PeakMemory:
    def __init__(self) -> None:
        self.baseline = rss_mb()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> float:
        return self.peak - self.baseline


def frame(n: int) -> bytes:
    return struct.pack("<H", n % 65536) * (FRAME_BYTES // 2)


def large_instance(frames: int) -> tuple[Dataset, Iterator[bytes], int]:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word SC
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "LARGE"
    ds.Modality = "OT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns, ds.NumberOfFrames = ROWS, COLUMNS, frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    head = io.BytesIO()
    ds.save_as(head, enforce_file_format=True)
    pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * FRAME_BYTES)
    header = head.getvalue() + pixel_header
    boundary = "large-object-boundary"

    def body() -> Iterator[bytes]:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + header
        for n in range(frames):
            yield frame(n)
        yield f"\r\n--{boundary}--\r\n".encode()

    return ds, body(), len(header) + frames * FRAME_BYTES


@pytest.fixture
def sqlite_archive(server: RunningServer) -> RunningServer:
    """Once per blob store: the streaming paths do not depend on the index."""
    if server.database != "sqlite":
        pytest.skip("the streaming paths do not depend on the index; run once per blob store")
    server.reset()
    return server


def test_one_gigabyte_in_and_out_with_flat_memory(sqlite_archive: RunningServer) -> None:
    frames = SIZE_MB * 2**20 // FRAME_BYTES
    ds, body, size = large_instance(frames)
    content_type = 'multipart/related; type="application/dicom"; boundary=large-object-boundary'
    with httpx.Client(base_url=sqlite_archive.base_url, timeout=600) as client:
        with PeakMemory() as upload:
            r = client.post("/studies", content=body, headers={"Content-Type": content_type})
        assert r.status_code == 200, r.text
        assert len(sequence(r, "00081199")) == 1
        assert upload.growth < LIMIT_MB, f"upload grew memory by {upload.growth:.0f} MB"

        url = (
            f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
            f"{ds.SOPInstanceUID}"
        )
        received = 0
        with PeakMemory() as download, client.stream("GET", url) as response:
            assert response.status_code == 200
            for chunk in response.iter_raw():
                received += len(chunk)
        assert received > size
        assert download.growth < LIMIT_MB, f"download grew memory by {download.growth:.0f} MB"
        print(f"memory growth: upload {upload.growth:.1f} MB, download {download.growth:.1f} MB")

        # The last frame is one ranged read at an offset found at ingest.
        last = client.get(url + f"/frames/{frames}")
        assert last.status_code == 200
        assert frame(frames - 1) in last.content

        # The same object in a zip archive: written as it is sent, memory stays flat.
        study_url = f"/studies/{ds.StudyInstanceUID}"
        zipped = 0
        with (
            PeakMemory() as archive_read,
            client.stream("GET", study_url, headers={"Accept": "application/zip"}) as response,
        ):
            assert response.status_code == 200
            assert response.headers["content-type"] == "application/zip"
            for chunk in response.iter_raw():
                zipped += len(chunk)
        assert zipped > size
        assert archive_read.growth < LIMIT_MB, f"zip grew memory by {archive_read.growth:.0f} MB"
        print(f"memory growth: zip download {archive_read.growth:.1f} MB")

        # Transcoding would hold the object in memory: past the bound it is refused, not tried.
        r = client.get(
            url,
            headers={
                "Accept": 'multipart/related; type="application/dicom"; '
                "transfer-syntax=1.2.840.10008.1.2.5"
            },
        )
        assert r.status_code == 406
        assert "transfer-syntax=*" in r.json()["error"]
