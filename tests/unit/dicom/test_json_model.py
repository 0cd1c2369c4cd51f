"""DICOM JSON Model (PS3.18 Annex F) built at ingest."""

from __future__ import annotations

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

from dicomweb_server.dicom.json_model import dataset_to_json


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
