"""Byte offsets found at ingest: values, sequences, fragments and frames."""

from __future__ import annotations

import io

import pytest
from pydicom import dcmread
from pydicom.encaps import generate_frames

from dicomweb_server.dicom.errors import ObjectRejected
from dicomweb_server.dicom.frames import ImageGeometry, encapsulated_frames, native_frames
from dicomweb_server.dicom.part10 import _dataset_start
from dicomweb_server.dicom.scan import scan_dataset
from tests.factories import bundled_bytes, make_instance, to_bytes


def scan(data: bytes, threshold: int = 1024):  # type: ignore[no-untyped-def]
    return scan_dataset(data, _dataset_start(data), threshold)


def test_native_pixel_data_and_frames() -> None:
    ds = make_instance(rows=3, columns=5, frames=4)
    data = to_bytes(ds)
    result = scan(data)
    offset, length = result.pixel_value  # type: ignore[misc]
    assert data[offset : offset + length] == ds.PixelData
    frames = native_frames((offset, length), ImageGeometry(3, 5, 1, 16, 4))
    assert [data[o : o + n] for ((o, n),) in frames] == [
        ds.PixelData[i * 30 : (i + 1) * 30] for i in range(4)
    ]


@pytest.mark.parametrize("name", ["rtdose_rle.dcm", "SC_rgb_rle_2frame.dcm", "JPEG2000.dcm"])
def test_encapsulated_frames(name: str) -> None:
    data = bundled_bytes(name)
    ds = dcmread(io.BytesIO(data))
    count = int(ds.get("NumberOfFrames") or 1)
    result = scan(data)
    frames = encapsulated_frames(result, count, data)
    got = [b"".join(data[o : o + n] for o, n in frame) for frame in frames]
    assert got == list(generate_frames(ds.PixelData, number_of_frames=count))


def test_bulk_values_inside_sequences_are_found() -> None:
    data = bundled_bytes("waveform_ecg.dcm")
    ds = dcmread(io.BytesIO(data))
    result = scan(data)
    for i, item in enumerate(ds.WaveformSequence):
        value = result.bulk[f"54000100/{i}/54001010"]
        assert data[value.offset : value.offset + value.length] == item.WaveformData


def test_small_values_stay_inline() -> None:
    data = to_bytes(make_instance(rows=2, columns=2))
    assert list(scan(data, threshold=1024).bulk) == ["7FE00010"]


@pytest.mark.parametrize("cut", [1, 7, 100, 500])
def test_truncation_is_detected(cut: int) -> None:
    data = to_bytes(make_instance(rows=16, columns=16))
    with pytest.raises(ObjectRejected, match="truncated"):
        scan(data[:-cut])
