"""Rendered resources and thumbnails (PS3.18 10.4.1.1.3-4), checked against pydicom.

Each rendering is decoded with Pillow and compared with pixels computed independently with
pydicom's own Modality LUT, windowing and colour LUT functions.
"""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_windowing

from tests.api.test_wado import urls
from tests.factories import bundled_bytes, make_instance, parse, to_bytes
from tests.helpers import parts, stow


def _png(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def _windowed(ds: Dataset, center: float, width: float, function: str) -> np.ndarray:
    """pydicom's windowing into 0..255 (an 8-bit unsigned output range)."""
    values = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    window = Dataset()
    window.PixelRepresentation, window.BitsStored = 0, 8
    window.PhotometricInterpretation = "MONOCHROME2"
    window.WindowCenter, window.WindowWidth, window.VOILUTFunction = center, width, function
    return apply_windowing(values, window)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_window_parameter_matches_pydicom(client: httpx.Client, function: str) -> None:
    data = bundled_bytes("CT_small.dcm")
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    r = client.get(
        urls(ds)[2] + "/rendered",
        params={"window": f"40,400,{function}"},
        headers={"Accept": "image/png"},
    )
    got = _png(r).astype(np.float64)
    assert np.abs(got - _windowed(ds, 40, 400, function)).max() <= 1


def test_stored_window_and_monochrome1(client: httpx.Client) -> None:
    data = bundled_bytes("MR_small.dcm")
    ds = parse(data)
    inverted = make_instance(rows=16, columns=16)
    inverted.PhotometricInterpretation = "MONOCHROME1"
    inverted.WindowCenter, inverted.WindowWidth = 1, 4
    assert stow(client, [data, inverted]).status_code == 200
    got = _png(client.get(urls(ds)[2] + "/rendered", headers={"Accept": "image/png"}))
    assert np.abs(got - _windowed(ds, 600, 1600, "LINEAR")).max() <= 1
    got = _png(client.get(urls(inverted)[2] + "/rendered", headers={"Accept": "image/png"}))
    expected = 255 - _windowed(inverted, 1, 4, "LINEAR")
    assert np.abs(got - expected).max() <= 1


def test_colour_rgb_ybr_and_palette(client: httpx.Client) -> None:
    rgb = bundled_bytes("SC_rgb_rle_2frame.dcm")
    ybr = bundled_bytes("SC_rgb_jpeg_dcmtk.dcm")
    palette = _palette_instance()
    assert stow(client, [rgb, ybr, palette]).status_code == 200
    for data in (rgb, ybr):
        ds = parse(data)
        got = _png(client.get(urls(ds)[2] + "/frames/1/rendered", headers={"Accept": "image/png"}))
        frame = ds.pixel_array[0] if int(ds.get("NumberOfFrames", 1)) > 1 else ds.pixel_array
        assert np.abs(got.astype(int) - frame.astype(int)).max() <= 1
    got = _png(client.get(urls(palette)[2] + "/rendered", headers={"Accept": "image/png"}))
    expected = apply_color_lut(palette.pixel_array, palette) >> 8
    assert np.array_equal(got, expected.astype(np.uint8))


def _palette_instance() -> Dataset:
    ds = make_instance(rows=8, columns=8)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = np.arange(64, dtype=np.uint8).reshape(8, 8).tobytes()
    entries = np.arange(256, dtype=np.uint16)
    for colour, lut in (
        ("Red", entries * 256),
        ("Green", 65535 - entries * 256),
        ("Blue", entries * 128),
    ):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut.astype("<u2").tobytes())
    return ds


def test_viewport_quality_and_annotation(client: httpx.Client) -> None:
    ds = make_instance(rows=64, columns=128)
    ds.PixelData = (np.arange(64 * 128, dtype="<u2") % 4096).tobytes()
    assert stow(client, [ds]).status_code == 200
    url = urls(ds)[2] + "/rendered"
    jpeg = {"Accept": "image/jpeg"}
    r = client.get(url, params={"viewport": "64,64"}, headers=jpeg)
    assert Image.open(io.BytesIO(r.content)).size == (64, 32)
    whole = _png(client.get(url, headers={"Accept": "image/png"}))
    part = _png(
        client.get(url, params={"viewport": "32,16,10,20,32,16"}, headers={"Accept": "image/png"})
    )
    assert np.array_equal(part, whole[20:36, 10:42])
    flipped = _png(
        client.get(url, params={"viewport": "32,16,10,20,-32,16"}, headers={"Accept": "image/png"})
    )
    assert np.array_equal(flipped, whole[20:36, 10:42][:, ::-1])
    small = client.get(url, params={"quality": "5"}, headers=jpeg).content
    large = client.get(url, params={"quality": "95"}, headers=jpeg).content
    assert len(small) < len(large)
    plain = _png(client.get(url, headers={"Accept": "image/png"}))
    annotated = _png(
        client.get(url, params={"annotation": "patient,technique"}, headers={"Accept": "image/png"})
    )
    assert annotated.shape[:2] == plain.shape[:2] and annotated.ndim == 3
    assert not np.array_equal(annotated[..., 0], plain)


def test_multi_frame_rendered_and_animated(client: httpx.Client) -> None:
    ds = make_instance(rows=8, columns=8, frames=3)
    ds.PixelData = np.arange(192, dtype="<u2").tobytes()
    ds.WindowCenter, ds.WindowWidth = 96, 192
    assert stow(client, [ds]).status_code == 200
    instance_url = urls(ds)[2]
    r = client.get(instance_url + "/frames/1,3/rendered")
    assert r.status_code == 200
    got = parts(r)
    assert len(got) == 2 and all(h["content-type"] == "image/jpeg" for h, _ in got)
    gif = client.get(instance_url + "/rendered", headers={"Accept": "image/gif"})
    assert gif.status_code == 200
    assert Image.open(io.BytesIO(gif.content)).n_frames == 3
    study = client.get(urls(ds)[0] + "/rendered")
    assert study.status_code == 200
    assert len(parts(study)) == 1


