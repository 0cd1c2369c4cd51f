"""Transcoding matrix (dicom/transcode.py): every pair round-trips on pydicom's files.

Lossless targets must give back the decoded pixels exactly; lossy ones stay above a stated
PSNR (or, for JPEG-LS near-lossless, within its error bound) and are marked lossy (PS3.3
C.7.6.1.1.5). Pairs that cannot be done raise TranscodeError with the reason.
"""

from __future__ import annotations

import io

import imagecodecs
import numpy as np
import pytest
from pydicom import dcmread, uid
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate

from dicomweb_server.dicom import transcode as t
from dicomweb_server.dicom.errors import TranscodeError
from tests.factories import bundled_bytes, make_instance, to_bytes

SOURCES = [
    "CT_small.dcm",  # Explicit VR Little Endian, signed 16-bit
    "image_dfl.dcm",  # Deflated, 8-bit
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG Baseline, YBR_FULL_422
    "SC_rgb_rle_2frame.dcm",  # RGB, 2 frames
    "JPEG2000.dcm",
]
# Lower PSNR bounds (dB) of the lossy targets at the default options.
PSNR_BOUND = {uid.JPEGBaseline8Bit: 30.0, uid.JPEG2000: 30.0}


def _jpeg_source(syntax: str, bits: int, lossless: bool) -> bytes:
    """A 12-bit JPEG Extended or a JPEG Lossless object: pydicom ships none."""
    ds = make_instance(rows=32, columns=48)
    rng = np.random.default_rng(1)
    pixels = np.add.outer(np.arange(32) * 40, np.arange(48) * 30) + rng.integers(0, 50, (32, 48))
    pixels = (pixels % (1 << bits)).astype(np.uint16)
    if lossless:
        frame = imagecodecs.jpeg8_encode(pixels, lossless=True, predictor=1, bitspersample=bits)
    else:
        frame = imagecodecs.jpeg8_encode(pixels, level=95, bitspersample=bits)
    ds.BitsStored, ds.HighBit = bits, bits - 1
    ds.PixelData = encapsulate([bytes(frame)])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = syntax
    return to_bytes(ds)


def _source(name: str) -> bytes:
    if name == "jpeg_extended_12bit":
        return _jpeg_source(uid.JPEGExtended12Bit, 12, lossless=False)
    if name == "jpeg_lossless_sv1":
        return _jpeg_source(uid.JPEGLosslessSV1, 12, lossless=True)
    return bundled_bytes(name)


def _pixels(ds: Dataset) -> np.ndarray:
    return ds.pixel_array.astype(np.float64)


def _psnr(a: np.ndarray, b: np.ndarray, bits: int) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(((1 << bits) - 1) ** 2 / mse)


@pytest.mark.parametrize("target", sorted(t.ENCODABLE))
@pytest.mark.parametrize("name", [*SOURCES, "jpeg_extended_12bit", "jpeg_lossless_sv1"])
def test_round_trip(name: str, target: str) -> None:
    data = _source(name)
    before = dcmread(io.BytesIO(data))
    if target == uid.JPEGBaseline8Bit and int(before.BitsAllocated) != 8:
        with pytest.raises(TranscodeError, match="8-bit"):
            t.transcode(data, target)
        return
    after = dcmread(io.BytesIO(t.transcode(data, target)))
    assert after.file_meta.TransferSyntaxUID == target
    assert after.SOPInstanceUID == before.SOPInstanceUID
    expected, got = _pixels(before), _pixels(after)
    assert got.shape == expected.shape
    source = str(before.file_meta.TransferSyntaxUID)
    if source == target:
        assert np.array_equal(got, expected)
    elif target in PSNR_BOUND:
        assert _psnr(got, expected, int(before.BitsStored)) > PSNR_BOUND[target]
        assert after.LossyImageCompression == "01"
        assert after.LossyImageCompressionMethod
    elif target == uid.JPEGLSNearLossless:
        assert np.abs(got - expected).max() <= 2
        assert after.LossyImageCompression == "01"
    else:
        assert np.array_equal(got, expected), f"{name} -> {target} is not lossless"


def test_decodable_and_matrix() -> None:
    for syntax in (
        uid.JPEGBaseline8Bit,
        uid.JPEGExtended12Bit,
        uid.JPEGLossless,
        uid.JPEGLosslessSV1,
    ):
        assert t.decodable(syntax), syntax
    assert not t.can_transcode("1.2.840.10008.1.2.4.100", uid.JPEG2000)  # MPEG-2: no decoder
    assert not t.can_transcode(uid.RLELossless, uid.HTJ2K)  # no lossy HTJ2K encoder
    assert t.can_transcode(uid.RLELossless, uid.HTJ2KLossless)
    assert t.can_transcode(uid.RLELossless, uid.RLELossless)


def test_unsupported_pairs_raise_with_reason() -> None:
    with pytest.raises(TranscodeError, match="cannot be decoded"):
        t.transcode(to_bytes(_mpeg()), "1.2.840.10008.1.2.1")
    palette = bundled_bytes("SC_rgb_rle_2frame.dcm")
    ds = dcmread(io.BytesIO(palette))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.decompress(generate_instance_uid=False)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.SamplesPerPixel = 1
    ds.Columns = ds.Columns * 3
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    with pytest.raises(TranscodeError, match="PALETTE COLOR"):
        t.transcode(buf.getvalue(), uid.JPEG2000)


def _mpeg() -> Dataset:
    ds = make_instance(rows=8, columns=8)
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
    return ds
