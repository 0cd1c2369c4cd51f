"""Corrections of patient and study attributes (outside PS3.18, as Microsoft's bulk update):
which attributes may be changed, the change set read from DICOM JSON (PS3.18 F.2) and
applied to a data set. UIDs and the hierarchy never change here; the instances keep their
SOP Instance UIDs and stay in their studies."""

from __future__ import annotations

from typing import Any

from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset

from dicomweb_server.dicom.depth import check_json
from dicomweb_server.dicom.errors import InvalidValue
from dicomweb_server.dicom.temporal import SHAPES, temporal_fault

# Patient Module (PS3.3 C.7.1.1) and Patient Study / General Study modules (C.7.2.1-2): the
# attributes of the patient and of the study a correction may set, as Microsoft's bulk update
# allows them (Study Instance UID, dates of the study and the aggregates are not among them).
PATIENT_ATTRIBUTES = frozenset(
    {
        0x00100010,  # PatientName
        0x00100020,  # PatientID
        0x00100021,  # IssuerOfPatientID
        0x00100030,  # PatientBirthDate
        0x00100032,  # PatientBirthTime
        0x00100040,  # PatientSex
        0x00101001,  # OtherPatientNames
        0x00101002,  # OtherPatientIDsSequence
        0x00102160,  # EthnicGroup
        0x00104000,  # PatientComments
    }
)
STUDY_ATTRIBUTES = frozenset(
    {
        0x00080050,  # AccessionNumber
        0x00080090,  # ReferringPhysicianName
        0x00081030,  # StudyDescription
        0x00200010,  # StudyID
        0x00101010,  # PatientAge
        0x00101020,  # PatientSize
        0x00101030,  # PatientWeight
    }
)
CORRECTABLE = PATIENT_ATTRIBUTES | STUDY_ATTRIBUTES
# What a merge takes from the target patient (the patient's identity, PS3.3 C.7.1.1).
MERGED_ATTRIBUTES = (0x00100010, 0x00100020, 0x00100021, 0x00100030, 0x00100040)


class InvalidChange(InvalidValue):
    """A change set that cannot be applied; the message says why (for a 400)."""


def parse_changes(changes: object) -> Dataset:
    """The change set, a DICOM JSON object of correctable attributes (an element with no
    Value is set empty), as a data set. Raises InvalidChange."""
    if not isinstance(changes, dict) or not changes:
        raise InvalidChange("changeDataset must be a non-empty DICOM JSON object")
    check_json(changes, "changeDataset")
    for key, element in changes.items():
        try:
            tag = int(str(key), 16)
        except ValueError:
            raise InvalidChange(f"{key!r} is not a DICOM tag (8 hexadecimal digits)") from None
        if len(str(key)) != 8 or tag not in CORRECTABLE:
            allowed = ", ".join(sorted(keyword_for_tag(t) for t in CORRECTABLE))
            raise InvalidChange(f"{key} cannot be corrected; the attributes that can: {allowed}")
        if not isinstance(element, dict) or element.get("vr") != dictionary_VR(tag):
            raise InvalidChange(
                f"{key} ({keyword_for_tag(tag)}) must be a DICOM JSON element with vr "
                f"{dictionary_VR(tag)}"
            )
        if element.get("vr") in SHAPES:
            _check_temporal(tag, element)
    try:
        return Dataset.from_json({str(k).upper(): v for k, v in changes.items()})
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise InvalidChange(f"changeDataset cannot be read as DICOM JSON: {exc}") from exc


def _check_temporal(tag: int, element: dict[str, Any]) -> None:
    # PS3.5 Table 6.2-1: a date or time that does not exist (20230230) is not stored.
    for value in element.get("Value") or ():
        fault = temporal_fault(element["vr"], value) if isinstance(value, str) else "not text"
        if fault is not None:
            raise InvalidChange(
                f"{keyword_for_tag(tag)}: {str(value)[:40]!r} is not a valid {element['vr']} "
                f"value ({fault})"
            )


def apply_changes(ds: Dataset, changes: Dataset) -> None:
    """Set every element of `changes` in `ds` (added where absent)."""
    for element in changes:
        ds[element.tag] = element


def merged_identity(target: dict[str, Any]) -> dict[str, Any]:
    """The change set of a merge into the patient whose study-level DICOM JSON is `target`:
    its identity attributes, those it lacks set empty."""
    found: dict[str, Any] = {}
    for tag in MERGED_ATTRIBUTES:
        key = f"{tag:08X}"
        element = target.get(key)
        found[key] = element if isinstance(element, dict) else {"vr": dictionary_VR(tag)}
    return found
