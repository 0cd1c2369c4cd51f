"""UIDs (PS3.5 9.1), the transfer syntaxes we know, and blob keys derived from UIDs."""

from __future__ import annotations

import re
import secrets
import uuid

from pydicom import uid
from pydicom.uid import AllTransferSyntaxes

from dicomweb_server.dicom.errors import InvalidUID

# PS3.5 9.1: components of digits separated by '.', no leading zero in a component, <= 64 chars.
_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", re.ASCII)

# The native encodings (PS3.5 A.1-A.3, A.5), as plain strings for the index and the web.
IMPLICIT_VR_LITTLE_ENDIAN = str(uid.ImplicitVRLittleEndian)
EXPLICIT_VR_LITTLE_ENDIAN = str(uid.ExplicitVRLittleEndian)
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = str(uid.DeflatedExplicitVRLittleEndian)
EXPLICIT_VR_BIG_ENDIAN = str(uid.ExplicitVRBigEndian)

# PS3.18 8.7.3: these two may not be used on the web; objects received in them are
# converted to Explicit VR Little Endian at ingest.
NOT_ALLOWED_ON_THE_WEB = frozenset({IMPLICIT_VR_LITTLE_ENDIAN, EXPLICIT_VR_BIG_ENDIAN})

NATIVE_TRANSFER_SYNTAXES = frozenset(
    {
        IMPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_LITTLE_ENDIAN,
        EXPLICIT_VR_BIG_ENDIAN,
        DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
    }
)

# Every transfer syntax of PS3.5 Annex A that pydicom knows; others are refused at ingest.
KNOWN_TRANSFER_SYNTAXES = frozenset(str(uid) for uid in AllTransferSyntaxes)

# Our implementation identity in File Meta Information (PS3.10 7.1).
IMPLEMENTATION_CLASS_UID = "1.2.826.0.1.3680043.10.1543.1.1"
IMPLEMENTATION_VERSION_NAME = "DICOMWEB_PY_01"


MAX_UID_LENGTH = 64  # PS3.5 9.1
# The shortest random part a UID under an organisation's root keeps (about 73 bits).
MIN_RANDOM_DIGITS = 22


def new_uid(root: str = "") -> str:
    """A fresh UID (PS3.5 9.1: digits and dots, no component with a leading zero, at most 64
    characters). Without a root: `2.25.` and a random (version 4) UUID as an integer (PS3.5
    B.2). Under an organisation's `root`: one more component of random digits, as many as
    fit (at most 39, the digits of 128 bits), never starting with 0."""
    if not root:
        return f"2.25.{uuid.uuid4().int}"
    require_uid(root, "UID root")
    digits = min(MAX_UID_LENGTH - len(root) - 1, 39)
    if digits < MIN_RANDOM_DIGITS:
        raise ValueError(
            f"a UID root is at most {MAX_UID_LENGTH - MIN_RANDOM_DIGITS - 1} characters long"
        )
    low = 10 ** (digits - 1)
    return f"{root}.{low + secrets.randbelow(9 * low)}"


def is_valid_uid(value: str) -> bool:
    return 0 < len(value) <= 64 and _UID.fullmatch(value) is not None


def require_uid(value: str, what: str = "UID") -> str:
    """Return `value` if it is a valid UID, else raise InvalidUID naming `what`."""
    if not is_valid_uid(value):
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise InvalidUID(f"{what} {shown!r} is not a valid DICOM UID (PS3.5 9.1)")
    return value


def blob_key(study_uid: str, series_uid: str, instance_uid: str, version: str) -> str:
    """The object's key in the blob store; only ever built from validated UIDs."""
    for value in (study_uid, series_uid, instance_uid):
        require_uid(value)
    if not version.isalnum():
        raise ValueError(f"blob version {version!r} is not alphanumeric")
    return f"{study_uid}/{series_uid}/{instance_uid}.{version}.dcm"
