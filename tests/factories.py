"""Test data made with pydicom: synthetic instances and the files bundled in its wheel."""

from __future__ import annotations

import copy
import io
import itertools
from pathlib import Path

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
