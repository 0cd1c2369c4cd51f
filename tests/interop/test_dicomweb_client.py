"""The `dicomweb-client` package, a real DICOMweb client, against the server on a real socket."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, make_settings, private_server
from tests.factories import bare_bytes, bundled_bytes, make_instance, parse
from tests.oidc_provider import oidc_provider


@pytest.fixture(params=["open", "api-key", "oidc"])
def dicomweb(
    request: pytest.FixtureRequest, archive: RunningServer, tmp_path: Path
) -> Iterator[DICOMwebClient]:
    """The client on the shared server (DICOMWEB_AUTH=none), and, once, on a server of its
    own with access control on (oidc,api-key), sending an API key or an OIDC token of a
    local provider as its bearer token: the same suite, auth on (issue 14)."""
    if request.param == "open":
        yield DICOMwebClient(url=archive.base_url)
        return
    if archive.backend != "sqlite":
        pytest.skip("with auth on, once: access control does not depend on the backend")
    with oidc_provider() as provider:
        settings = make_settings(
            tmp_path, auth="oidc,api-key", oidc_issuer=provider.issuer, audit="table"
        )
        with private_server(settings) as (client, container):
            if request.param == "api-key":
                credential = container.access.create_key("client", {"read", "write"}).secret
            else:
                credential = provider.token(scope="openid read write")
            yield DICOMwebClient(
                url=str(client.base_url).rstrip("/"),
                headers={"Authorization": f"Bearer {credential}"},
            )
            # Every request the suite made was let in: no failed authentication, and every
            # transaction was the client's (audited under its principal).
            assert container.audit.flush()
            with container.engine.connect() as conn:
                rows = conn.exec_driver_sql("SELECT event_id, requestor FROM audit_events").all()
            assert rows and not [r for r in rows if r[0] == "110114"]
            assert {r[1] for r in rows if r[0] in ("110104", "110112")} == {
                "oidc:alice" if request.param == "oidc" else f"key:{credential.split('_')[1]}"
            }


def test_store_search_retrieve_round_trip(dicomweb: DICOMwebClient) -> None:
    study = generate_uid()
    series = generate_uid()
    sent = [
        make_instance(study, series, patient_id="INTEROP", frames=3, rows=4, columns=4)
        for _ in range(2)
    ]
    bundled = parse(bundled_bytes("SC_rgb_rle_2frame.dcm"))
    response = dicomweb.store_instances([*sent, bundled])
    assert len(response.ReferencedSOPSequence) == 3
    assert "FailedSOPSequence" not in response

    # Search at three levels.
    studies = dicomweb.search_for_studies(search_filters={"PatientID": "INTEROP"})
    assert [s["0020000D"]["Value"][0] for s in studies] == [study]
    found_series = dicomweb.search_for_series(study, search_filters={"Modality": "CT"})
    assert [s["0020000E"]["Value"][0] for s in found_series] == [series]
    found = dicomweb.search_for_instances(study, series, fields=["ImageType"], limit=1)
    assert len(found) == 1 and found[0]["00080008"]["Value"][0] == "ORIGINAL"
    assert len(dicomweb.search_for_instances(study, series, offset=1)) == 1

    # Retrieve instance: a valid PS3.10 object. dicomweb-client sends bare data sets (no
    # preamble, no File Meta); the server completes the file and keeps the data set bytes.
    first = sent[0]
    got = dicomweb.retrieve_instance(study, series, first.SOPInstanceUID)
    assert got.SOPInstanceUID == first.SOPInstanceUID
    assert np.array_equal(got.pixel_array, first.pixel_array)
    url = f"{dicomweb.base_url}/studies/{study}/series/{series}/instances/{first.SOPInstanceUID}"
    response = dicomweb._http_get(
        url, headers={"Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}
    )
    (raw,) = list(dicomweb._decode_multipart_message(response, stream=False))
    assert raw[128:132] == b"DICM"
    assert bytes(raw).endswith(bare_bytes(first))

    # Metadata at instance and series level, and bulk data through its BulkDataURI.
    meta = dicomweb.retrieve_instance_metadata(study, series, first.SOPInstanceUID)
    assert meta["00100020"]["Value"] == ["INTEROP"]
    (pixels,) = dicomweb.retrieve_bulkdata(meta["7FE00010"]["BulkDataURI"])
    assert pixels == first.PixelData
    assert len(dicomweb.retrieve_series_metadata(study, series)) == 2

    # Frames, native and encapsulated.
    frames = dicomweb.retrieve_instance_frames(study, series, first.SOPInstanceUID, [1, 3])
    assert [np.frombuffer(f, "<u2")[0] for f in frames] == [1, 3]
    rle = dicomweb.retrieve_instance_frames(
        bundled.StudyInstanceUID,
        bundled.SeriesInstanceUID,
        bundled.SOPInstanceUID,
        [2],
        media_types=(("application/octet-stream", "*"),),
    )
    assert rle == list(generate_frames(bundled.PixelData, number_of_frames=2))[1:]


def test_searches_as_dicomweb_client_sends_them(dicomweb: DICOMwebClient) -> None:
    """search_filters, fuzzymatching, fields, limit and offset, as the client encodes them."""
    names = ["Doe^John", "Doe^Jane", "Roe^John"]
    sent = []
    for i, name in enumerate(names):
        ds = make_instance(patient_name=name, patient_id="FIND", study_date=f"2023010{i + 1}")
        ds.InstitutionName = f"General {i}"
        ds.ImageType = ["ORIGINAL", "PRIMARY"] if i else ["DERIVED", "SECONDARY"]
        sent.append(ds)
    dicomweb.store_instances(sent)

    def names_of(found: list[dict]) -> set[str]:
        return {f["00100010"]["Value"][0]["Alphabetic"] for f in found}

    found = dicomweb.search_for_studies(search_filters={"PatientName": "john"}, fuzzymatching=True)
    assert names_of(found) == {"Doe^John", "Roe^John"}
    assert names_of(dicomweb.search_for_studies(search_filters={"PatientName": "doe*"})) == {
        "Doe^John",
        "Doe^Jane",
    }
    ranged = dicomweb.search_for_studies(
        search_filters={"PatientID": "FIND", "StudyDate": "20230102-"}
    )
    assert names_of(ranged) == {"Doe^Jane", "Roe^John"}
    series = dicomweb.search_for_series(
        search_filters={"InstitutionName": "General 1"}, fields=["InstitutionName"]
    )
    assert [s["00080080"]["Value"] for s in series] == [["General 1"]]
    derived = dicomweb.search_for_instances(search_filters={"ImageType": "DERIVED"})
    assert [d["00080018"]["Value"][0] for d in derived] == [sent[0].SOPInstanceUID]
    pages = [
        dicomweb.search_for_studies(search_filters={"PatientID": "FIND"}, limit=2, offset=o)
        for o in (0, 2)
    ]
    assert [len(p) for p in pages] == [2, 1]
    assert names_of(pages[0] + pages[1]) == set(names)


def test_retrieve_transcoded_rendered_and_thumbnails(dicomweb: DICOMwebClient) -> None:
    """dicomweb-client's retrieve calls with media types, rendered images and thumbnails."""
    import io

    from PIL import Image

    rle = parse(bundled_bytes("MR_small_RLE.dcm"))
    colour = parse(bundled_bytes("SC_rgb_rle_2frame.dcm"))
    dicomweb.store_instances([rle, colour])
    study, series, uid = rle.StudyInstanceUID, rle.SeriesInstanceUID, rle.SOPInstanceUID

    # Instances: the client's default accepts any syntax (the stored one); others on request.
    got = dicomweb.retrieve_instance(study, series, uid)
    assert got.file_meta.TransferSyntaxUID == rle.file_meta.TransferSyntaxUID
    got = dicomweb.retrieve_instance(
        study, series, uid, media_types=(("application/dicom", "1.2.840.10008.1.2.1"),)
    )
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert np.array_equal(got.pixel_array, rle.pixel_array)
    jpeg_ls = "1.2.840.10008.1.2.4.80"
    got = dicomweb.retrieve_instance(
        study, series, uid, media_types=(("application/dicom", jpeg_ls),)
    )
    assert got.file_meta.TransferSyntaxUID == jpeg_ls
    assert np.array_equal(got.pixel_array, rle.pixel_array)
    (whole,) = dicomweb.retrieve_series(study, series, media_types=(("application/dicom", "*"),))
    assert whole.file_meta.TransferSyntaxUID == rle.file_meta.TransferSyntaxUID

    # Frames in compressed media types.
    frames = dicomweb.retrieve_instance_frames(
        colour.StudyInstanceUID,
        colour.SeriesInstanceUID,
        colour.SOPInstanceUID,
        [1, 2],
        media_types=(("image/jpeg", "1.2.840.10008.1.2.4.50"),),
    )
    decoded = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in frames]
    for frame, expected in zip(decoded, colour.pixel_array, strict=True):
        assert np.abs(frame.astype(int) - expected.astype(int)).mean() < 8
    (native,) = dicomweb.retrieve_instance_frames(
        colour.StudyInstanceUID, colour.SeriesInstanceUID, colour.SOPInstanceUID, [2]
    )
    assert native == colour.pixel_array[1].tobytes()

    # Rendered instance and frames.
    image = dicomweb.retrieve_instance_rendered(
        study, series, uid, media_types=("image/png",), params={"window": "600,1600,linear"}
    )
    assert Image.open(io.BytesIO(image)).size == (rle.Columns, rle.Rows)
    rendered = dicomweb.retrieve_instance_frames_rendered(
        colour.StudyInstanceUID,
        colour.SeriesInstanceUID,
        colour.SOPInstanceUID,
        [2],
        media_types=("image/jpeg",),
        params={"viewport": "50,50"},
    )
    assert Image.open(io.BytesIO(rendered)).size == (50, 50)

    # Thumbnails (the client has no call of its own for them: its HTTP session is used).
    base = dicomweb.base_url
    for url in (
        f"{base}/studies/{study}/thumbnail",
        f"{base}/studies/{study}/series/{series}/thumbnail",
        f"{base}/studies/{study}/series/{series}/instances/{uid}/thumbnail",
    ):
        response = dicomweb._http_get(url, headers={"Accept": "image/jpeg"})
        assert Image.open(io.BytesIO(response.content)).format == "JPEG"
