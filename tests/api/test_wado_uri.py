"""WADO-URI (PS3.18 Chapter 9) with every parameter, on every backend."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from tests.api.test_rendered import _windowed
from tests.factories import bundled_bytes, make_instance, parse

EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_LS = "1.2.840.10008.1.2.4.80"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"


def wado(client: httpx.Client, ds: Dataset, **params: str) -> httpx.Response:
    query = {
        "requestType": "WADO",
        "studyUID": ds.StudyInstanceUID,
        "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID,
        **params,
    }
    return client.get("/wado", params=query)


def _drop_pixels(ds: Dataset) -> None:
    """Make a non-image object of a factory instance (a report, a presentation state)."""
    for keyword in (
        "Rows",
        "Columns",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelData",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "PixelRepresentation",
    ):
        delattr(ds, keyword)


def store(client: httpx.Client, *items: Dataset | bytes) -> None:
    from tests.helpers import stow

    assert stow(client, list(items)).status_code == 200


def test_application_dicom_and_transfer_syntax(client: httpx.Client) -> None:
    data = bundled_bytes("MR_small_RLE.dcm")
    ds = parse(data)
    store(client, data)
    r = wado(client, ds, contentType="application/dicom")
    assert r.status_code == 200
    assert r.headers["content-type"] == f"application/dicom; transfer-syntax={EXPLICIT}"
    got = parse(r.content)
    assert got.file_meta.TransferSyntaxUID == EXPLICIT
    assert np.array_equal(got.pixel_array, ds.pixel_array)
    r = wado(client, ds, contentType="application/dicom", transferSyntax=JPEG_LS)
    assert r.status_code == 200, r.text
    got = parse(r.content)
    assert got.file_meta.TransferSyntaxUID == JPEG_LS
    assert np.array_equal(got.pixel_array, ds.pixel_array)
    # 16-bit data cannot be JPEG Baseline: the default syntax is used (PS3.18 8.2.11).
    r = wado(client, ds, contentType="application/dicom", transferSyntax="1.2.840.10008.1.2.4.50")
    assert parse(r.content).file_meta.TransferSyntaxUID == EXPLICIT
    r = wado(client, ds, contentType="application/dicom", transferSyntax="1.2.840.10008.1.2")
    assert r.status_code == 406


def test_default_content_type_and_non_images(client: httpx.Client) -> None:
    image = make_instance()
    report = make_instance(image.StudyInstanceUID)
    _drop_pixels(report)
    report.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    store(client, image, report)
    r = wado(client, image)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    r = wado(client, report)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/dicom")
    assert wado(client, report, contentType="image/png").status_code == 406
    # A list, best first: the first one the object can be.
    r = wado(client, report, contentType="image/jpeg,application/dicom")
    assert r.headers["content-type"].startswith("application/dicom")


def test_image_parameters(client: httpx.Client) -> None:
    data = bundled_bytes("CT_small.dcm")
    ds = parse(data)
    multi = make_instance(rows=8, columns=8, frames=3)
    multi.PixelData = np.arange(192, dtype="<u2").tobytes()
    multi.WindowCenter, multi.WindowWidth = 96, 192
    store(client, data, multi)
    png = dict(contentType="image/png")
    got = np.asarray(
        Image.open(
            io.BytesIO(wado(client, ds, **png, windowCenter="40", windowWidth="400").content)
        )
    )
    assert np.abs(got - _windowed(ds, 40, 400, "LINEAR")).max() <= 1
    r = wado(client, ds, **png, rows="64")
    assert Image.open(io.BytesIO(r.content)).size == (64, 64)
    r = wado(client, ds, **png, columns="32", rows="100")
    assert Image.open(io.BytesIO(r.content)).size == (32, 32)
    whole = np.asarray(Image.open(io.BytesIO(wado(client, ds, **png).content)))
    region = np.asarray(
        Image.open(io.BytesIO(wado(client, ds, **png, region="0.25,0.5,0.75,1.0").content))
    )
    assert np.array_equal(region, whole[64:128, 32:96])
    frame3 = np.asarray(Image.open(io.BytesIO(wado(client, multi, **png, frameNumber="3").content)))
    assert np.abs(frame3.astype(int) - _windowed(multi, 96, 192, "LINEAR")[2]).max() <= 1
    low = wado(client, ds, contentType="image/jpeg", imageQuality="5").content
    high = wado(client, ds, contentType="image/jpeg", imageQuality="95").content
    assert len(low) < len(high)
    annotated = wado(client, ds, **png, annotation="patient,technique")
    assert np.asarray(Image.open(io.BytesIO(annotated.content))).ndim == 3
    gif = wado(client, multi, contentType="image/gif")
    assert Image.open(io.BytesIO(gif.content)).n_frames == 3


def test_anonymize(client: httpx.Client) -> None:
    ds = make_instance(patient_name="Secret^Person", patient_id="MRN-42")
    store(client, ds)
    r = wado(client, ds, contentType="application/dicom", anonymize="yes")
    assert r.status_code == 200
    got = parse(r.content)
    assert got.PatientIdentityRemoved == "YES"
    assert "Secret" not in str(got.get("PatientName", ""))
    assert got.get("PatientID") != "MRN-42"
    assert got.SOPInstanceUID != ds.SOPInstanceUID
    assert got.file_meta.MediaStorageSOPInstanceUID == got.SOPInstanceUID
    assert b"Secret" not in r.content
    assert np.array_equal(got.pixel_array, ds.pixel_array)


def _presentation_state(image: Dataset) -> Dataset:
    state = make_instance(image.StudyInstanceUID)
    _drop_pixels(state)
    state.SOPClassUID = GSPS
    state.Modality = "PR"
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    voi = Dataset()
    voi.ReferencedImageSequence = Sequence([ref])
    voi.WindowCenter, voi.WindowWidth = 2, 4
    state.SoftcopyVOILUTSequence = Sequence([voi])
    state.PresentationLUTShape = "INVERSE"
    state.ImageHorizontalFlip = "Y"
    state.ImageRotation = 0
    return state


def test_presentation_state(client: httpx.Client) -> None:
    image = make_instance(rows=4, columns=6)
    image.PixelData = (np.arange(24, dtype="<u2") % 6).tobytes()
    state = _presentation_state(image)
    store(client, image, state)
    r = wado(
        client,
        image,
        contentType="image/png",
        presentationUID=state.SOPInstanceUID,
        presentationSeriesUID=state.SeriesInstanceUID,
    )
    assert r.status_code == 200, r.text
    got = np.asarray(Image.open(io.BytesIO(r.content)))
    expected = 255 - _windowed(image, 2, 4, "LINEAR")
    assert np.abs(got.astype(int) - expected[:, ::-1]).max() <= 1
    missing = wado(
        client, image, presentationUID=generate_uid(), presentationSeriesUID=state.SeriesInstanceUID
    )
    assert missing.status_code == 404 and "presentation state" in missing.json()["error"]
    not_a_state = wado(
        client,
        image,
        presentationUID=image.SOPInstanceUID,
        presentationSeriesUID=image.SeriesInstanceUID,
    )
    assert not_a_state.status_code == 400


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"requestType": None}, 400),
        ({"requestType": "WADO-RS"}, 400),
        ({"objectUID": None}, 400),
        ({"studyUID": "1.2.abc"}, 400),
        ({"rows": "0"}, 400),
        ({"columns": "x"}, 400),
        ({"region": "0.5,0.5,0.2,0.9"}, 400),
        ({"windowCenter": "40"}, 400),
        ({"windowCenter": "40", "windowWidth": "0"}, 400),
        ({"frameNumber": "2"}, 400),
        ({"frameNumber": "0"}, 400),
        ({"imageQuality": "0"}, 400),
        ({"annotation": "all"}, 400),
        ({"transferSyntax": EXPLICIT}, 400),
        ({"contentType": "application/dicom", "rows": "10"}, 400),
        ({"contentType": "application/dicom", "anonymize": "no"}, 400),
        ({"presentationUID": "1.2.3"}, 400),
        ({"contentType": "text/html"}, 406),
        ({"objectUID": "1.2.3.4"}, 404),
    ],
)
def test_bad_requests(client: httpx.Client, params: dict[str, str | None], status: int) -> None:
    ds = make_instance()
    store(client, ds)
    query = {
        "requestType": "WADO",
        "studyUID": ds.StudyInstanceUID,
        "seriesUID": ds.SeriesInstanceUID,
        "objectUID": ds.SOPInstanceUID,
    }
    query.update(params)
    r = client.get("/wado", params={k: v for k, v in query.items() if v is not None})
    assert r.status_code == status, r.text
    assert r.json()["error"]
