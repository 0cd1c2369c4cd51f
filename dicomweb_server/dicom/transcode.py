"""Transcoding between transfer syntaxes on retrieve (PS3.18 8.7.3.4, PS3.5 Annex A).

Decoding goes through pydicom's decoders (pylibjpeg-openjpeg, pylibjpeg-rle, pyjpegls,
Pillow, and `codecs.py` for the JPEG processes pydicom can only read through GPL code).
Encoding goes through pydicom's encoders where it has them (RLE Lossless, JPEG-LS, JPEG 2000)
and through `codecs.py` for JPEG Baseline, JPEG Lossless SV1 and HTJ2K Lossless. One frame is
decoded and encoded at a time. The matrix this gives is in docs/conformance.md.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.encoders.base import get_encoder
from pydicom.uid import UID

from dicomweb_server.dicom import codecs, uids
from dicomweb_server.dicom.errors import TranscodeError

codecs.register()


# Syntaxes whose pixel data may have lost information (JPEG 2000 .91 and HTJ2K .203 allow
# either; we cannot know, so count them lossy): PS3.18 8.7.3.4 lets such objects be
# returned as stored when no syntax is asked for.
LOSSY_SYNTAXES = frozenset(
    {uid.JPEGBaseline8Bit, uid.JPEGExtended12Bit, uid.JPEGLSNearLossless, uid.JPEG2000, uid.HTJ2K}
)

# PS3.3 C.7.6.1.1.5.1: Lossy Image Compression Method of each lossy target.
_LOSSY_METHOD: dict[str, str] = {
    uid.JPEGBaseline8Bit: "ISO_10918_1",
    uid.JPEGLSNearLossless: "ISO_14495_1",
    uid.JPEG2000: "ISO_15444_1",
}

# The syntaxes an object or frame can be transcoded to.
ENCODABLE = frozenset(
    {
        uids.EXPLICIT_VR_LITTLE_ENDIAN,
        uids.DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN,
        uid.RLELossless,
        uid.JPEGBaseline8Bit,
        uid.JPEGLosslessSV1,
        uid.JPEGLSLossless,
        uid.JPEGLSNearLossless,
        uid.JPEG2000Lossless,
        uid.JPEG2000,
        uid.HTJ2KLossless,
    }
)


@dataclass(frozen=True)
class TranscodeOptions:
    jpeg_quality: int = 90  # JPEG Baseline quality, 1-100
    j2k_compression_ratio: float = 10.0  # JPEG 2000 lossy: target ratio
    jls_near_lossless_error: int = 2  # JPEG-LS near-lossless: largest error per sample


def is_encapsulated(transfer_syntax: str) -> bool:
    return transfer_syntax not in uids.NATIVE_TRANSFER_SYNTAXES


def decodable(transfer_syntax: str) -> bool:
    """Whether pixel data in this syntax can be decoded here."""
    if not is_encapsulated(transfer_syntax):
        return True
    try:
        return bool(get_decoder(transfer_syntax).is_available)
    except NotImplementedError:
        return False


def can_transcode(source: str, target: str) -> bool:
    return source == target or (target in ENCODABLE and decodable(source))


def transcode(data: bytes, target: str, options: TranscodeOptions | None = None) -> bytes:
    """A PS3.10 object in another transfer syntax: the same data set, its pixel data decoded
    and encoded again frame by frame. Raise TranscodeError with the reason when impossible."""
    options = options or TranscodeOptions()
    ds = dcmread(io.BytesIO(data))
    source = str(ds.file_meta.TransferSyntaxUID)
    if source == target:
        return data
    if not can_transcode(source, target):
        raise TranscodeError(_unsupported(source, target))
    if "PixelData" in ds and (is_encapsulated(source) or is_encapsulated(target)):
        _transcode_pixel_data(ds, source, target, options)
    ds.file_meta.TransferSyntaxUID = UID(target)
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _transcode_pixel_data(ds: Dataset, source: str, target: str, opts: TranscodeOptions) -> None:
    frames: list[bytes] = []
    description: dict[str, Any] = {}
    for array, description in _decode_frames(ds, source):
        frames.append(encode_frame(array, description, target, opts))
    photometric = _encoded_photometric(description, target)
    for keyword, value in (
        ("PhotometricInterpretation", photometric),
        ("BitsAllocated", description["bits_allocated"]),
        ("BitsStored", description["bits_stored"]),
        ("HighBit", description["bits_stored"] - 1),
    ):
        setattr(ds, keyword, value)
    if description["samples_per_pixel"] > 1:
        ds.PlanarConfiguration = 0
    if is_encapsulated(target):
        ds.PixelData = encapsulate(frames, has_bot=True)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = b"".join(frames)
        ds["PixelData"].VR = "OW" if description["bits_allocated"] > 8 else "OB"
        ds["PixelData"].is_undefined_length = False
    if target in _LOSSY_METHOD:
        native = _native_frame_bytes(description) * len(frames)
        _mark_lossy(ds, target, native / max(1, sum(len(f) for f in frames)))


def _decode_frames(ds: Dataset, source: str) -> Iterator[tuple[np.ndarray, dict[str, Any]]]:
    try:
        decoder = get_decoder(source)
        for array, meta in decoder.iter_array(ds, as_rgb=True):
            yield array, {**_description(ds), **meta}
    except (NotImplementedError, RuntimeError, ValueError) as exc:
        raise TranscodeError(f"the pixel data in {_name(source)} cannot be decoded: {exc}") from exc


def decode_frame(header: Dataset, frame: bytes, source: str) -> tuple[np.ndarray, dict[str, Any]]:
    """One stored frame (its bytes as found at ingest) as an array, colour as RGB, with the
    pixel description that goes with it."""
    ds = Dataset()
    ds.update(header)
    ds.file_meta = header.file_meta
    ds.NumberOfFrames = 1
    if is_encapsulated(source):
        ds.PixelData = encapsulate([frame])
        ds["PixelData"].VR = "OB"
    else:
        ds.PixelData = frame
        ds["PixelData"].VR = "OW" if int(header.get("BitsAllocated", 16)) > 8 else "OB"
    return next(_decode_frames(ds, source))


def decode_frame_of(ds: Dataset, number: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Frame `number` (from 1) of a whole data set, colour as RGB."""
    source = str(ds.file_meta.TransferSyntaxUID)
    try:
        array, meta = get_decoder(source).as_array(ds, index=number - 1, as_rgb=True)  # type: ignore[arg-type]
    except (NotImplementedError, RuntimeError, ValueError, IndexError) as exc:
        raise TranscodeError(f"the pixel data in {_name(source)} cannot be decoded: {exc}") from exc
    return array, {**_description(ds), **meta}


