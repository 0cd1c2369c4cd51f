"""PS3.10 handling: what a received object is, the PS3.10 file we store of it, and where its
values lie.

Everything here reads from streams and buffers and writes to streams the caller hands in:
which files those are, and when they are removed, is the store service's business.

The object is kept byte for byte, with the two exceptions the conformance notes list:
- a bare data set (no preamble, no `DICM`, or no File Meta Information) is completed, its
  data set bytes unchanged, so every retrieve returns a valid PS3.10 file (PS3.10 7.1);
- Implicit VR Little Endian and Explicit VR Big Endian, which PS3.18 8.7.3 forbids on the
  web, are converted once, here, to Explicit VR Little Endian; frame offsets are taken from
  the converted bytes, which are the bytes we serve.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, BinaryIO

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite, write_file_meta_info
from pydicom.uid import UID

from dicomweb_server.dicom import uids
from dicomweb_server.dicom.errors import ObjectRejected, is_storage_error
from dicomweb_server.dicom.frames import (
    FrameLayoutError,
    ImageGeometry,
    Ranges,
    encapsulated_frames,
    native_frames,
)
from dicomweb_server.dicom.scan import (
    PIXEL_DATA_TAGS,
    Buffer,
    ScanResult,
    check_nesting,
    scan_dataset,
)
from dicomweb_server.dicom.store_status import (
    CANNOT_UNDERSTAND,
    DATASET_DOES_NOT_MATCH_SOP_CLASS,
    TRANSFER_SYNTAX_NOT_SUPPORTED,
)
from dicomweb_server.dicom.vr import LONG_LENGTH_VRS

# Values longer than this stay on disk while the header is parsed.
_DEFER_SIZE = 64 * 1024
_PREAMBLE = b"\x00" * 128
# What pydicom raises on input it cannot read or write back.
_PARSE_ERRORS = (
    InvalidDicomError,
    EOFError,
    OSError,
    ValueError,
    struct.error,
    KeyError,
    NotImplementedError,
    OverflowError,
    TypeError,
    AttributeError,
)
_SWAP_WIDTH = {"OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}
_REQUIRED_UIDS = (
    ("SOPClassUID", "SOP Class UID (0008,0016)"),
    ("SOPInstanceUID", "SOP Instance UID (0008,0018)"),
    ("StudyInstanceUID", "Study Instance UID (0020,000D)"),
    ("SeriesInstanceUID", "Series Instance UID (0020,000E)"),
)


class Encoding(Enum):
    """What a received object needs to become the PS3.10 file we store."""

    AS_IS = "as is"  # a PS3.10 file in a syntax the web may use
    FILE_META = "file meta"  # a bare data set: File Meta Information is added (PS3.10 7.1)
    EXPLICIT_LITTLE = "explicit little"  # Implicit VR or Big Endian: converted (PS3.18 8.7.3)


@dataclass
class Received:
    """A received object read as far as its pixels: what it is and what it needs."""

    header: Dataset
    study_uid: str
    series_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    # The syntax it is encoded in, and the one its File Meta names (None: no File Meta).
    encoded_ts: str
    declared_ts: str | None
    has_preamble: bool
    needs: Encoding

    @property
    def stored_ts(self) -> str:
        """The transfer syntax of the file we store."""
        if self.needs is Encoding.EXPLICIT_LITTLE:
            return uids.EXPLICIT_VR_LITTLE_ENDIAN
        return self.encoded_ts


@dataclass
class Located:
    """Where the values of the stored file lie: bulk data values and frames."""

    scan: ScanResult
    frames: list[Ranges] | None
    frames_error: str | None
    number_of_frames: int


def peek_uids(src: BinaryIO) -> tuple[str | None, str | None]:
    """SOP Class and Instance UIDs of a part, as far as they can be read (for failure reports)."""
    try:
        src.seek(0)
        ds = dcmread(
            src, stop_before_pixels=True, force=True, specific_tags=[0x00080016, 0x00080018]
        )
        return _text(ds.get("SOPClassUID")), _text(ds.get("SOPInstanceUID"))
    except Exception:  # noqa: BLE001 - a best-effort look at a part already rejected
        return None, None


def read_received(src: BinaryIO, buf: Buffer, max_inflated: int = 512 * 2**20) -> Received:
    """Check one received object (`src` and `buf` hold the same bytes) and read it as far as
    its pixels. Raises ObjectRejected with the reason."""
    head = bytes(buf[:136])
    has_preamble = head[128:132] == b"DICM"
    if not has_preamble and not _looks_like_dicom(head):
        raise ObjectRejected(
            CANNOT_UNDERSTAND,
            "the part is not a DICOM object: no 'DICM' prefix and it does not begin with a "
            "DICOM data element",
        )
    _check_nesting(buf, max_inflated)
    header = read_header(src, force=not has_preamble)
    study, series, sop_instance, sop_class = required_uids(header)
    meta = getattr(header, "file_meta", None)
    declared_ts = _text(meta.get("TransferSyntaxUID")) if meta is not None else None
    implicit, little = header.original_encoding
    if declared_ts is None:
        if implicit:
            encoded_ts = uids.IMPLICIT_VR_LITTLE_ENDIAN
        else:
            encoded_ts = uids.EXPLICIT_VR_LITTLE_ENDIAN if little else uids.EXPLICIT_VR_BIG_ENDIAN
    else:
        encoded_ts = declared_ts
    if not uids.is_valid_uid(encoded_ts):
        raise ObjectRejected(
            TRANSFER_SYNTAX_NOT_SUPPORTED, f"transfer syntax {encoded_ts!r} is not a valid UID"
        )
    if encoded_ts not in uids.KNOWN_TRANSFER_SYNTAXES:
        raise ObjectRejected(
            TRANSFER_SYNTAX_NOT_SUPPORTED, f"transfer syntax {encoded_ts} is not supported"
        )
    if encoded_ts in uids.NOT_ALLOWED_ON_THE_WEB:
        # PS3.18 8.7.3: served as Explicit VR Little Endian; attribute values are unchanged,
        # so this is not reported as a coercion.
        needs = Encoding.EXPLICIT_LITTLE
    elif not has_preamble or declared_ts is None:
        # PS3.10 7.1: File Meta Information added; the data set bytes are kept.
        needs = Encoding.FILE_META
    else:
        needs = Encoding.AS_IS
    return Received(
        header, study, series, sop_instance, sop_class, encoded_ts, declared_ts, has_preamble, needs
    )


def write_part10(received: Received, src: BinaryIO, dst: BinaryIO) -> None:
    """Write the PS3.10 file of a received object that is not stored as it came."""
    src.seek(0)
    if received.needs is Encoding.EXPLICIT_LITTLE:
        _convert_to_explicit_little(
            src,
            dst,
            force=not received.has_preamble,
            sop_class=received.sop_class_uid,
            sop_instance=received.sop_instance_uid,
        )
    elif received.needs is Encoding.FILE_META:
        _complete_file(
            src, dst, received.encoded_ts, received.sop_class_uid, received.sop_instance_uid
        )


def locate(received: Received, header: Dataset, buf: Buffer, bulk_data_threshold: int) -> Located:
    """The bulk data values and frames of the stored file in `buf`, whose header is `header`."""
    stored_ts = received.stored_ts
    start = _dataset_start(buf)
    if stored_ts == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        # The data set is deflated: nothing in it can be addressed by byte offset.
        scan = ScanResult()
    else:
        scan = scan_dataset(buf, start, bulk_data_threshold)
    if scan.fragments is not None and received.declared_ts is None:
        raise ObjectRejected(
            TRANSFER_SYNTAX_NOT_SUPPORTED,
            "encapsulated Pixel Data without File Meta Information: the transfer "
            "syntax of the compressed pixels is unknown",
        )
    frames, frames_error, count = _frames(header, scan, buf, stored_ts)
    return Located(scan, frames, frames_error, count)


def parse_header(head: bytes) -> Dataset:
    """The data set in the first bytes of a stored object, up to (not including) its Pixel
    Data: what decoding a frame needs."""
    return dcmread(io.BytesIO(head), stop_before_pixels=True)


def parse_object(data: bytes) -> Dataset:
    """A whole stored object parsed (a presentation state, or a deflated image)."""
    return dcmread(io.BytesIO(data))


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip("\x00 ")
    return text or None


def looks_like_dicom(head: bytes) -> bool:
    """Whether the first bytes of a file may be a DICOM object: a PS3.10 preamble and
    `DICM`, or a bare data set or File Meta group (an even group up to 0x0008)."""
    if head[128:132] == b"DICM":
        return True
    return _looks_like_dicom(head)


# PS3.4 Annex F / PS3.10 7.3: the Media Storage Directory SOP Class of a DICOMDIR.
MEDIA_STORAGE_DIRECTORY = b"1.2.840.10008.1.3.10"


def is_media_directory(head: bytes) -> bool:
    """Whether the first bytes of a file are a DICOMDIR (a media directory, whatever its name
    and encoding): its File Meta names the Media Storage Directory SOP Class (the UID is the
    same ASCII text in every transfer syntax), or a bare data set opens with the Directory
    Information group 0004."""
    at = head.find(MEDIA_STORAGE_DIRECTORY)
    if at >= 0:
        end = at + len(MEDIA_STORAGE_DIRECTORY)
        following = head[end : end + 1]
        # The whole UID, not the start of a longer one (padded with NUL or a space).
        if not following or following not in b"0123456789.":
            return True
    if head[128:132] == b"DICM" or len(head) < 4:
        return False
    return 0x0004 in (struct.unpack_from("<H", head)[0], struct.unpack_from(">H", head)[0])


def _looks_like_dicom(head: bytes) -> bool:
    """A bare data set or File Meta group begins with an even group up to 0x0008."""
    if head[:4] == b"DICM":
        return True
    if len(head) < 8:
        return False
    group_le = struct.unpack_from("<H", head)[0]
    group_be = struct.unpack_from(">H", head)[0]
    return group_le in (0x0002, 0x0008) or group_be == 0x0008


def _check_nesting(buf: Buffer, max_inflated: int) -> None:
    """Refuse an object whose sequences nest deeper than MAX_DEPTH before pydicom (which
    recurses per level) reads it; a deflated one is inflated, within `max_inflated`, first."""
    size = len(buf)
    if size < 8:
        return
    start, syntax = _file_meta(buf)
    if start + 8 > size:
        return
    if syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            data = inflater.decompress(buf[start:], max_inflated)
        except zlib.error as exc:
            raise ObjectRejected(
                CANNOT_UNDERSTAND, f"the deflated data set cannot be inflated: {exc}"
            ) from exc
        if inflater.unconsumed_tail:
            raise ObjectRejected(
                CANNOT_UNDERSTAND,
                f"the deflated data set inflates to more than {max_inflated} bytes",
            )
        body: bytes | memoryview = data
        offset, implicit, little = 0, False, True
    else:
        head = bytes(buf[start : start + 8])
        implicit = syntax == uids.IMPLICIT_VR_LITTLE_ENDIAN or (
            syntax is None and not (head[4:6].isalpha() and head[4:6].isupper())
        )
        if syntax is None:
            little = struct.unpack_from(">H", head)[0] != 0x0008
        else:
            little = syntax != uids.EXPLICIT_VR_BIG_ENDIAN
        body, offset = memoryview(buf), start
    try:
        check_nesting(body, offset, implicit, little)
    finally:
        if isinstance(body, memoryview):
            body.release()


def read_header(src: BinaryIO, force: bool = False) -> Dataset:
    """The data set of a file up to its Pixel Data; values longer than 64 KiB are read from
    `src` only when asked for, so it must stay open (or reopenable by name) while in use."""
    try:
        src.seek(0)
        return dcmread(src, stop_before_pixels=True, defer_size=_DEFER_SIZE, force=force)
    except _PARSE_ERRORS as exc:
        if is_storage_error(exc):
            raise
        raise ObjectRejected(
            CANNOT_UNDERSTAND, f"the DICOM object cannot be parsed: {exc}"
        ) from exc


def required_uids(header: Dataset) -> tuple[str, str, str, str]:
    """Study, Series, SOP Instance and SOP Class UIDs, or ObjectRejected naming the fault.

    The encoded value is checked, not pydicom's reading of it, which strips white space: a
    UID that is valid only once stripped would name an object other than the one stored."""
    found: dict[str, str] = {}
    for keyword, label in _REQUIRED_UIDS:
        try:
            raw = header.get_item(keyword)
            encoded = raw.value if raw is not None else None
            if isinstance(encoded, bytes):
                value = _text(encoded.decode("ascii", "replace").rstrip("\x00"))
            else:
                value = _text(header.get(keyword))
        except (ValueError, TypeError, OverflowError) as exc:
            raise ObjectRejected(CANNOT_UNDERSTAND, f"{label} cannot be read: {exc}") from exc
        if value is None:
            raise ObjectRejected(DATASET_DOES_NOT_MATCH_SOP_CLASS, f"{label} is missing")
        if not uids.is_valid_uid(value):
            raise ObjectRejected(
                DATASET_DOES_NOT_MATCH_SOP_CLASS, f"{label} {value[:80]!r} is not a valid UID"
            )
        found[keyword] = value
    return (
        found["StudyInstanceUID"],
        found["SeriesInstanceUID"],
        found["SOPInstanceUID"],
        found["SOPClassUID"],
    )


def _file_meta_bytes(transfer_syntax: str, sop_class: str, sop_instance: str) -> bytes:
    meta = FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01"
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance)
    meta.TransferSyntaxUID = UID(transfer_syntax)
    meta.ImplementationClassUID = UID(uids.IMPLEMENTATION_CLASS_UID)
    meta.ImplementationVersionName = uids.IMPLEMENTATION_VERSION_NAME
    out = DicomBytesIO()
    write_file_meta_info(out, meta, enforce_standard=True)
    return _PREAMBLE + b"DICM" + out.getvalue()


def _file_meta(buf: Buffer) -> tuple[int, str | None]:
    """Where the data set begins, past preamble, `DICM` and File Meta elements (group 0002,
    always Explicit VR Little Endian), and the Transfer Syntax UID (0002,0010) they name."""
    pos = 132 if bytes(buf[128:132]) == b"DICM" else (4 if bytes(buf[:4]) == b"DICM" else 0)
    syntax = None
    while pos + 8 <= len(buf) and struct.unpack_from("<H", buf, pos)[0] == 0x0002:
        element = struct.unpack_from("<H", buf, pos + 2)[0]
        vr = bytes(buf[pos + 4 : pos + 6])
        if vr in LONG_LENGTH_VRS:
            length, value = struct.unpack_from("<I", buf, pos + 8)[0], pos + 12
        else:
            length, value = struct.unpack_from("<H", buf, pos + 6)[0], pos + 8
        if element == 0x0010:
            syntax = _text(bytes(buf[value : value + length]).decode("ascii", "replace"))
        pos = value + length
    return pos, syntax


def _dataset_start(buf: Buffer) -> int:
    return _file_meta(buf)[0]


def _complete_file(
    src: BinaryIO, dst: BinaryIO, ts: str, sop_class: str, sop_instance: str
) -> None:
    """Write preamble, `DICM` and File Meta, then the received data set bytes unchanged."""
    head = src.read(1024 * 1024)
    src.seek(_dataset_start(head))
    dst.write(_file_meta_bytes(ts, sop_class, sop_instance))
    shutil.copyfileobj(src, dst, 1024 * 1024)


def _convert_to_explicit_little(
    src: BinaryIO, dst: BinaryIO, *, force: bool, sop_class: str, sop_instance: str
) -> None:
    with _rejected_as("the object cannot be converted to Explicit VR Little Endian"):
        ds = dcmread(src, force=force)
        _, little = ds.original_encoding
        if not little:
            swap_binary_words(ds)
        _write_explicit_little(ds, dst, uids.EXPLICIT_VR_LITTLE_ENDIAN, sop_class, sop_instance)


def _write_explicit_little(
    ds: Dataset, dst: BinaryIO, syntax: str, sop_class: str, sop_instance: str
) -> None:
    """`ds` as a PS3.10 file with File Meta of our own naming `syntax`, its data set written
    Explicit VR Little Endian."""
    ds.preamble = None
    ds.file_meta = FileMetaDataset()
    dst.write(_file_meta_bytes(syntax, sop_class, sop_instance))
    dcmwrite(dst, ds, implicit_vr=False, little_endian=True, force_encoding=True)


@contextlib.contextmanager
def _rejected_as(what: str) -> Iterator[None]:
    """pydicom's failures on input it cannot read or write back, as ObjectRejected saying
    `what`; the storage's own errors pass (web/errors.py answers them)."""
    try:
        yield
    except ObjectRejected:
        raise
    except _PARSE_ERRORS as exc:
        if is_storage_error(exc):
            raise
        raise ObjectRejected(CANNOT_UNDERSTAND, f"{what}: {exc}") from exc


