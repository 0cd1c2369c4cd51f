"""Value Representations (PS3.5 6.2, Table 6.2-1): what each VR holds and how it is encoded."""

from __future__ import annotations

# Every VR of PS3.5 Table 6.2-1.
ALL_VRS = frozenset(
    {
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD",
        "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI",
        "UL", "UN", "UR", "US", "UT", "UV",
    }
)  # fmt: skip
# PS3.5 Table 7.1-1: VRs with a 2-byte reserved field and a 4-byte length (explicit VR).
LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
# Values that are bytes: in DICOM JSON given as InlineBinary or BulkDataURI (PS3.18 F.2.7).
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
# Binary integers and the range of each (PS3.5 Table 6.2-1).
INTEGER_RANGES = {
    "US": (0, 2**16 - 1),
    "SS": (-(2**15), 2**15 - 1),
    "UL": (0, 2**32 - 1),
    "SL": (-(2**31), 2**31 - 1),
    "UV": (0, 2**64 - 1),
    "SV": (-(2**63), 2**63 - 1),
}
FLOAT_VRS = frozenset({"FL", "FD"})
# Values that are text (PN has its own JSON form, PS3.18 F.2.2).
STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
# Values that are numbers in DICOM JSON (PS3.18 F.2.3): integer strings and binary integers,
# decimal strings and binary floats; the binary ones of either.
INTEGER_VRS = frozenset({"IS", *INTEGER_RANGES})
DECIMAL_VRS = frozenset({"DS", *FLOAT_VRS})
NUMBER_VRS = INTEGER_VRS | DECIMAL_VRS
BINARY_NUMBER_VRS = frozenset(INTEGER_RANGES) | FLOAT_VRS

# How each VR matches (PS3.4 C.2.2.2): wildcards only for these (C.2.2.2.4); ranges for
# dates and times (C.2.2.2.5); multiplevaluematching (PS3.18 8.3.4.1) for the multi-valued
# strings; never keys: values that are bytes or tags (includefield still returns them).
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
MULTIPLE_VALUE_VRS = frozenset({"AE", "AS", "CS", "LO", "PN", "SH", "UC"})
UNMATCHABLE_VRS = BINARY_VRS | {"AT"}
