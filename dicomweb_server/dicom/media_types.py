"""The DICOM media types of PS3.18 8.7.3 and the transfer syntax each resource gets.

Tables 8.7.3-2 to 8.7.3-5 are data here; the `choose_*` functions apply the rules of
PS3.18 8.7.3.4 to what a client accepts and how an object is stored. This module never sees
an HTTP header: `web/media.py` parses Accept into the plain values these functions take, and
a DIMSE peer or a STOW-RS part can use the same tables.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import uid

from dicomweb_server.dicom import transcode, uids

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
OCTET_STREAM = "application/octet-stream"
MULTIPART_RELATED = "multipart/related"
ZIP = "application/zip"

# PS3.18 Table 8.7.3-2: instances (application/dicom) default to Explicit VR Little Endian.
# Table 8.7.3-4: uncompressed bulk data (application/octet-stream) likewise.
INSTANCE_DEFAULT_SYNTAX = str(uid.ExplicitVRLittleEndian)
UNCOMPRESSED_DEFAULT_SYNTAX = str(uid.ExplicitVRLittleEndian)

# PS3.18 Table 8.7.3-5: the compressed bulk data media type of each encapsulated transfer
# syntax (the rows we can store and produce).
COMPRESSED_MEDIA_TYPES: dict[str, str] = {
    uid.JPEGBaseline8Bit: "image/jpeg",
    uid.JPEGExtended12Bit: "image/jpeg",
    uid.JPEGLossless: "image/jpeg",
    uid.JPEGLosslessSV1: "image/jpeg",
    uid.JPEGLSLossless: "image/jls",
    uid.JPEGLSNearLossless: "image/jls",
    uid.JPEG2000Lossless: "image/jp2",
    uid.JPEG2000: "image/jp2",
    uid.HTJ2KLossless: "image/jphc",
    uid.HTJ2KLosslessRPCL: "image/jphc",
    uid.HTJ2K: "image/jphc",
    uid.RLELossless: "image/dicom-rle",
}

# PS3.18 Table 8.7.3-5, the rows marked D: the transfer syntax a compressed media type means
# when no transfer-syntax parameter names one. For image/jpeg that is JPEG Lossless SV1
# (1.2.840.10008.1.2.4.70), not JPEG Baseline: the Note of 8.7.3.3.2 says the "Default
# Transfer Syntax for Lossy JPEG" in Baseline's name is its DIMSE role.
DEFAULT_SYNTAX: dict[str, str] = {
    "image/jpeg": str(uid.JPEGLosslessSV1),
    "image/jls": str(uid.JPEGLSLossless),
    "image/jp2": str(uid.JPEG2000Lossless),
    "image/jphc": str(uid.HTJ2KLossless),
    "image/dicom-rle": str(uid.RLELossless),
}


# The media types frames and bulk data may be sent in (Tables 8.7.3-4 and 8.7.3-5).
BULK_DATA_MEDIA_TYPES = (OCTET_STREAM, *DEFAULT_SYNTAX)


def matches(media_range: str, media_type: str) -> bool:
    """Whether a media range (`*/*`, `image/*` or a type; RFC 9110 12.5.1) admits a type."""
    if media_range == "*/*":
        return True
    main, _, sub = media_range.partition("/")
    if sub == "*":
        return media_type.startswith(main + "/")
    return media_range == media_type


def bulk_data_syntax(media_type: str, transfer_syntax: str | None) -> str | None:
    """The transfer syntax of a bulk data part of `media_type` (PS3.18 Tables 8.7.3-4 and
    8.7.3-5): its parameter, else the table's default; None for a media type the tables do
    not name."""
    if media_type == OCTET_STREAM:
        return transfer_syntax or UNCOMPRESSED_DEFAULT_SYNTAX
    return transfer_syntax or DEFAULT_SYNTAX.get(media_type)


@dataclass(frozen=True)
class BytesChoice:
    """Frames or bulk data: a part media type (a range, while still a wish) and the transfer
    syntax wanted in it (None: the media type's default; "*": as stored)."""

    media_type: str
    transfer_syntax: str | None
    multipart: bool


def choose_instance_syntax(syntaxes: list[str | None], stored: str) -> str | None:
    """The transfer syntax to send an instance stored in `stored` in, or None if none of
    `syntaxes` can be produced. PS3.18 8.7.3.4: without a parameter, Explicit VR Little
    Endian, unless the pixel data is lossy (or cannot be decoded here): then as stored."""
    for wanted in syntaxes:
        target = _resolve(wanted, stored)
        if _sendable(stored, target):
            return target
    return None


def _resolve(wanted: str | None, stored: str) -> str:
    """A transfer-syntax parameter as a syntax: "*" is the stored one; none is the default,
    Explicit VR Little Endian unless the data is lossy or cannot be decoded (8.7.3.4)."""
    if wanted == "*":
        return stored
    if wanted is not None:
        return wanted
    explicit = INSTANCE_DEFAULT_SYNTAX
    if stored in transcode.LOSSY_SYNTAXES or not transcode.can_transcode(stored, explicit):
        return stored
    return explicit


def _sendable(stored: str, target: str) -> bool:
    return target not in uids.NOT_ALLOWED_ON_THE_WEB and transcode.can_transcode(stored, target)


def choose_bytes(choices: list[BytesChoice], stored: str) -> tuple[BytesChoice, str] | None:
    """For pixel data stored in `stored`: the first acceptable choice with the transfer
    syntax it gets. Octet-stream defaults to native (PS3.18 8.7.3.4, lossy stays as
    stored); a compressed media type is the stored frame when it is that type's, else its
    transfer-syntax parameter or default (Table 8.7.3-5), transcoded."""
    for choice in choices:
        wanted = choice.transfer_syntax
        if matches(choice.media_type, OCTET_STREAM):
            target = _resolve(wanted, stored)
            if _sendable(stored, target):
                return BytesChoice(OCTET_STREAM, target, choice.multipart), target
            continue
        own = COMPRESSED_MEDIA_TYPES.get(stored)
        for media_type, default in DEFAULT_SYNTAX.items():
            if not matches(choice.media_type, media_type):
                continue
            if own == media_type and wanted in (None, "*", stored):
                return BytesChoice(media_type, stored, choice.multipart), stored
            target = default if wanted in (None, "*") else wanted
            if COMPRESSED_MEDIA_TYPES.get(target) == media_type and transcode.can_transcode(
                stored, target
            ):
                return BytesChoice(media_type, target, choice.multipart), target
    return None
