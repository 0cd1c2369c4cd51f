"""DICOM JSON Model (PS3.18 Annex F) built at ingest."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dicomweb_server.dicom.json_model import dataset_to_json
from tests.factories import bundled_path, make_instance, to_bytes

TEST_FILES = Path(bundled_path("CT_small.dcm")).parent
BUNDLED_ALL = [p.name for p in TEST_FILES.glob("*.dcm")]


def uri(path: str) -> str:
    return f"/bulk/{path}"


def test_value_representations() -> None:
    ds = Dataset()
    ds.PatientName = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.ImageType = ["ORIGINAL", "", "AXIAL"]
    ds.SliceThickness = "2.5"
    ds.InstanceNumber = "7"
    ds.Rows = 512
    ds.PixelSpacing = ["0.5", "0.5"]
    ds.add_new(0x00091001, "OB", b"\x01\x02")
    ds.add_new(0x00280009, "AT", [0x00181063])
    ds.ReferencedImageSequence = Sequence([Dataset()])
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3"
    out = dataset_to_json(ds, [], uri)
    assert out["00100010"] == {
        "vr": "PN",
        "Value": [
            {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
        ],
    }
    assert out["00080008"]["Value"] == ["ORIGINAL", None, "AXIAL"]
    assert out["00180050"] == {"vr": "DS", "Value": [2.5]}
    assert out["00200013"] == {"vr": "IS", "Value": [7]}
    assert out["00280010"] == {"vr": "US", "Value": [512]}
    assert out["00091001"] == {"vr": "OB", "InlineBinary": "AQI="}
    assert out["00280009"] == {"vr": "AT", "Value": ["00181063"]}
    assert out["00081140"]["Value"][0]["00081155"] == {"vr": "UI", "Value": ["1.2.3"]}
    assert list(out) == sorted(out)


def test_bulk_paths_become_uris_and_extra_bulk_is_added() -> None:
    ds = Dataset()
    ds.add_new(0x00091001, "OB", b"\x00" * 4096)
    out = dataset_to_json(ds, ["00091001"], uri, extra_bulk={"7FE00010": "OW"})
    assert out["00091001"] == {"vr": "OB", "BulkDataURI": "/bulk/00091001"}
    assert out["7FE00010"] == {"vr": "OW", "BulkDataURI": "/bulk/7FE00010"}


def test_a_malformed_value_keeps_its_text() -> None:
    ds = Dataset()
    # As read from a file: pydicom refuses to build this value, so it stays raw.
    ds[0x00180050] = RawDataElement(Tag(0x00180050), "DS", 4, b"abc ", 0, False, True, True, False)
    ds.PatientID = "P1"
    out = dataset_to_json(ds, [], uri)
    assert out["00100020"]["Value"] == ["P1"]
    assert out["00180050"]["Value"] == ["abc"]


@pytest.mark.parametrize("name", sorted(BUNDLED_ALL))
def test_fast_path_gives_what_pydicom_gives(name: str) -> None:
    """The conversion from raw bytes equals the one through pydicom, on every bundled file."""
    path = bundled_path(name)
    for pixels in (False, True):
        fast = dataset_to_json(dcmread(path, stop_before_pixels=pixels, force=True), [], uri)
        slow = dataset_to_json(
            dcmread(path, stop_before_pixels=pixels, force=True), [], uri, fast=False
        )
        assert fast == slow


def test_fast_path_on_synthetic_instances() -> None:
    for charset, name in (
        ("ISO_IR 192", "Wang^XiaoDong=王^小東"),
        ("ISO_IR 100", "Müller^J"),
        ("", "Doe^John"),
        (["ISO 2022 IR 6", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎"),
    ):
        ds = make_instance(patient_name="x", frames=2)
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        ds.ImageType = ["ORIGINAL", "", "AXIAL"]
        ds.PixelSpacing = ["0.5", "0.25"]
        ds.add_new(0x00280009, "AT", [0x00181063, 0x00209113])
        raw = dcmread(io.BytesIO(to_bytes(ds)))
        again = dcmread(io.BytesIO(to_bytes(ds)))
        assert dataset_to_json(raw, [], uri) == dataset_to_json(again, [], uri, fast=False)
