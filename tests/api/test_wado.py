"""WADO-RS (PS3.18 10.4) through the HTTP API, on every backend."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
from pydicom.encaps import generate_frames
from pydicom.uid import generate_uid

from tests.factories import bundled_bytes, make_instance, parse, to_bytes
from tests.helpers import parts, stow, values

OCTET = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


def urls(ds) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    study = f"/studies/{ds.StudyInstanceUID}"
    series = f"{study}/series/{ds.SeriesInstanceUID}"
    return study, series, f"{series}/instances/{ds.SOPInstanceUID}"


def test_study_series_and_instance_retrieve(client: httpx.Client) -> None:
    study = generate_uid()
    a = [make_instance(study, generate_uid()) for _ in range(2)]
    b = make_instance(study, a[0].SeriesInstanceUID)
    sent = {d.SOPInstanceUID: to_bytes(d) for d in [*a, b]}
    assert stow(client, list(sent.values())).status_code == 200
    study_url, series_url, instance_url = urls(a[0])
    r = client.get(study_url)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith('multipart/related; type="application/dicom"')
    assert int(r.headers["content-length"]) == len(r.content)
    got = parts(r)
    assert len(got) == 3
    for headers, body in got:
        assert headers["content-type"].startswith("application/dicom; transfer-syntax=")
        uid = headers["content-location"].rsplit("/", 1)[1]
        assert body == sent[uid]
    assert len(parts(client.get(series_url))) == 2
    ((_, body),) = parts(
        client.get(instance_url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    )
    assert body == sent[a[0].SOPInstanceUID]


def test_metadata_at_every_level_and_bulk_data_resolves(client: httpx.Client) -> None:
    ds = make_instance(rows=16, columns=16)
    assert stow(client, [ds]).status_code == 200
    study_url, series_url, instance_url = urls(ds)
    for url in (study_url, series_url, instance_url):
        r = client.get(url + "/metadata")
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/dicom+json"
        (meta,) = r.json()
        assert values(meta, "00080018") == [ds.SOPInstanceUID]
        assert values(meta, "00100010") == [{"Alphabetic": "Doe^John"}]
    pixel = meta["7FE00010"]
    assert pixel["vr"] == "OW" and "Value" not in pixel
    # An absolute URI on every backend (PostgreSQL hands the stored JSON back as jsonb text).
    assert pixel["BulkDataURI"].startswith(str(client.base_url).rstrip("/") + "/studies/")
    bulk = client.get(pixel["BulkDataURI"], headers={"Accept": OCTET})
    assert bulk.status_code == 200
    ((_, body),) = parts(bulk)
    assert body == ds.PixelData


def test_bulk_data_inside_sequences_resolves(client: httpx.Client) -> None:
    data = bundled_bytes("waveform_ecg.dcm")
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    (meta,) = client.get(urls(ds)[2] + "/metadata").json()
    items = meta["54000100"]["Value"]
    for i, item in enumerate(items):
        r = client.get(item["54001010"]["BulkDataURI"])
        assert r.status_code == 200
        ((_, body),) = parts(r)
        assert body == ds.WaveformSequence[i].WaveformData


def test_native_multi_frame_frames(client: httpx.Client) -> None:
    ds = make_instance(rows=4, columns=6, frames=7)
    assert stow(client, [ds]).status_code == 200
    frames_url = urls(ds)[2] + "/frames/"
    r = client.get(frames_url + "1,4,7", headers={"Accept": OCTET})
    assert r.status_code == 200
    got = parts(r)
    assert len(got) == 3
    for (headers, body), n in zip(got, (1, 4, 7), strict=True):
        assert headers["content-type"].startswith("application/octet-stream")
        assert np.array_equal(np.frombuffer(body, "<u2"), np.full(24, n, dtype="<u2"))
    assert len(parts(client.get(frames_url + "2"))) == 1


@pytest.mark.parametrize(
    "name", ["rtdose_rle.dcm", "SC_rgb_rle_2frame.dcm", "SC_rgb_jpeg_dcmtk.dcm", "JPEG2000.dcm"]
)
def test_encapsulated_frames_are_the_stored_fragments(client: httpx.Client, name: str) -> None:
    data = bundled_bytes(name)
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    count = int(ds.get("NumberOfFrames") or 1)
    expected = list(generate_frames(ds.PixelData, number_of_frames=count))
    numbers = ",".join(str(n) for n in range(1, count + 1))
    r = client.get(urls(ds)[2] + f"/frames/{numbers}", headers={"Accept": OCTET})
    assert r.status_code == 200
    got = [body for _, body in parts(r)]
    assert got == expected


def test_jpeg_frame_in_its_own_media_type(client: httpx.Client) -> None:
    data = bundled_bytes("SC_rgb_jpeg_dcmtk.dcm")
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    r = client.get(
        urls(ds)[2] + "/frames/1", headers={"Accept": 'multipart/related; type="image/jpeg"'}
    )
    assert r.status_code == 200
    ((headers, body),) = parts(r)
    assert headers["content-type"].startswith("image/jpeg")
    assert body.startswith(b"\xff\xd8")


def test_frame_errors(client: httpx.Client) -> None:
    ds = make_instance(frames=2)
    assert stow(client, [ds]).status_code == 200
    base = urls(ds)[2] + "/frames/"
    assert client.get(base + "3").status_code == 404
    assert client.get(base + "0").status_code == 400
    for bad in ("1,,2", "a", "1-2", "-1"):
        r = client.get(base + bad)
        assert r.status_code == 400, bad
        assert r.json()["error"]
    # PS3.18 8.3.5.1.6: frame numbers without duplicates; a repeated one would make one
    # request ask for many copies of a frame (amplification), here or rendered.
    for repeated in ("1,1", "1,2,1", ",".join(["2"] * 500)):
        for suffix in ("", "/rendered"):
            r = client.get(base + repeated + suffix)
            assert r.status_code == 400, (repeated[:10], suffix)
            assert "more than once" in r.json()["error"]
    assert client.get(base + "2,1").status_code == 200


def test_unknown_uids_are_404(client: httpx.Client) -> None:
    ds = make_instance()
    assert stow(client, [ds]).status_code == 200
    study_url, series_url, instance_url = urls(ds)
    other = generate_uid()
    for url in (
        f"/studies/{other}",
        f"/studies/{other}/metadata",
        f"{study_url}/series/{other}",
        f"{series_url}/instances/{other}/metadata",
        f"{series_url}/instances/{other}/frames/1",
        f"{instance_url}/bulkdata/00091001",
    ):
        r = client.get(url)
        assert r.status_code == 404, url
        assert r.json()["error"]


@pytest.mark.parametrize(
    "path",
    [
        "/studies/..%2F..%2Fetc%2Fpasswd",
        "/studies/1.2.3%27%20OR%201=1/metadata",
        "/studies/1.2/series/abc/instances/1.2/frames/1",
        "/studies/1.2/series/1.2/instances/1.2/bulkdata/..%2F..%2Fx",
    ],
)
def test_hostile_paths_are_4xx(client: httpx.Client, path: str) -> None:
    r = client.get(path)
    assert 400 <= r.status_code < 500, path
    assert r.json()["error"]


def test_unacceptable_media_types_are_406(client: httpx.Client) -> None:
    ds = make_instance()
    assert stow(client, [ds]).status_code == 200
    study_url, _, instance_url = urls(ds)
    r = client.get(study_url, headers={"Accept": "application/pdf"})
    assert r.status_code == 406
    assert "available as" in r.json()["error"]
    # 12-bit samples cannot go into JPEG Baseline: 406 with the reason, not a corrupt object.
    r = client.get(
        study_url,
        headers={
            "Accept": 'multipart/related; type="application/dicom"; '
            "transfer-syntax=1.2.840.10008.1.2.4.50"
        },
    )
    assert r.status_code == 406
    assert "8-bit" in r.json()["error"]
    assert client.get(study_url + "/metadata", headers={"Accept": "text/csv"}).status_code == 406
    r = client.get(instance_url + "/frames/1", headers={"Accept": "text/html"})
    assert r.status_code == 406
    assert r.json()["error"]
    assert (
        client.get(
            study_url,
            headers={"Accept": 'multipart/related; type="application/dicom"; q=0.5, text/html'},
        ).status_code
        == 200
    )


def test_frames_of_a_deflated_object_are_decoded(client: httpx.Client) -> None:
    data = bundled_bytes("image_dfl.dcm")
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    r = client.get(urls(ds)[2] + "/frames/1")
    assert r.status_code == 200
    ((headers, body),) = parts(r)
    assert headers["content-type"].startswith("application/octet-stream")
    assert headers["content-type"].endswith('transfer-syntax="1.2.840.10008.1.2.1"')
    assert body == ds.pixel_array.astype(ds.pixel_array.dtype.newbyteorder("<")).tobytes()


def test_encapsulated_pixel_data_bulk_uri_gives_the_frames(client: httpx.Client) -> None:
    data = bundled_bytes("SC_rgb_rle_2frame.dcm")
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    (meta,) = client.get(urls(ds)[2] + "/metadata").json()
    assert meta["7FE00010"]["vr"] == "OB"
    r = client.get(meta["7FE00010"]["BulkDataURI"], headers={"Accept": OCTET})
    assert r.status_code == 200
    got = [body for _, body in parts(r)]
    assert got == list(generate_frames(ds.PixelData, number_of_frames=2))


def test_metadata_in_xml(client: httpx.Client) -> None:
    from dicomweb_server.dicom.xml_model import native_to_json

    ds = make_instance(rows=16, columns=16)
    assert stow(client, [ds]).status_code == 200
    url = urls(ds)[1] + "/metadata"
    as_json = client.get(url).json()
    r = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom+xml"'})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith('multipart/related; type="application/dicom+xml"')
    assert [native_to_json(body) for _, body in parts(r)] == as_json


def test_the_accept_query_parameter_serves_a_hyperlink(client: httpx.Client) -> None:
    """PS3.18 8.3.3.1: `accept=` for a link, which cannot set Accept (the web application's
    download link): within the Accept header's ranges, without wildcards."""
    import io
    import zipfile

    study = generate_uid()
    assert stow(client, [make_instance(study), make_instance(study)]).status_code == 200
    browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    linked = client.get(
        f"/studies/{study}",
        params={"accept": "application/zip"},
        headers={"Accept": browser_accept},
    )
    assert linked.status_code == 200 and linked.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(linked.content)) as archive:
        assert len(archive.namelist()) == 2
    wildcard = client.get(f"/studies/{study}", params={"accept": "application/*"})
    assert wildcard.status_code == 400 and "wildcards" in wildcard.json()["error"]
    outside = client.get(
        f"/studies/{study}",
        params={"accept": "application/zip"},
        headers={"Accept": 'multipart/related; type="application/dicom"'},
    )
    assert outside.status_code == 406 and "Accept header" in outside.json()["error"]