def swap_binary_words(ds: Dataset) -> None:
    """Big to little endian for the binary VRs pydicom leaves as raw bytes."""
    bits = int(ds.get("BitsAllocated") or 16)
    for elem in ds.iterall():
        vr = str(elem.VR)
        if not isinstance(elem.value, bytes):
            continue
        width = _SWAP_WIDTH.get(vr)
        if elem.tag in PIXEL_DATA_TAGS and bits in (16, 32, 64) and vr != "OB":
            width = bits // 8
        if width and len(elem.value) % width == 0:
            elem.value = np.frombuffer(elem.value, dtype=f">u{width}").byteswap().tobytes()


def _frames(
    header: Dataset, scan: ScanResult, buf: Buffer, transfer_syntax: str
) -> tuple[list[Ranges] | None, str | None, int]:
    if transfer_syntax == uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN and "Rows" in header:
        # Served by decoding the whole object (services/pixels.py); the count still holds.
        try:
            count = max(1, int(header.get("NumberOfFrames") or 1))
        except (ValueError, TypeError):
            count = 1
        return None, "the object is deflated: its frames have no byte offsets", count
    if scan.pixel_vr is None:
        return None, None, 0
    try:
        count = int(header.get("NumberOfFrames") or 1)
        geometry = ImageGeometry(
            rows=int(header.get("Rows") or 0),
            columns=int(header.get("Columns") or 0),
            samples_per_pixel=int(header.get("SamplesPerPixel") or 1),
            bits_allocated=int(header.get("BitsAllocated") or 0),
            number_of_frames=count,
        )
    except (ValueError, TypeError) as exc:
        return None, f"the image attributes cannot be read: {exc}", 0
    if count < 1:
        return None, f"Number of Frames is {count}", 0
    try:
        if scan.fragments is not None:
            return encapsulated_frames(scan, count, buf), None, count
        if scan.pixel_value is None:
            return None, "no Pixel Data value", count
        return native_frames(scan.pixel_value, geometry), None, count
    except FrameLayoutError as exc:
        return None, str(exc), count


def rewrite(src: BinaryIO, dst: BinaryIO, change: Callable[[Dataset], None], failure: str) -> None:
    """The object in `src` with `change` applied to its data set, a new PS3.10 file written
    to `dst`: the two steps that rewrite objects (de-identification, corrections). Native
    pixel data is written Explicit VR Little Endian; encapsulated syntaxes keep their
    compressed frames byte for byte. Raises ObjectRejected with `failure`."""
    with _rejected_as(failure):
        src.seek(0)
        ds = dcmread(src, force=True)
        meta = getattr(ds, "file_meta", None)
        syntax = _text(meta.get("TransferSyntaxUID")) if meta is not None else None
        if ds.original_encoding[1] is False:
            swap_binary_words(ds)
        if syntax is None or syntax in uids.NATIVE_TRANSFER_SYNTAXES:
            syntax = uids.EXPLICIT_VR_LITTLE_ENDIAN
        change(ds)
        _, _, sop_instance, sop_class = required_uids(ds)
        _write_explicit_little(ds, dst, syntax, sop_class, sop_instance)
