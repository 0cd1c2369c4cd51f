"""Test data made with pydicom: synthetic instances and the files bundled in its wheel."""

from __future__ import annotations

import copy
import io
import itertools
from pathlib import Path
from typing import Any

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"

# Files shipped inside pydicom's wheel (get_testdata_file reaches the network for others).
BUNDLED = {
    "CT_small.dcm": "explicit VR little endian CT",
    "MR_small.dcm": "explicit VR little endian MR",
    "MR_small_implicit.dcm": "implicit VR little endian",
    "MR_small_bigendian.dcm": "explicit VR big endian",
    "MR_small_RLE.dcm": "RLE lossless",
    "MR_small_jpeg_ls_lossless.dcm": "JPEG-LS lossless",
    "MR_small_jp2klossless.dcm": "JPEG 2000 lossless",
    "SC_rgb_jpeg_dcmtk.dcm": "JPEG baseline colour",
    "SC_rgb_rle_2frame.dcm": "RLE colour, 2 frames",
    "JPEG2000.dcm": "JPEG 2000",
    "rtdose.dcm": "implicit VR multi-frame (15 frames)",
    "rtdose_rle.dcm": "RLE multi-frame (15 frames)",
    "image_dfl.dcm": "deflated explicit VR little endian",
    "waveform_ecg.dcm": "waveform with bulk data in sequences",
}
# Stored as received: the bytes retrieved equal the bytes sent.
AS_RECEIVED = [
    n for n in BUNDLED if n not in {"MR_small_implicit.dcm", "MR_small_bigendian.dcm", "rtdose.dcm"}
]

_counter = itertools.count(1)


def bundled_path(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None, f"{name} is not bundled with pydicom"
    return Path(str(path))


def bundled_bytes(name: str) -> bytes:
    return bundled_path(name).read_bytes()


def make_instance(
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_instance_uid: str | None = None,
    *,
    patient_name: str = "Doe^John",
    patient_id: str = "PID-1",
    study_date: str = "20240102",
    study_time: str = "101500",
    accession_number: str = "ACC-1",
    study_description: str = "CHEST CT",
    modality: str = "CT",
    series_number: int = 1,
    instance_number: int | None = None,
    rows: int = 8,
    columns: int = 8,
    frames: int = 1,
    sop_class_uid: str = CT_IMAGE_STORAGE,
) -> Dataset:
    """A small, valid image instance with 16-bit native pixel data (frame n holds value n)."""
    n = next(_counter)
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid or generate_uid()
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.StudyDate = study_date
    ds.StudyTime = study_time
    ds.AccessionNumber = accession_number
    ds.StudyDescription = study_description
    ds.ReferringPhysicianName = "Welby^Marcus"
    ds.StudyID = "S1"
    ds.Modality = modality
    ds.SeriesNumber = series_number
    ds.SeriesDescription = f"{modality} series {series_number}"
    ds.InstanceNumber = instance_number if instance_number is not None else n
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = columns
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    pixels = np.stack([np.full((rows, columns), i + 1, dtype="<u2") for i in range(frames)])
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def to_bytes(ds: Dataset) -> bytes:
    """A PS3.10 file: preamble, DICM, File Meta Information, data set."""
    buf = io.BytesIO()
    if "SOPInstanceUID" not in ds:
        # A deliberately broken instance still gets valid File Meta around it.
        ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CT_IMAGE_STORAGE)
        ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def bare_bytes(ds: Dataset) -> bytes:
    """The data set alone, as some clients send it: no preamble, no File Meta."""
    bare = copy.copy(ds)
    bare.file_meta = FileMetaDataset()
    bare.preamble = None
    buf = io.BytesIO()
    bare.save_as(buf, implicit_vr=False, little_endian=True)
    data = buf.getvalue()
    assert data[128:132] != b"DICM"
    return data


def parse(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


def _code(value: str, scheme: str, meaning: str) -> dict[str, Any]:
    return {
        "00080100": {"vr": "SH", "Value": [value]},
        "00080102": {"vr": "SH", "Value": [scheme]},
        "00080104": {"vr": "LO", "Value": [meaning]},
    }


def make_workitem(
    uid: str | None = None,
    *,
    label: str = "AI triage",
    priority: str = "MEDIUM",
    patient_id: str = "PAT-1",
    patient_name: str = "Doe^John",
    start: str = "20261202090000",
    worklist: str = "AI",
    station: str | None = None,
    study_uid: str | None = None,
) -> dict[str, Any]:
    """A UPS-RS workitem (DICOM JSON) with every Type 1 and Type 2 attribute of the N-CREATE
    column of PS3.4 Table CC.2.5-3."""
    empty = lambda vr: {"vr": vr}  # noqa: E731
    item: dict[str, Any] = {
        "00741200": {"vr": "CS", "Value": [priority]},
        "00741204": {"vr": "LO", "Value": [label]},
        "00741202": {"vr": "LO", "Value": [worklist]},
        "00404025": {"vr": "SQ", "Value": [_code(station, "99LOCAL", station)]}
        if station
        else empty("SQ"),
        "00404026": empty("SQ"),
        "00404027": empty("SQ"),
        "00404005": {"vr": "DT", "Value": [start]},
        "00404018": {"vr": "SQ", "Value": [_code("AI-1", "99LOCAL", "AI triage")]},
        "00404041": {"vr": "CS", "Value": ["READY"]},
        "00404021": empty("SQ"),
        "00100010": {"vr": "PN", "Value": [{"Alphabetic": patient_name}]},
        "00100020": {"vr": "LO", "Value": [patient_id]},
        "00100030": empty("DA"),
        "00100040": empty("CS"),
        "00380010": empty("LO"),
        "00380014": empty("SQ"),
        "00081080": empty("LO"),
        "00081084": empty("SQ"),
        "0040A370": {
            "vr": "SQ",
            "Value": [
                {
                    "0020000D": {"vr": "UI", "Value": [study_uid or generate_uid()]},
                    "00080050": {"vr": "SH", "Value": ["ACC-1"]},
                    "00401001": {"vr": "SH", "Value": ["RP-1"]},
                    "00321060": {"vr": "LO", "Value": ["CT chest"]},
                    "00321064": {"vr": "SQ"},
                }
            ],
        },
        "00741000": {"vr": "CS", "Value": ["SCHEDULED"]},
    }
    if uid is not None:
        item["00080018"] = {"vr": "UI", "Value": [uid]}
    return item


def performed(start: str = "20261202090500", end: str = "20261202091000") -> dict[str, Any]:
    """The Unified Procedure Step Performed Procedure Sequence a COMPLETED workitem needs
    (the Final State column of PS3.4 Table CC.2.5-3)."""
    return {
        "00741216": {
            "vr": "SQ",
            "Value": [
                {
                    "00404028": {"vr": "SQ"},
                    "00404050": {"vr": "DT", "Value": [start]},
                    "00404019": {"vr": "SQ"},
                    "00404051": {"vr": "DT", "Value": [end]},
                    "00404033": {"vr": "SQ"},
                }
            ],
        }
    }
