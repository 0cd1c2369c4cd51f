"""Make a deterministic synthetic DICOM archive for the benchmark.

    python -m benchmarks.corpus OUT [--studies N] [--series S] [--instances I] [--frames F]

Writes OUT/studies/<study>/<series>/<n>.dcm (512x512 16-bit CT images with realistic patient,
study and series attributes), OUT/multiframe.dcm (one enhanced multi-frame object), a copy
of pydicom's bundled compressed files in OUT/bundled/, and OUT/manifest.json describing
every file. The same arguments always give the same bytes.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import shutil
import struct
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

ROWS = COLUMNS = 512
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"
BUNDLED = [
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",
    "JPEG2000.dcm",
    "rtdose_rle.dcm",
    "SC_rgb_rle_2frame.dcm",
]
FAMILY = [
    "SMITH",
    "JOHNSON",
    "WILLIAMS",
    "BROWN",
    "JONES",
    "GARCIA",
    "MILLER",
    "DAVIS",
    "RODRIGUEZ",
    "MARTINEZ",
    "HERNANDEZ",
    "LOPEZ",
    "GONZALEZ",
    "WILSON",
    "ANDERSON",
]
GIVEN = ["JAMES", "MARY", "ROBERT", "PATRICIA", "JOHN", "JENNIFER", "MICHAEL", "LINDA"]
MODALITIES = ["CT", "MR", "CT", "CR", "US", "CT"]
BODY_PARTS = ["CHEST", "ABDOMEN", "HEAD", "PELVIS", "KNEE", "SPINE"]


@dataclass
class Entry:
    path: str
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    size: int
    patient_id: str
    patient_name: str
    study_date: str
    modality: str
    body_part: str
    frames: int
    kind: str  # "image", "multiframe" or "bundled"


def uid(seed: int, *parts: object) -> str:
    return str(generate_uid(entropy_srcs=[str(seed), *map(str, parts)]))


def image(rng: np.random.Generator, frames: int = 1) -> bytes:
    """A smooth 12-bit pattern with a little noise: compresses and renders like real CT."""
    y, x = np.mgrid[0:ROWS, 0:COLUMNS]
    base = (1024 + 800 * np.sin(x / 40.0) * np.cos(y / 55.0)).astype("<u2")
    out = io.BytesIO()
    for f in range(frames):
        noise = rng.integers(0, 16, size=(ROWS, COLUMNS), dtype="<u2")
        out.write((base + noise + f).astype("<u2").tobytes())
    return out.getvalue()


def _write(ds: Dataset, path: Path) -> int:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path.stat().st_size


def _common(ds: Dataset, study: dict[str, str]) -> None:
    ds.SpecificCharacterSet = "ISO_IR 100"
    for key, value in study.items():
        setattr(ds, key, value)
    ds.PatientBirthDate = "19" + study["StudyDate"][2:4] + "0101"
    ds.PatientSex = "F" if int(study["PatientID"][-1]) % 2 else "M"
    ds.ReferringPhysicianName = "WELBY^MARCUS"
    ds.InstitutionName = "BENCHMARK GENERAL HOSPITAL"
    ds.Manufacturer = "SYNTHETIC"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ROWS, COLUMNS
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleIntercept, ds.RescaleSlope = "-1024", "1"
    ds.WindowCenter, ds.WindowWidth = "40", "400"
    ds.PixelSpacing = ["0.7", "0.7"]


def make_corpus(
    out: Path, studies: int, series: int, instances: int, frames: int, seed: int = 1
) -> list[Entry]:
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    entries: list[Entry] = []
    for s in range(studies):
        patient = s // 2  # two studies per patient
        study = {
            "PatientName": f"{FAMILY[patient % len(FAMILY)]}^{GIVEN[patient % len(GIVEN)]}",
            "PatientID": f"PID{patient:06d}",
            "StudyInstanceUID": uid(seed, "study", s),
            "StudyDate": f"20{10 + s % 15:02d}{1 + s % 12:02d}{1 + s % 28:02d}",
            "StudyTime": f"{8 + s % 10:02d}{s % 60:02d}00",
            "AccessionNumber": f"ACC{s:07d}",
            "StudyID": str(s + 1),
            "StudyDescription": f"{BODY_PARTS[s % len(BODY_PARTS)]} STUDY",
        }
        for r in range(series):
            modality = MODALITIES[(s + r) % len(MODALITIES)]
            body_part = BODY_PARTS[(s + r) % len(BODY_PARTS)]
            series_uid = uid(seed, "series", s, r)
            for i in range(instances):
                ds = Dataset()
                _common(ds, study)
                ds.SOPClassUID = CT_IMAGE
                ds.SOPInstanceUID = uid(seed, "instance", s, r, i)
                ds.SeriesInstanceUID = series_uid
                ds.Modality = modality
                ds.BodyPartExamined = body_part
                ds.SeriesNumber = r + 1
                ds.SeriesDescription = f"{modality} {body_part} {pick.choice(['AX', 'COR'])}"
                ds.InstanceNumber = i + 1
                ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
                ds.SliceLocation = str(i * 2.5)
                ds.ImagePositionPatient = ["-180", "-180", str(i * 2.5)]
                ds.PixelData = image(rng)
                rel = f"studies/{s:04d}/{r:02d}/{i:04d}.dcm"
                size = _write(ds, out / rel)
                entries.append(
                    Entry(
                        rel,
                        study["StudyInstanceUID"],
                        series_uid,
                        ds.SOPInstanceUID,
                        size,
                        study["PatientID"],
                        study["PatientName"],
                        study["StudyDate"],
                        modality,
                        body_part,
                        1,
                        "image",
                    )
                )
    if frames:
        entries.append(_multiframe(out, seed, frames, rng))
    bundled = out / "bundled"
    bundled.mkdir(parents=True, exist_ok=True)
    for name in BUNDLED:
        source = get_testdata_file(name)
        if source is None:
            continue
        shutil.copyfile(str(source), bundled / name)
        ds = dcmread(bundled / name, stop_before_pixels=True)
        entries.append(
            Entry(
                f"bundled/{name}",
                ds.StudyInstanceUID,
                ds.SeriesInstanceUID,
                ds.SOPInstanceUID,
                (bundled / name).stat().st_size,
                str(ds.get("PatientID", "")),
                str(ds.get("PatientName", "")),
                str(ds.get("StudyDate", "")),
                str(ds.get("Modality", "")),
                "",
                int(ds.get("NumberOfFrames") or 1),
                "bundled",
            )
        )
    (out / "manifest.json").write_text(json.dumps([asdict(e) for e in entries], indent=1))
    return entries


def _multiframe(out: Path, seed: int, frames: int, rng: np.random.Generator) -> Entry:
    """An enhanced CT object; Pixel Data is streamed to disk frame by frame."""
    study = {
        "PatientName": "MULTIFRAME^LARGE",
        "PatientID": "PIDMF0001",
        "StudyInstanceUID": uid(seed, "mf-study"),
        "StudyDate": "20240301",
        "StudyTime": "120000",
        "AccessionNumber": "ACCMF0001",
        "StudyID": "MF",
        "StudyDescription": "LARGE MULTIFRAME",
    }
    ds = Dataset()
    _common(ds, study)
    ds.SOPClassUID = ENHANCED_CT
    ds.SOPInstanceUID = uid(seed, "mf-instance")
    ds.SeriesInstanceUID = uid(seed, "mf-series")
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.NumberOfFrames = frames
    header = io.BytesIO()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(header, enforce_file_format=True)
    frame_bytes = ROWS * COLUMNS * 2
    path = out / "multiframe.dcm"
    with path.open("wb") as f:
        f.write(header.getvalue())
        f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, frames * frame_bytes))
        one = image(rng)
        base = np.frombuffer(one, "<u2")
        for n in range(frames):
            f.write((base + n).astype("<u2").tobytes())
    return Entry(
        "multiframe.dcm",
        study["StudyInstanceUID"],
        ds.SeriesInstanceUID,
        ds.SOPInstanceUID,
        path.stat().st_size,
        study["PatientID"],
        study["PatientName"],
        study["StudyDate"],
        "CT",
        "",
        frames,
        "multiframe",
    )


def load_manifest(out: Path) -> list[Entry]:
    return [Entry(**e) for e in json.loads((out / "manifest.json").read_text())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.corpus",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("out", type=Path, help="folder to write the corpus to (emptied)")
    parser.add_argument("--studies", type=int, default=10)
    parser.add_argument("--series", type=int, default=3, help="series per study")
    parser.add_argument("--instances", type=int, default=20, help="instances per series")
    parser.add_argument(
        "--frames", type=int, default=500, help="frames of the multi-frame object (0: none)"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    entries = make_corpus(
        args.out, args.studies, args.series, args.instances, args.frames, args.seed
    )
    total = sum(e.size for e in entries)
    print(f"{len(entries)} objects, {total / 2**20:.1f} MiB in {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
