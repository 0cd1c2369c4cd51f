"""Walk the encoded data set without decoding values: where each large value lives.

Run once at ingest over the stored bytes (Explicit VR Little Endian encoding, PS3.5 7.1.2),
it yields the byte offset and length of every binary value worth a BulkDataURI and of each
Pixel Data fragment (PS3.5 A.4), so that retrieving a frame or bulk data later is one ranged
read. It also proves the encoding is complete: a value running past the end is a truncated
object.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field

from pydicom.datadict import dictionary_VR

from dicomweb_server.dicom.depth import MAX_DEPTH, too_deep
from dicomweb_server.dicom.errors import ObjectRejected
from dicomweb_server.dicom.store_status import CANNOT_UNDERSTAND
from dicomweb_server.dicom.vr import BINARY_VRS, LONG_LENGTH_VRS

# Any readable buffer of the stored bytes: bytes in tests, a memory map at ingest.
Buffer = bytes | memoryview | mmap.mmap


PIXEL_DATA = 0x7FE00010
FLOAT_PIXEL_DATA = 0x7FE00008
DOUBLE_FLOAT_PIXEL_DATA = 0x7FE00009
PIXEL_DATA_TAGS = frozenset({PIXEL_DATA, FLOAT_PIXEL_DATA, DOUBLE_FLOAT_PIXEL_DATA})

ITEM = 0xFFFEE000
ITEM_DELIMITATION = 0xFFFEE00D
SEQUENCE_DELIMITATION = 0xFFFEE0DD
UNDEFINED_LENGTH = 0xFFFFFFFF


_U16U16 = struct.Struct("<HH")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class BulkValue:
    vr: str
    offset: int
    length: int


@dataclass
class ScanResult:
    """What the walk found. Paths are tags (8 hex) and item indexes joined by '/'."""

    bulk: dict[str, BulkValue] = field(default_factory=dict)
    pixel_vr: str | None = None
    # Native pixel data: one value. Encapsulated: the fragments after the Basic Offset Table.
    pixel_value: tuple[int, int] | None = None
    fragments: list[tuple[int, int]] | None = None
    basic_offset_table: list[int] = field(default_factory=list)
    # File offset of the first fragment's Item tag: Basic Offset Table values count from here.
    first_fragment_item: int = 0


def tag_path(parts: tuple[int | str, ...]) -> str:
    return "/".join(f"{p:08X}" if isinstance(p, int) else p for p in parts)


class _Walker:
    def __init__(self, buf: Buffer, threshold: int, result: ScanResult) -> None:
        self.buf = buf
        self.end = len(buf)
        self.threshold = threshold
        self.result = result

    def _need(self, pos: int, count: int) -> None:
        if pos + count > self.end:
            raise ObjectRejected(
                CANNOT_UNDERSTAND,
                f"the object is truncated: {count} bytes expected at offset {pos}, "
                f"the object ends at {self.end}",
            )

    def _tag(self, pos: int) -> int:
        self._need(pos, 4)
        group, element = _U16U16.unpack_from(self.buf, pos)
        return int((group << 16) | element)

    def dataset(
        self, pos: int, end: int | None, path: tuple[int | str, ...], implicit: bool, depth: int
    ) -> int:
        """Walk a data set from `pos` up to `end` (or an Item Delimitation when `end` is None).

        Returns the position after the data set (after its delimiter, if any).
        """
        if depth > MAX_DEPTH:
            raise ObjectRejected(CANNOT_UNDERSTAND, "sequences are nested too deeply")
        limit = self.end if end is None else end
        while pos < limit:
            tag = self._tag(pos)
            if tag == ITEM_DELIMITATION:
                if end is not None:
                    raise ObjectRejected(CANNOT_UNDERSTAND, f"unexpected delimiter at {pos}")
                return pos + 8
            if tag in (ITEM, SEQUENCE_DELIMITATION):
                raise ObjectRejected(CANNOT_UNDERSTAND, f"unexpected item tag at offset {pos}")
            pos = self.element(pos, tag, path, implicit, depth)
        if end is None and depth > 0:
            raise ObjectRejected(CANNOT_UNDERSTAND, "an item has no delimiter: object truncated")
        if pos > limit:
            raise ObjectRejected(CANNOT_UNDERSTAND, "an element runs past the end of its item")
        return pos

    def element(
        self, pos: int, tag: int, path: tuple[int | str, ...], implicit: bool, depth: int
    ) -> int:
        if implicit:
            self._need(pos, 8)
            vr = b"UN"
            length = int(_U32.unpack_from(self.buf, pos + 4)[0])
            value = pos + 8
        else:
            self._need(pos, 8)
            vr = bytes(self.buf[pos + 4 : pos + 6])
            if vr in LONG_LENGTH_VRS:
                self._need(pos, 12)
                length = int(_U32.unpack_from(self.buf, pos + 8)[0])
                value = pos + 12
            elif vr.isalpha() and vr.isupper():
                length = int(_U16.unpack_from(self.buf, pos + 6)[0])
                value = pos + 8
            else:
                raise ObjectRejected(
                    CANNOT_UNDERSTAND,
                    f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) at offset {pos} has no valid "
                    "VR: the data set is not Explicit VR Little Endian",
                )
        here = (*path, tag)
        if length == UNDEFINED_LENGTH:
            if tag == PIXEL_DATA and depth == 0:
                after = self.encapsulated(value, vr.decode("ascii"))
                self.result.bulk[tag_path(here)] = BulkValue(
                    vr.decode("ascii"), value, after - value
                )
                return after
            if vr in (b"SQ", b"UN"):
                # PS3.5 6.2.2: UN of undefined length is encoded as Implicit VR Little Endian.
                return self.sequence(value, None, here, implicit or vr == b"UN", depth)
            raise ObjectRejected(
                CANNOT_UNDERSTAND, f"undefined length on a {vr.decode('ascii', 'replace')} value"
            )
        self._need(value, length)
        if vr == b"SQ":
            self.sequence(value, value + length, here, implicit, depth)
        elif tag in PIXEL_DATA_TAGS and depth == 0:
            self.result.pixel_vr = vr.decode("ascii")
            self.result.pixel_value = (value, length)
            self.result.bulk[tag_path(here)] = BulkValue(vr.decode("ascii"), value, length)
        elif not implicit and vr.decode("ascii") in BINARY_VRS and length > self.threshold:
            self.result.bulk[tag_path(here)] = BulkValue(vr.decode("ascii"), value, length)
        return value + length

    def sequence(
        self, pos: int, end: int | None, path: tuple[int | str, ...], implicit: bool, depth: int
    ) -> int:
        index = 0
        limit = self.end if end is None else end
        while pos < limit:
            tag = self._tag(pos)
            self._need(pos, 8)
            length = int(_U32.unpack_from(self.buf, pos + 4)[0])
            if tag == SEQUENCE_DELIMITATION:
                return pos + 8
            if tag != ITEM:
                raise ObjectRejected(CANNOT_UNDERSTAND, f"expected an item at offset {pos}")
            item_path = (*path, str(index))
            if length == UNDEFINED_LENGTH:
                pos = self.dataset(pos + 8, None, item_path, implicit, depth + 1)
            else:
                self._need(pos + 8, length)
                self.dataset(pos + 8, pos + 8 + length, item_path, implicit, depth + 1)
                pos = pos + 8 + length
            index += 1
        if end is None:
            raise ObjectRejected(CANNOT_UNDERSTAND, "a sequence has no delimiter: truncated")
        return pos

    def encapsulated(self, pos: int, vr: str) -> int:
        """PS3.5 A.4: a Basic Offset Table item, then one item per fragment."""
        result = self.result
        result.pixel_vr = vr
        fragments: list[tuple[int, int]] = []
        first = True
        while True:
            tag = self._tag(pos)
            self._need(pos, 8)
            length = int(_U32.unpack_from(self.buf, pos + 4)[0])
            if tag == SEQUENCE_DELIMITATION:
                pos += 8
                break
            if tag != ITEM or length == UNDEFINED_LENGTH:
                raise ObjectRejected(CANNOT_UNDERSTAND, f"bad Pixel Data item at offset {pos}")
            self._need(pos + 8, length)
            if first:
                count = length // 4
                result.basic_offset_table = list(
                    struct.unpack_from(f"<{count}I", self.buf, pos + 8)
                )
                result.first_fragment_item = pos + 8 + length
                first = False
            else:
                fragments.append((pos + 8, length))
            pos += 8 + length
        result.fragments = fragments
        return pos


def scan_dataset(buf: Buffer, start: int, threshold: int) -> ScanResult:
    """Walk the Explicit VR Little Endian data set that begins at `start` and runs to the end."""
    result = ScanResult()
    _Walker(buf, threshold, result).dataset(start, len(buf), (), False, 0)
    return result


def check_nesting(buf: bytes | memoryview, start: int, implicit: bool, little: bool) -> None:
    """Sequences nested in an encoded data set (PS3.5 7.5), walked without recursion.

    Only nesting is measured; every other fault is left to the parser that follows. A
    container of defined length ends at its length, one of undefined length at a delimiter;
    the content of UN of undefined length is Implicit VR Little Endian (PS3.5 6.2.2)."""
    order = "<" if little else ">"
    u16, u32 = struct.Struct(order + "H"), struct.Struct(order + "I")
    end = len(buf)
    # Open containers (sequences and items, alternating): where each ends (None: at a
    # delimiter) and whether its content is encoded with implicit VR.
    open_: list[tuple[int | None, bool]] = []
    pos = start
    while pos + 8 <= end:
        while open_ and open_[-1][0] is not None and pos >= (open_[-1][0] or 0):
            open_.pop()
        here_implicit = open_[-1][1] if open_ else implicit
        tag = (u16.unpack_from(buf, pos)[0] << 16) | u16.unpack_from(buf, pos + 2)[0]
        if tag >> 16 == 0xFFFE:
            length = u32.unpack_from(buf, pos + 4)[0]
            pos += 8
            if tag == ITEM:
                open_.append((None if length == UNDEFINED_LENGTH else pos + length, here_implicit))
                if (len(open_) + 1) // 2 > MAX_DEPTH:
                    raise ObjectRejected(CANNOT_UNDERSTAND, str(too_deep("the object")))
            elif open_ and open_[-1][0] is None:
                open_.pop()
            continue
        vr: bytes | None = None
        if here_implicit:
            length, value = u32.unpack_from(buf, pos + 4)[0], pos + 8
        else:
            vr = bytes(buf[pos + 4 : pos + 6])
            if vr in LONG_LENGTH_VRS:
                if pos + 12 > end:
                    return
                length, value = u32.unpack_from(buf, pos + 8)[0], pos + 12
            else:
                length, value = u16.unpack_from(buf, pos + 6)[0], pos + 8
        if length == UNDEFINED_LENGTH and tag in PIXEL_DATA_TAGS and not open_:
            pos = _skip_fragments(buf, value, u16, u32)
        elif vr == b"SQ" or length == UNDEFINED_LENGTH or (here_implicit and _is_sequence(tag)):
            inner_implicit = here_implicit or (vr == b"UN" and length == UNDEFINED_LENGTH)
            open_.append((None if length == UNDEFINED_LENGTH else value + length, inner_implicit))
            pos = value
        else:
            pos = value + length


def _is_sequence(tag: int) -> bool:
    try:
        return bool(dictionary_VR(tag) == "SQ")
    except KeyError:
        return False


def _skip_fragments(
    buf: bytes | memoryview, pos: int, u16: struct.Struct, u32: struct.Struct
) -> int:
    """Past encapsulated Pixel Data (PS3.5 A.4): items of raw bytes up to a delimiter."""
    while pos + 8 <= len(buf):
        tag = (u16.unpack_from(buf, pos)[0] << 16) | u16.unpack_from(buf, pos + 2)[0]
        length = u32.unpack_from(buf, pos + 4)[0]
        pos += 8
        if tag != ITEM or length == UNDEFINED_LENGTH:
            return pos
        pos += length
    return pos
