"""Reading pixels of stored objects for transcoding and rendering.

A frame is decoded from the bytes found at ingest (one ranged read) with the object's header
(the bytes before Pixel Data, parsed once and kept in a small cache keyed by the blob key:
a blob key names one immutable copy, so the cache is right whatever another process
stores). Objects whose frames could not be located at ingest (deflated ones) are decoded
whole, within the transcoding size limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
from pydicom.dataset import Dataset

from dicomweb_server.dicom import part10, transcode
from dicomweb_server.dicom.errors import TranscodeError
from dicomweb_server.dicom.scan import PIXEL_DATA
from dicomweb_server.services.budget import MemoryBudget
from dicomweb_server.services.errors import NotAcceptable, NotFound
from dicomweb_server.services.ports import BlobStore, StoredInstance, StoredPixels

# Explicit VR Little Endian header of Pixel Data: tag, VR, two reserved bytes, 4-byte length.
_PIXEL_ELEMENT_HEADER = 12

Description = dict[str, Any]


class PixelReader:
    def __init__(
        self,
        blobs: BlobStore,
        max_transcode_bytes: int,
        options: transcode.TranscodeOptions | None = None,
        cache_entries: int = 512,
        budget: MemoryBudget | None = None,
    ) -> None:
        self._blobs = blobs
        self.max_transcode_bytes = max_transcode_bytes
        self.budget = budget or MemoryBudget()
        self.options = options or transcode.TranscodeOptions()
        self._headers: OrderedDict[str, Dataset] = OrderedDict()
        self._cache_entries = cache_entries
        self._lock = threading.Lock()

    def header(self, pixels: StoredPixels) -> Dataset:
        """The data set before Pixel Data (File Meta included), parsed once per copy."""
        key = pixels.instance.blob_key
        with self._lock:
            cached = self._headers.get(key)
            if cached is not None:
                self._headers.move_to_end(key)
                return cached
        value = pixels.layout.bulk_data.get(f"{PIXEL_DATA:08X}")
        if pixels.layout.frames is None:
            # Not addressable by offset (deflated): the header is read from the whole object.
            head = self.whole_object(pixels.instance)
        elif value is None:
            raise NotFound(f"instance {pixels.instance.sop_instance_uid} has no Pixel Data")
        else:
            head = self._blobs.read_range(key, 0, value[0] - _PIXEL_ELEMENT_HEADER)
        header = part10.parse_header(head)
        with self._lock:
            self._headers[key] = header
            while len(self._headers) > self._cache_entries:
                self._headers.popitem(last=False)
        return header

    def whole_object(self, instance: StoredInstance) -> bytes:
        if instance.size > self.max_transcode_bytes:
            raise NotAcceptable(
                f"instance {instance.sop_instance_uid} ({instance.size} bytes) is larger than "
                f"{self.max_transcode_bytes} bytes, the most this server decodes at once; "
                "retrieve it in its stored transfer syntax (transfer-syntax=*)"
            )
        return self._blobs.read_range(instance.blob_key, 0, instance.size)

    def frame_bytes(self, pixels: StoredPixels) -> int:
        """Bytes of one decoded frame (native, little endian), from the header."""
        header = self.header(pixels)
        return (
            int(header.get("Rows", 0))
            * int(header.get("Columns", 0))
            * int(header.get("SamplesPerPixel", 1))
            * max(1, int(header.get("BitsAllocated", 8)) // 8)
        )

    def decoded_bytes(self, pixels: StoredPixels) -> int:
        """Bytes of all its frames decoded."""
        return self.frame_bytes(pixels) * max(1, pixels.layout.number_of_frames)

    def parse_object(self, instance: StoredInstance) -> Dataset:
        """A whole (small) object parsed, e.g. a presentation state."""
        return part10.parse_object(self.whole_object(instance))

    def frame_arrays(
        self, pixels: StoredPixels, numbers: list[int]
    ) -> Iterator[tuple[np.ndarray, Description]]:
        """Frames `numbers` (from 1) decoded one at a time, colour as RGB, each with its pixel
        description. An object without frame offsets is read and parsed once for all."""
        source = pixels.instance.transfer_syntax_uid
        try:
            frames = pixels.layout.frames
            if frames is None:
                ds = part10.parse_object(self.whole_object(pixels.instance))
                if "PixelData" not in ds:
                    raise NotFound(f"instance {pixels.instance.sop_instance_uid} has no Pixel Data")
                for n in numbers:
                    yield transcode.decode_frame_of(ds, n)
                return
            header = self.header(pixels)
            for n in numbers:
                data = b"".join(
                    self._blobs.read_range(pixels.instance.blob_key, o, length)
                    for o, length in frames[n - 1]
                )
                yield transcode.decode_frame(header, data, source)
        except TranscodeError as exc:
            raise NotAcceptable(str(exc)) from exc

    def encoded_frames(self, pixels: StoredPixels, numbers: list[int], target: str) -> list[bytes]:
        """Frames decoded and encoded in `target` (native: little-endian pixel bytes); they
        are held together, so their decoded size is bounded like a transcoded object's."""
        frame_bytes = self.frame_bytes(pixels)
        if frame_bytes * len(numbers) > self.max_transcode_bytes:
            raise NotAcceptable(
                f"{len(numbers)} frame(s) of {frame_bytes} bytes exceed the "
                f"{self.max_transcode_bytes} bytes this server transcodes per response; ask "
                "for fewer frames or for transfer-syntax=*"
            )
        out = []
        for array, description in self.frame_arrays(pixels, numbers):
            try:
                out.append(transcode.encode_frame(array, description, target, self.options))
            except TranscodeError as exc:
                raise NotAcceptable(str(exc)) from exc
        return out

    def transcoded_object(self, instance: StoredInstance, target: str) -> bytes:
        try:
            return transcode.transcode(self.whole_object(instance), target, self.options)
        except TranscodeError as exc:
            raise NotAcceptable(f"instance {instance.sop_instance_uid}: {exc}") from exc
