"""WADO-RS negotiation and transport: transcoding, single part, zip, gzip, caching, ranges."""

from __future__ import annotations

import gzip
import io
import zipfile

import httpx
import numpy as np
from pydicom.encaps import generate_frames

from tests.api.test_wado import urls
from tests.factories import bundled_bytes, make_instance, parse, to_bytes
from tests.helpers import parts, stow

RELATED = 'multipart/related; type="application/dicom"'
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG_LS = "1.2.840.10008.1.2.4.80"
RLE = "1.2.840.10008.1.2.5"


def test_instances_default_to_explicit_vr_le_and_transcode_on_request(
    client: httpx.Client,
) -> None:
    data = bundled_bytes("MR_small_RLE.dcm")
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    url = urls(ds)[2]
    ((headers, body),) = parts(client.get(url, headers={"Accept": RELATED}))
    assert EXPLICIT in headers["content-type"]
    got = parse(body)
    assert got.file_meta.TransferSyntaxUID == EXPLICIT
    assert np.array_equal(got.pixel_array, ds.pixel_array)
    ((headers, body),) = parts(
        client.get(url, headers={"Accept": f"{RELATED}; transfer-syntax={JPEG_LS}"})
    )
    assert parse(body).file_meta.TransferSyntaxUID == JPEG_LS
    assert np.array_equal(parse(body).pixel_array, ds.pixel_array)
    ((_, body),) = parts(client.get(url, headers={"Accept": f"{RELATED}; transfer-syntax=*"}))
    assert body == data
    # Implicit VR Little Endian is never sent (PS3.18 8.7.3): 406 with the reason.
    r = client.get(url, headers={"Accept": f"{RELATED}; transfer-syntax=1.2.840.10008.1.2"})
    assert r.status_code == 406
    assert "cannot be sent" in r.json()["error"]


def test_lossy_instances_stay_as_stored_by_default(client: httpx.Client) -> None:
    data = bundled_bytes("SC_rgb_jpeg_dcmtk.dcm")
    assert stow(client, [data]).status_code == 200
    ((_, body),) = parts(client.get(urls(parse(data))[2], headers={"Accept": RELATED}))
    assert body == data