def encode_frame(
    array: np.ndarray, description: dict[str, Any], target: str, options: TranscodeOptions
) -> bytes:
    """One decoded frame in `target`: native little-endian bytes, or a compressed frame."""
    photometric = str(description["photometric_interpretation"])
    bits_stored = int(description["bits_stored"])
    if not is_encapsulated(target):
        return _native_bytes(array, description)
    if target in _LOSSY_METHOD and photometric == "PALETTE COLOR":
        raise TranscodeError("PALETTE COLOR pixel data may only be compressed losslessly")
    try:
        if target == uid.JPEGBaseline8Bit:
            if int(description["bits_allocated"]) != 8 or description["pixel_representation"]:
                raise TranscodeError(
                    f"JPEG Baseline holds unsigned 8-bit samples; this image has "
                    f"{bits_stored}-bit samples"
                )
            return codecs.encode_jpeg_baseline(array, options.jpeg_quality)
        if target == uid.HTJ2KLossless:
            if int(description["bits_allocated"]) > 16:
                raise TranscodeError(f"HTJ2K here holds at most 16-bit samples, not {bits_stored}")
            return codecs.encode_htj2k_lossless(array)
        if target == uid.JPEGLosslessSV1:
            unsigned = array.astype(np.int64) & ((1 << bits_stored) - 1)
            dtype = np.uint8 if bits_stored <= 8 else np.uint16
            return codecs.encode_jpeg_lossless_sv1(unsigned.astype(dtype), max(2, bits_stored))
        kwargs: dict[str, Any] = {}
        if target == uid.JPEG2000:
            kwargs["j2k_cr"] = [options.j2k_compression_ratio]
        elif target == uid.JPEGLSNearLossless:
            kwargs["jls_error"] = options.jls_near_lossless_error
        return bytes(
            get_encoder(target).encode(
                np.ascontiguousarray(array),
                rows=description["rows"],
                columns=description["columns"],
                samples_per_pixel=description["samples_per_pixel"],
                bits_allocated=description["bits_allocated"],
                bits_stored=bits_stored,
                pixel_representation=description["pixel_representation"],
                photometric_interpretation=photometric,
                number_of_frames=1,
                planar_configuration=0,
                **kwargs,
            )
        )
    except TranscodeError:
        raise
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        raise TranscodeError(f"the pixel data cannot be encoded in {_name(target)}: {exc}") from exc


def _encoded_photometric(description: dict[str, Any], target: str) -> str:
    photometric = str(description["photometric_interpretation"])
    if target == uid.JPEGBaseline8Bit and description["samples_per_pixel"] == 3:
        return "YBR_FULL_422"
    return photometric


def _native_bytes(array: np.ndarray, description: dict[str, Any]) -> bytes:
    bits = int(description["bits_allocated"])
    if bits == 1:
        return bytes(np.packbits(array.astype(np.uint8).ravel(), bitorder="little").tobytes())
    signed = bool(description["pixel_representation"])
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    return bytes(np.ascontiguousarray(array).astype(dtype, copy=False).tobytes())


def _native_frame_bytes(description: dict[str, Any]) -> int:
    return (
        int(description["rows"])
        * int(description["columns"])
        * int(description["samples_per_pixel"])
        * int(description["bits_allocated"])
        // 8
    )


def _mark_lossy(ds: Dataset, target: str, ratio: float) -> None:
    """PS3.3 C.7.6.1.1.5: once lossy, always lossy; ratios and methods accumulate."""
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = [
        *_values(ds, "LossyImageCompressionRatio"),
        f"{ratio:.4g}"[:16],
    ]
    ds.LossyImageCompressionMethod = [
        *_values(ds, "LossyImageCompressionMethod"),
        _LOSSY_METHOD[target],
    ]


def _values(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value is None or value == "":
        return []
    if isinstance(value, str | int | float):
        return [str(value)]
    return [str(v) for v in value]


def _description(ds: Dataset) -> dict[str, Any]:
    return {
        "rows": int(ds.Rows),
        "columns": int(ds.Columns),
        "samples_per_pixel": int(ds.get("SamplesPerPixel", 1)),
        "bits_allocated": int(ds.BitsAllocated),
        "bits_stored": int(ds.get("BitsStored", ds.BitsAllocated)),
        "pixel_representation": int(ds.get("PixelRepresentation", 0)),
        "photometric_interpretation": str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
    }


def _name(transfer_syntax: str) -> str:
    name = UID(transfer_syntax).name
    return f"{name} ({transfer_syntax})" if name != transfer_syntax else transfer_syntax


def _unsupported(source: str, target: str) -> str:
    if not decodable(source):
        return f"pixel data in {_name(source)} cannot be decoded here"
    return f"objects cannot be transcoded to {_name(target)} here"
