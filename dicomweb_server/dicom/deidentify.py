"""De-identification on ingest: PS3.15 Annex E, Basic Application Level Confidentiality
Profile with the options of E.3.

Every attribute of Table E.1-1 (confidentiality_profile.py) gets its action: X remove,
Z empty, D dummy value, K keep, C clean, U replace the UID. Combined codes are resolved toward
keeping the object conformant: X/Z -> Z, X/D, Z/D and X/Z/D -> D, X/Z/U* -> keep the sequence
and treat its items. Sequences that are kept have their items treated the same way (E.1.1).
UIDs are replaced by `2.25.` UIDs derived with HMAC-SHA-256 from a secret key, so the same
original UID always maps to the same new one and series stay together across requests.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from dicomweb_server.dicom.confidentiality_profile import PATTERN, PROFILE, Option, Row
from dicomweb_server.dicom.vr import BINARY_NUMBER_VRS, BINARY_VRS

_COMPOSITE = {"X/Z": "Z", "X/D": "D", "Z/D": "D", "X/Z/D": "D", "X/Z/U*": "U*"}
_TEXT_DUMMY = "ANONYMIZED"
_DUMMY = {
    "AE": "ANONYMIZED",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "IS": "0",
    "DS": "0",
    "PN": "ANONYMIZED",
}

# PS3.16 CID 7050: De-identification Method codes (DCM).
_METHOD_CODES = {
    None: ("113100", "Basic Application Confidentiality Profile"),
    Option.CLEAN_GRAPHICS: ("113103", "Clean Graphics Option"),
    Option.CLEAN_STRUCTURED_CONTENT: ("113104", "Clean Structured Content Option"),
    Option.CLEAN_DESCRIPTORS: ("113105", "Clean Descriptors Option"),
    Option.RETAIN_LONG_FULL_DATES: (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    Option.RETAIN_LONG_MODIFIED_DATES: (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    Option.RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics Option"),
    Option.RETAIN_DEVICE_IDENTITY: ("113109", "Retain Device Identity Option"),
    Option.RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    Option.RETAIN_INSTITUTION_IDENTITY: ("113112", "Retain Institution Identity Option"),
}
SUPPORTED_OPTIONS = frozenset(o for o in _METHOD_CODES if o is not None)


def row_of(tag: int) -> Row | None:
    """The Table E.1-1 row that governs `tag`, if any."""
    row = PROFILE.get(tag)
    if row is not None:
        return row
    group, element = tag >> 16, tag & 0xFFFF
    if group % 2:
        return PATTERN["PRIVATE"]
    if group & 0xFF00 == 0x5000:
        return PATTERN["50XXXXXX"]
    if group & 0xFF00 == 0x6000 and element in (0x3000, 0x4000):
        return PATTERN[f"60XX{element:04X}"]
    return None


def resolve(row: Row, options: Iterable[Option]) -> str:
    """The one action (D, Z, X, K, C, U or U*) the row takes with these options."""
    enabled = set(options)
    chosen = [action for option, action in row[2] if option in enabled]
    action = "K" if "K" in chosen else "C" if "C" in chosen else (chosen or [row[1]])[0]
    return _COMPOSITE.get(action, action)


@dataclass(frozen=True)
class Deidentifier:
    key: bytes
    options: frozenset[Option] = frozenset()

    def __post_init__(self) -> None:
        unsupported = self.options - SUPPORTED_OPTIONS
        if unsupported:
            names = ", ".join(sorted(o.value for o in unsupported))
            raise ValueError(f"de-identification option(s) not supported: {names}")
        if not self.key:
            raise ValueError("de-identification needs a secret key to remap UIDs")

    @property
    def remaps_uids(self) -> bool:
        return Option.RETAIN_UIDS not in self.options

    def map_uid(self, uid: str) -> str:
        """The replacement of a UID: stable for a key, unrelated to the original."""
        digest = hmac.new(self.key, uid.encode("ascii", "replace"), hashlib.sha256).digest()
        return f"2.25.{int.from_bytes(digest[:16], 'big')}"

    def apply(self, ds: Dataset) -> None:
        """De-identify `ds` in place (PS3.15 E.1.1) and record how (E.1.1, C.7.1.1)."""
        identifiers = _identifiers(ds)
        shift = self._date_shift(str(ds.get("PatientID", "")))
        self._treat(ds, identifiers, shift, depth=0)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "PS3.15 E.1 Basic Profile" + "".join(
            f"; {o.value}" for o in sorted(self.options)
        )
        items = []
        for option in (None, *sorted(self.options)):
            value, meaning = _METHOD_CODES[option]
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        if Option.RETAIN_LONG_FULL_DATES in self.options:
            ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
        elif Option.RETAIN_LONG_MODIFIED_DATES in self.options:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        else:
            ds.LongitudinalTemporalInformationModified = "REMOVED"

    def _date_shift(self, patient_id: str) -> int:
        """Days subtracted from every date of a patient under the modified-dates option."""
        digest = hmac.new(self.key, b"date-shift:" + patient_id.encode(), hashlib.sha256)
        return 1 + int.from_bytes(digest.digest()[:4], "big") % 3650

    def _treat(self, ds: Dataset, identifiers: list[str], shift: int, depth: int) -> None:
        for tag in [int(t) for t in ds.keys()]:  # noqa: SIM118 - a copy: the loop deletes
            elem = ds[tag]
            row = row_of(tag)
            action = "K" if row is None else resolve(row, self.options)
            if action == "X":
                del ds[tag]
            elif action == "Z":
                elem.value = Sequence() if elem.VR == "SQ" else None
            elif elem.VR == "SQ":
                for item in elem.value or []:
                    self._treat(item, identifiers, shift, depth + 1)
            elif action == "U":
                elem.value = self._uids(elem.value)
            elif action == "D":
                elem.value = _dummy(str(elem.VR), elem.value, self)
            elif action == "C":
                elem.value = _clean(str(elem.VR), elem.value, identifiers, shift)

    def _uids(self, value: object) -> object:
        if value is None or isinstance(value, str):
            return self.map_uid(value) if value else value
        if isinstance(value, Iterable):
            return [self.map_uid(str(v)) for v in value]
        return value


def _identifiers(ds: Dataset) -> list[str]:
    """Words that identify the patient, to clean out of free text."""
    words: set[str] = set()
    name = str(ds.get("PatientName", "") or "")
    words.update(w for w in re.split(r"[\^=\s]+", name) if len(w) > 1)
    for keyword in ("PatientID", "AccessionNumber", "PatientBirthDate", "OtherPatientIDs"):
        value = ds.get(keyword)
        if value:
            words.update(str(v) for v in (value if isinstance(value, list) else [value]))
    return sorted((w for w in words if len(w) > 1), key=len, reverse=True)


def _dummy(vr: str, value: object, deidentifier: Deidentifier) -> object:
    if vr == "UI":
        return deidentifier._uids(value)
    if vr in BINARY_NUMBER_VRS:
        return 0
    if vr in BINARY_VRS:
        return b"\x00\x00"
    return _DUMMY.get(vr, _TEXT_DUMMY)


def _clean(vr: str, value: object, identifiers: list[str], shift: int) -> object:
    """C: keep what carries no identity. Dates move by the patient's shift; text loses the
    words that identify the patient (names, IDs, accession number, birth date)."""
    if vr in ("DA", "DT"):
        return _shift_dates(value, shift)
    if vr in ("TM",) or vr in BINARY_NUMBER_VRS or vr in BINARY_VRS:
        return value
    if isinstance(value, str):
        return _scrub(value, identifiers)
    if isinstance(value, list | tuple):
        return [_scrub(str(v), identifiers) for v in value]
    return value if value is None else _scrub(str(value), identifiers)


def _scrub(text: str, identifiers: list[str]) -> str:
    for word in identifiers:
        text = re.sub(re.escape(word), "", text, flags=re.IGNORECASE)
    return text.strip()


def _shift_dates(value: object, shift: int) -> object:
    def one(text: str) -> str:
        try:
            day = datetime.datetime.strptime(text[:8], "%Y%m%d").date()
        except ValueError:
            return _DUMMY["DA"]
        return (day - datetime.timedelta(days=shift)).strftime("%Y%m%d") + text[8:]

    if isinstance(value, str):
        return one(value) if value else value
    if isinstance(value, list | tuple):
        return [one(str(v)) for v in value]
    return value


def deidentify_object(data: bytes, deidentifier: Deidentifier) -> bytes:
    """A PS3.10 object de-identified as a whole (WADO-URI `anonymize=yes`, PS3.18 9.5.1.2.2)."""
    ds = dcmread(io.BytesIO(data))
    deidentifier.apply(ds)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()
