"""Objects sent as metadata plus bulk data (PS3.18 10.5.1.2.2), assembled into PS3.10 files.

A STOW-RS request of type `application/dicom+json` carries each instance's attributes in the
DICOM JSON Model (PS3.18 Annex F) and its large values in separate parts, referenced by
BulkDataURI and found by their Content-Location. Pixel Data sent in a compressed media type
(`image/jpeg`, ...) is one frame per part and is encapsulated (PS3.5 A.4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from pydicom import uid
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from dicomweb_server.dicom import codecs, media_types, uids
from dicomweb_server.dicom.depth import check_json
from dicomweb_server.dicom.errors import NestedTooDeeply, ObjectRejected
from dicomweb_server.dicom.json_model import validate_json
from dicomweb_server.dicom.part10 import required_uids
from dicomweb_server.dicom.store_status import CANNOT_UNDERSTAND, TRANSFER_SYNTAX_NOT_SUPPORTED

# ISO/IEC 10918-1 B.1.1.3: the start-of-frame marker names the JPEG process; the lossless
# process (SOF3) cannot be read by a lossy syntax's decoder and the other way round.
_JPEG_LOSSLESS_SOF = 0xC3
_JPEG_LOSSY_SOF = frozenset({0xC0, 0xC1, 0xC2})
_JPEG_LOSSLESS_SYNTAXES = frozenset({str(uid.JPEGLossless), str(uid.JPEGLosslessSV1)})
_JPEG_LOSSY_SYNTAXES = frozenset({str(uid.JPEGBaseline8Bit), str(uid.JPEGExtended12Bit)})
PIXEL_DATA = "7FE00010"


@dataclass(frozen=True)
class BulkPart:
    """A bulk data part: how to read its bytes, its media type and transfer syntax."""

    open: Callable[[], BinaryIO]
    media_type: str
    transfer_syntax: str | None = None

    def read(self) -> bytes:
        with self.open() as f:
            return f.read()


def assemble(metadata: object, bulk: Callable[[str], BulkPart | None], out: BinaryIO) -> None:
    """Write to `out` the PS3.10 file of one instance given as DICOM JSON and bulk data parts.

    `metadata` is one decoded JSON value; anything but a DICOM JSON object is rejected."""
    if not isinstance(metadata, dict):
        raise ObjectRejected(CANNOT_UNDERSTAND, "a metadata item is not a DICOM JSON object")
    try:
        check_json(metadata, "the metadata item")
        validate_json(metadata)
    except (NestedTooDeeply, ValueError) as exc:
        raise ObjectRejected(CANNOT_UNDERSTAND, f"the DICOM JSON is refused: {exc}") from None
    syntax = uids.EXPLICIT_VR_LITTLE_ENDIAN
    pixel = metadata.get(PIXEL_DATA)
    compressed: BulkPart | None = None
    if isinstance(pixel, dict) and "BulkDataURI" in pixel:
        part = _lookup(bulk, str(pixel["BulkDataURI"]))
        if part.media_type != media_types.OCTET_STREAM:
            # PS3.18 Table 8.7.3-5: a part without a transfer-syntax parameter is in the
            # syntax its media type defaults to (image/jpeg: JPEG Lossless SV1).
            syntax = media_types.bulk_data_syntax(part.media_type, part.transfer_syntax) or ""
            if not syntax or syntax in uids.NATIVE_TRANSFER_SYNTAXES:
                raise ObjectRejected(
                    TRANSFER_SYNTAX_NOT_SUPPORTED,
                    f"Pixel Data of media type {part.media_type} has no compressed transfer syntax",
                )
            _check_jpeg_process(part, syntax)
            compressed = part

    def resolve(tag: str, vr: str, uri: str) -> bytes:
        return _lookup(bulk, uri).read()

    try:
        ds = Dataset.from_json(
            {k: v for k, v in metadata.items() if k != PIXEL_DATA or compressed is None},
            resolve,
        )
    except ObjectRejected:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise ObjectRejected(CANNOT_UNDERSTAND, f"the DICOM JSON cannot be read: {exc}") from exc
    _, _, sop_instance, sop_class = required_uids(ds)
    if compressed is not None:
        ds.PixelData = encapsulate([compressed.read()])
        ds["PixelData"].VR = "OB"
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = UID(syntax)
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.ImplementationClassUID = UID(uids.IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = uids.IMPLEMENTATION_VERSION_NAME
    ds.file_meta = meta
    try:
        ds.save_as(out, enforce_file_format=True)
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        raise ObjectRejected(CANNOT_UNDERSTAND, f"the instance cannot be encoded: {exc}") from exc


def _check_jpeg_process(part: BulkPart, syntax: str) -> None:
    """Refuse a JPEG frame whose process contradicts its transfer syntax (a baseline frame
    sent as image/jpeg without a parameter would otherwise be stored as lossless and be
    unreadable): the sender names the syntax with the transfer-syntax parameter."""
    if syntax not in _JPEG_LOSSLESS_SYNTAXES | _JPEG_LOSSY_SYNTAXES:
        return
    with part.open() as f:
        sof = codecs.jpeg_start_of_frame(f.read(65536))
    lossless = syntax in _JPEG_LOSSLESS_SYNTAXES
    if (lossless and sof in _JPEG_LOSSY_SOF) or (not lossless and sof == _JPEG_LOSSLESS_SOF):
        process = "lossy" if lossless else "lossless"
        raise ObjectRejected(
            TRANSFER_SYNTAX_NOT_SUPPORTED,
            f"the {part.media_type} Pixel Data is {process} JPEG but its transfer syntax is "
            f"{syntax}; name its syntax with the transfer-syntax parameter (PS3.18 8.7.3.3.2)",
        )


def _lookup(bulk: Callable[[str], BulkPart | None], uri: str) -> BulkPart:
    part = bulk(uri)
    if part is None:
        raise ObjectRejected(CANNOT_UNDERSTAND, f"no bulk data part has Content-Location {uri!r}")
    return part