def test_single_part_and_zip(client: httpx.Client) -> None:
    study = make_instance()
    other = make_instance(study.StudyInstanceUID)
    assert stow(client, [study, other]).status_code == 200
    study_url, _, instance_url = urls(study)
    r = client.get(instance_url, headers={"Accept": "application/dicom"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/dicom; transfer-syntax=")
    assert r.content == to_bytes(study)
    # Single part for a study is not acceptable (PS3.18 10.4.4).
    assert client.get(study_url, headers={"Accept": "application/dicom"}).status_code == 406
    r = client.get(study_url, headers={"Accept": "application/zip"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.testzip() is None
    members = {n.rsplit("/", 1)[1]: archive.read(n) for n in archive.namelist()}
    assert members == {f"{d.SOPInstanceUID}.dcm": to_bytes(d) for d in (study, other)}


def test_frames_transcoded_and_in_their_own_media_types(client: httpx.Client) -> None:
    data = bundled_bytes("SC_rgb_rle_2frame.dcm")
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    frames_url = urls(ds)[2] + "/frames/1,2"
    # Default: decoded to native (lossless source).
    got = parts(client.get(frames_url))
    assert [body for _, body in got] == [f.tobytes() for f in ds.pixel_array]
    # Own media type: the stored fragments.
    got = parts(
        client.get(frames_url, headers={"Accept": 'multipart/related; type="image/dicom-rle"'})
    )
    assert [b for _, b in got] == list(generate_frames(ds.PixelData, number_of_frames=2))
    # Another compressed type: transcoded to its default syntax (image/jls: JPEG-LS lossless).
    got = parts(client.get(frames_url, headers={"Accept": 'multipart/related; type="image/jls"'}))
    assert all(JPEG_LS in h["content-type"] for h, _ in got)
    import imagecodecs

    assert [imagecodecs.jpegls_decode(b).tobytes() for _, b in got] == [
        f.tobytes() for f in ds.pixel_array
    ]
    htj2k = 'multipart/related; type="image/jphc"'
    got = parts(client.get(frames_url, headers={"Accept": htj2k}))
    # Without a colour transform the decoder gives the components as planes.
    decoded = [np.moveaxis(imagecodecs.htj2k_decode(b), 0, -1) for _, b in got]
    assert [d.tobytes() for d in decoded] == [f.tobytes() for f in ds.pixel_array]
    # One frame may be asked for as a single part.
    r = client.get(urls(ds)[2] + "/frames/2", headers={"Accept": "image/jls"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/jls")


def test_metadata_gzip_when_accepted(client: httpx.Client) -> None:
    ds = make_instance()
    more = [make_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID) for _ in range(4)]
    assert stow(client, [ds, *more]).status_code == 200
    url = urls(ds)[0] + "/metadata"
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    raw = client.get(url, headers={"Accept-Encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.json() == plain.json()
    # The DICOM object itself is never content-coded.
    r = client.get(urls(ds)[2], headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers
    assert len(gzip.compress(plain.content)) < len(plain.content)


def test_etag_and_304(client: httpx.Client) -> None:
    ds = make_instance(frames=2)
    assert stow(client, [ds]).status_code == 200
    instance_url = urls(ds)[2]
    for url in (instance_url, instance_url + "/frames/1", instance_url + "/bulkdata/7FE00010"):
        r = client.get(url)
        assert r.status_code == 200
        tag = r.headers["etag"]
        assert r.headers["cache-control"].startswith("private")
        again = client.get(url, headers={"If-None-Match": tag})
        assert again.status_code == 304, url
        assert again.content == b""
        assert client.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    study_url = urls(ds)[0]
    tag = client.get(study_url).headers["etag"]
    assert client.get(study_url, headers={"If-None-Match": tag}).status_code == 304
    assert stow(client, [make_instance(ds.StudyInstanceUID)]).status_code == 200
    assert client.get(study_url, headers={"If-None-Match": tag}).status_code == 200


def test_bulk_data_range_requests(client: httpx.Client) -> None:
    ds = make_instance(rows=16, columns=16, frames=3)
    assert stow(client, [ds]).status_code == 200
    url = urls(ds)[2] + "/bulkdata/7FE00010"
    octets = {"Accept": "application/octet-stream"}
    whole = client.get(url, headers=octets)
    assert whole.status_code == 200
    assert whole.content == ds.PixelData
    assert whole.headers["accept-ranges"] == "bytes"
    r = client.get(url, headers={**octets, "Range": "bytes=100-611"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes 100-611/{len(ds.PixelData)}"
    assert r.content == ds.PixelData[100:612]
    r = client.get(url, headers={**octets, "Range": "bytes=-10"})
    assert r.content == ds.PixelData[-10:]
    r = client.get(url, headers={**octets, "Range": f"bytes={len(ds.PixelData)}-"})
    assert r.status_code == 416
    # In multipart, each part names its BulkDataURI.
    ((headers, _),) = parts(client.get(url))
    assert headers["content-location"].endswith("/bulkdata/7FE00010")


def test_malformed_accept_and_impossible_syntax(client: httpx.Client) -> None:
    ds = make_instance(frames=2)
    assert stow(client, [ds]).status_code == 200
    study_url, _, instance_url = urls(ds)
    for url in (study_url, instance_url + "/frames/1", instance_url + "/rendered"):
        r = client.get(url, headers={"Accept": "multipart/related; type="})
        assert r.status_code == 400, url
        assert "Accept" in r.json()["error"]
    r = client.get(study_url, headers={"Accept": f"{RELATED}; transfer-syntax=1.2.3.4"})
    assert r.status_code == 406
    assert "1.2.3.4" in r.json()["error"]
    frames = client.get(
        instance_url + "/frames/1,2", headers={"Accept": "application/octet-stream"}
    )
    assert frames.status_code == 406  # single part for two frames (PS3.18 10.4.4)


def _bulk_uris(node: object) -> list[str]:
    if isinstance(node, dict):
        found = [node["BulkDataURI"]] if "BulkDataURI" in node else []
        return found + [u for v in node.values() for u in _bulk_uris(v)]
    if isinstance(node, list):
        return [u for v in node for u in _bulk_uris(v)]
    return []


def test_every_bulk_data_uri_of_every_bundled_file_resolves(client: httpx.Client) -> None:
    from tests.factories import BUNDLED

    items = [bundled_bytes(name) for name in sorted(BUNDLED)]
    for data in items:
        assert stow(client, [data]).status_code in (200, 202)
    uris = _bulk_uris(client.get("/instances", params={"includefield": "all"}).json())
    for data in items:
        ds = parse(data)
        meta = client.get(urls(ds)[2] + "/metadata").json()
        uris += _bulk_uris(meta)
    assert len(uris) >= len(items)
    for uri in uris:
        r = client.get(uri)
        assert r.status_code == 200, (uri, r.text)
        assert all(body for _, body in parts(r)), uri


def test_pixel_data_bulk_data_transcoded(client: httpx.Client) -> None:
    data = bundled_bytes("SC_rgb_rle_2frame.dcm")
    ds = parse(data)
    assert stow(client, [data]).status_code == 200
    (meta,) = client.get(urls(ds)[2] + "/metadata").json()
    uri = meta["7FE00010"]["BulkDataURI"]
    # Default: decoded, one native part per frame; PS3.18 10.4.3.3.5: each part's
    # Content-Location is the BulkDataURI the metadata handed out.
    got = parts(client.get(uri))
    assert [body for _, body in got] == [f.tobytes() for f in ds.pixel_array]
    assert [h["content-location"] for h, _ in got] == [uri, uri]
    # As stored, one RLE frame per part, located likewise.
    as_stored = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
    got = parts(client.get(uri, headers={"Accept": as_stored}))
    assert [h["content-location"] for h, _ in got] == [uri, uri]
    # Another compressed syntax on request.
    got = parts(client.get(uri, headers={"Accept": 'multipart/related; type="image/jls"'}))
    assert all(JPEG_LS in h["content-type"] for h, _ in got) and len(got) == 2
    assert [h["content-location"] for h, _ in got] == [uri, uri]
    # Frames retrieved as frames name their frame.
    got = parts(client.get(urls(ds)[2] + "/frames/2,1"))
    assert [h["content-location"].rsplit("/", 2)[1:] for h, _ in got] == [
        ["frames", "2"],
        ["frames", "1"],
    ]


def test_single_part_for_several_transcoded_frames_is_not_acceptable(
    client: httpx.Client,
) -> None:
    ds = make_instance(rows=8, columns=8, frames=3)
    assert stow(client, [ds]).status_code == 200
    bulk = urls(ds)[2] + "/bulkdata/7FE00010"
    # As stored, native Pixel Data is one value: single part is fine.
    r = client.get(bulk, headers={"Accept": "application/octet-stream"})
    assert r.status_code == 200 and r.content == ds.PixelData
    # Transcoded, it is three frames: single part cannot hold them; multipart can.
    assert client.get(bulk, headers={"Accept": "image/jls"}).status_code == 406
    r = client.get(bulk, headers={"Accept": 'image/jls, multipart/related; type="image/jls"'})
    assert r.status_code == 200 and len(parts(r)) == 3


def test_metadata_revalidates(client: httpx.Client) -> None:
    ds = make_instance()
    assert stow(client, [ds]).status_code == 200
    url = urls(ds)[0] + "/metadata"
    r = client.get(url)
    assert r.headers["cache-control"] == "private, no-cache"
    assert client.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    xml = client.get(url, headers={"Accept": 'multipart/related; type="application/dicom+xml"'})
    assert xml.headers["etag"] != r.headers["etag"]
    assert stow(client, [make_instance(ds.StudyInstanceUID)]).status_code == 200
    assert client.get(url, headers={"If-None-Match": r.headers["etag"]}).status_code == 200