def test_thumbnails_at_every_level(client: httpx.Client) -> None:
    study = make_instance(rows=300, columns=200)
    others = [make_instance(study.StudyInstanceUID, study.SeriesInstanceUID) for _ in range(2)]
    assert stow(client, [study, *others]).status_code == 200
    study_url, series_url, instance_url = urls(study)
    for url in (study_url, series_url, instance_url, instance_url + "/frames/1"):
        r = client.get(url + "/thumbnail")
        assert r.status_code == 200, url
        assert r.headers["content-type"] == "image/jpeg"
        assert max(Image.open(io.BytesIO(r.content)).size) <= 128
        again = client.get(url + "/thumbnail", headers={"If-None-Match": r.headers["etag"]})
        assert again.status_code == 304
    r = client.get(instance_url + "/thumbnail")
    assert Image.open(io.BytesIO(r.content)).size == (85, 128)


@pytest.mark.parametrize(
    ("suffix", "params", "status"),
    [
        ("/rendered", {"window": "a,b,LINEAR"}, 400),
        ("/rendered", {"window": "40,0,LINEAR"}, 400),
        ("/rendered", {"window": "40,400,CUBIC"}, 400),
        ("/rendered", {"window": "40,0,SIGMOID"}, 400),
        ("/rendered", {"window": "40,0.5,LINEAR_EXACT"}, 200),
        ("/rendered", {"viewport": "0,0"}, 400),
        ("/rendered", {"viewport": "10,10,500,500,10,10"}, 400),
        ("/rendered", {"quality": "101"}, 400),
        ("/rendered", {"annotation": "everything"}, 400),
        ("/frames/0/rendered", {}, 400),
        ("/frames/9/rendered", {}, 404),
        ("/frames/9/thumbnail", {}, 404),
    ],
)
def test_bad_rendering_requests(
    client: httpx.Client, suffix: str, params: dict[str, str], status: int
) -> None:
    ds = make_instance()
    assert stow(client, [ds]).status_code == 200
    r = client.get(urls(ds)[2] + suffix, params=params)
    assert r.status_code == status
    if status != 200:
        assert r.json()["error"]


def test_rendered_media_type_negotiation(client: httpx.Client) -> None:
    ds = make_instance()
    assert stow(client, [to_bytes(ds)]).status_code == 200
    study_url, _, instance_url = urls(ds)
    assert (
        client.get(instance_url + "/rendered", headers={"Accept": "text/html"}).status_code == 406
    )
    # A study is several images: single-part types are not acceptable (PS3.18 10.4.4).
    assert client.get(study_url + "/rendered", headers={"Accept": "image/png"}).status_code == 406
    r = client.get(
        study_url + "/rendered", headers={"Accept": 'multipart/related; type="image/png"'}
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith('multipart/related; type="image/png"')


def test_modality_lut_voi_lut_and_planar_configuration(client: httpx.Client) -> None:
    from pydicom.pixels.processing import apply_voi_lut
    from pydicom.sequence import Sequence

    lut_ds = make_instance(rows=8, columns=8)
    lut_ds.PixelData = np.arange(64, dtype="<u2").tobytes()
    modality = Dataset()
    modality.LUTDescriptor = [64, 0, 16]
    modality.ModalityLUTType = "HU"
    modality.LUTData = [int(v) for v in (np.arange(64) ** 2)]
    modality["LUTData"].VR = "US"
    lut_ds.ModalityLUTSequence = Sequence([modality])

    voi_ds = make_instance(rows=8, columns=8)
    voi_ds.PixelData = np.arange(64, dtype="<u2").tobytes()
    voi = Dataset()
    voi.LUTDescriptor = [64, 0, 8]
    voi.LUTData = [int(v) for v in (255 - np.arange(64) * 4)]
    voi["LUTData"].VR = "US"
    voi_ds.VOILUTSequence = Sequence([voi])

    planar = make_instance(rows=4, columns=5)
    planar.SamplesPerPixel, planar.PhotometricInterpretation = 3, "RGB"
    planar.PlanarConfiguration = 1
    planar.BitsAllocated, planar.BitsStored, planar.HighBit = 8, 8, 7
    rgb = np.random.default_rng(3).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    planar.PixelData = rgb.transpose(2, 0, 1).tobytes()  # R plane, G plane, B plane

    assert stow(client, [lut_ds, voi_ds, planar]).status_code == 200
    png = {"Accept": "image/png"}
    got = _png(client.get(urls(lut_ds)[2] + "/rendered?window=1000,2000,LINEAR", headers=png))
    assert np.abs(got - _windowed(lut_ds, 1000, 2000, "LINEAR")).max() <= 1
    got = _png(client.get(urls(voi_ds)[2] + "/rendered", headers=png))
    values = apply_modality_lut(voi_ds.pixel_array, voi_ds)
    expected = apply_voi_lut(values, voi_ds, prefer_lut=True).astype(np.float64)
    assert np.abs(got - expected).max() <= 1
    got = _png(client.get(urls(planar)[2] + "/rendered", headers=png))
    assert np.array_equal(got, rgb)
    assert np.array_equal(planar.pixel_array, rgb)
