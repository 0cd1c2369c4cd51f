"""JPEG codecs that pydicom 3 lacks without a GPL dependency, from imagecodecs (BSD).

pydicom decodes JPEG Extended (12-bit) and JPEG Lossless only through pylibjpeg-libjpeg
(GPLv3) or GDCM, and encodes neither JPEG Baseline nor JPEG Lossless. imagecodecs wraps
libjpeg-turbo 3, which reads and writes all of them, so this module is:

- a pydicom decoder plugin (the module-level `is_available`, `DECODER_DEPENDENCIES` and
  `decode_frame` pydicom's plugin interface asks for), registered by `register()` after
  pydicom's own plugins, so a GPL plugin a user installs still comes first;
- frame encoders used by `transcode.py`: JPEG Baseline, JPEG Lossless SV1, and HTJ2K
  lossless (OpenJPH, which pydicom cannot encode with either).
"""

from __future__ import annotations

from typing import Any

import imagecodecs
import numpy as np
from pydicom import uid
from pydicom.pixels.decoders import base as decoders

# The syntaxes this plugin decodes; JPEG Baseline is Pillow's in pydicom already, and this
# plugin serves as its fallback.
_DECODES = (
    uid.JPEGBaseline8Bit,
    uid.JPEGExtended12Bit,
    uid.JPEGLossless,
    uid.JPEGLosslessSV1,
)
DECODER_DEPENDENCIES = {ts: ("imagecodecs>=2024.1",) for ts in _DECODES}
_LABEL = "dicomweb-imagecodecs"


def is_available(transfer_syntax: str) -> bool:
    return transfer_syntax in _DECODES and bool(imagecodecs.JPEG8.available)


def decode_frame(src: bytes, runner: Any) -> bytes:
    """One JPEG frame as pixel bytes, without colour conversion (pydicom's `raw` contract):
    YBR data stays YBR and pydicom converts it when the caller asks for RGB."""
    colour = runner.samples_per_pixel == 3
    if colour and str(runner.photometric_interpretation).startswith("YBR"):
        decoded = imagecodecs.jpeg8_decode(src, colorspace="YCBCR", outcolorspace="YCBCR")
    else:
        decoded = imagecodecs.jpeg8_decode(src)
    return bytes(np.ascontiguousarray(decoded).tobytes())


def register() -> None:
    """Add this plugin to pydicom's decoders once (pydicom's registry is process-global;
    `transcode.py` calls this at import, under the import lock)."""
    for ts in _DECODES:
        decoder = decoders.get_decoder(ts)
        if _LABEL not in decoder.available_plugins:
            decoder.add_plugin(_LABEL, (__name__, "decode_frame"))


def encode_jpeg_baseline(frame: np.ndarray, quality: int) -> bytes:
    """PS3.5 A.4.1 JPEG Baseline (Process 1) of one 8-bit frame; colour as YCbCr 4:2:2
    (PS3.5 8.2.1: YBR_FULL_422 is the photometric interpretation of such frames)."""
    frame = np.ascontiguousarray(frame)
    if frame.ndim == 3:
        return bytes(imagecodecs.jpeg8_encode(frame, level=quality, subsampling="422"))
    return bytes(imagecodecs.jpeg8_encode(frame, level=quality))


def encode_jpeg_lossless_sv1(frame: np.ndarray, bits_stored: int) -> bytes:
    """PS3.5 A.4.1 JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14,
    Selection Value 1) of one frame; colour components are coded as they are (RGB)."""
    frame = np.ascontiguousarray(frame)
    return bytes(
        imagecodecs.jpeg8_encode(frame, lossless=True, predictor=1, bitspersample=bits_stored)
    )


def encode_htj2k_lossless(frame: np.ndarray) -> bytes:
    """PS3.5 A.4.8 High-Throughput JPEG 2000 Lossless of one frame: a reversible code-stream
    without a colour transform, so RGB stays RGB (a transform would make it YBR_RCT)."""
    frame = np.ascontiguousarray(frame)
    return bytes(imagecodecs.htj2k_encode(frame, reversible=True, rgb=False))


# ISO/IEC 10918-1 Table B.1: start-of-frame markers (C4 DHT, C8 JPG and CC DAC are not).
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_start_of_frame(head: bytes) -> int | None:
    """The start-of-frame marker (0xC0 baseline ... 0xC3 lossless) of a JPEG codestream's
    first bytes, or None if they do not reach one (B.2: SOI, then length-prefixed segments)."""
    if head[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # B.1.1.2: fill bytes before a marker
            at += 1
            continue
        if marker in _SOF_MARKERS:
            return marker
        at += 2 + int.from_bytes(head[at + 2 : at + 4], "big")
    return None
