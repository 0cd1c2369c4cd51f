"""Where each frame of Pixel Data lives in the stored object, computed once at ingest.

A frame is a list of (offset, length) byte ranges: one range for native pixel data, one per
fragment for encapsulated pixel data (PS3.5 A.4), so serving a frame never parses the object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import overload

from dicomweb_server.dicom.scan import Buffer, ScanResult

Ranges = list[tuple[int, int]]


class FrameTable(Sequence[Ranges]):
    """The frames' ranges as kept in the index, one flat list [offset, length, offset, ...]
    per frame, turned into (offset, length) pairs only for the frames asked for: serving one
    frame of a 500-frame object converts that frame, not all 500 (the conversion was a
    quarter of the CPU of a frame request)."""

    __slots__ = ("_flat",)

    def __init__(self, flat: list[list[int]]) -> None:
        self._flat = flat

    def __len__(self) -> int:
        return len(self._flat)

    @overload
    def __getitem__(self, index: int) -> Ranges: ...

    @overload
    def __getitem__(self, index: slice) -> list[Ranges]: ...

    def __getitem__(self, index: int | slice) -> Ranges | list[Ranges]:
        if isinstance(index, slice):
            return [_pairs(f) for f in self._flat[index]]
        return _pairs(self._flat[index])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FrameTable({len(self)} frames)"


def _pairs(flat: list[int]) -> Ranges:
    return list(zip(flat[0::2], flat[1::2], strict=True))


_JPEG_SOI = b"\xff\xd8"
_J2K_SOC = b"\xff\x4f"


@dataclass(frozen=True)
class ImageGeometry:
    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    number_of_frames: int


class FrameLayoutError(ValueError):
    """The frames of this object cannot be located (the reason is the message)."""


def native_frames(value: tuple[int, int], geometry: ImageGeometry) -> list[Ranges]:
    """PS3.5 8.1.1: frames of native pixel data follow each other with no padding."""
    offset, length = value
    frame_bits = (
        geometry.rows * geometry.columns * geometry.samples_per_pixel * geometry.bits_allocated
    )
    if frame_bits % 8:
        raise FrameLayoutError("frames of 1-bit pixel data do not start on byte boundaries")
    frame_bytes = frame_bits // 8
    if frame_bytes == 0 or frame_bytes * geometry.number_of_frames > length:
        raise FrameLayoutError(
            f"Pixel Data holds {length} bytes, fewer than {geometry.number_of_frames} frames "
            f"of {frame_bytes} bytes"
        )
    return [[(offset + i * frame_bytes, frame_bytes)] for i in range(geometry.number_of_frames)]


def encapsulated_frames(scan: ScanResult, number_of_frames: int, peek: Buffer) -> list[Ranges]:
    """Group fragments into frames (PS3.5 A.4), using the first rule that applies.

    `peek` is the stored object (or any buffer holding its bytes) to look at fragment starts.
    """
    fragments = scan.fragments or []
    if not fragments:
        raise FrameLayoutError("encapsulated Pixel Data has no fragments")
    if number_of_frames == 1:
        return [list(fragments)]
    table = scan.basic_offset_table
    if len(table) == number_of_frames:
        # Offsets count from the first byte of the first fragment's Item tag.
        starts = [scan.first_fragment_item + off for off in table]
        frames: list[Ranges] = [[] for _ in range(number_of_frames)]
        index = 0
        for offset, length in fragments:
            item = offset - 8
            while index + 1 < number_of_frames and item >= starts[index + 1]:
                index += 1
            frames[index].append((offset, length))
        if all(frames):
            return frames
    if len(fragments) == number_of_frames:
        return [[f] for f in fragments]
    # No usable offset table: a new frame starts where a JPEG or JPEG 2000 code-stream starts.
    grouped: list[Ranges] = []
    for offset, length in fragments:
        head = bytes(peek[offset : offset + 2])
        if head in (_JPEG_SOI, _J2K_SOC) or not grouped:
            grouped.append([])
        grouped[-1].append((offset, length))
    if len(grouped) == number_of_frames:
        return grouped
    raise FrameLayoutError(
        f"{len(fragments)} fragments cannot be grouped into {number_of_frames} frames"
    )
