"""STOW-RS with `type="application/dicom+json"`: metadata plus bulk data parts (PS3.18 10.5)."""

from __future__ import annotations

import httpx
import numpy as np
import orjson
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from tests.factories import bundled_bytes, make_instance, parse
from tests.helpers import parts, sequence, values

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JSON_TYPE = 'multipart/related; type="application/dicom+json"; boundary=MeTa'


def metadata(ds: Dataset, location: str) -> dict[str, object]:
    """The DICOM JSON of `ds` with Pixel Data given by reference."""

    def bulk(element: object) -> str:
        return location

    return ds.to_json_dict(bulk_data_threshold=1024, bulk_data_element_handler=bulk)


def body(items: list[dict[str, object]], bulk: list[tuple[str, str, bytes]]) -> bytes:
    out = b"--MeTa\r\nContent-Type: application/dicom+json\r\n\r\n" + orjson.dumps(items) + b"\r\n"
    for content_type, location, data in bulk:
        head = f"--MeTa\r\nContent-Type: {content_type}\r\nContent-Location: {location}\r\n"
        out += head.encode() + b"\r\n" + data + b"\r\n"
    return out + b"--MeTa--\r\n"


def retrieve(client: httpx.Client, ds: Dataset) -> Dataset:
    url = (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
        f"{ds.SOPInstanceUID}"
    )
    ((_, data),) = parts(client.get(url))
    return parse(data)


def test_native_pixel_data_in_a_bulk_part(client: httpx.Client) -> None:
    ds = make_instance(rows=32, columns=32, frames=2)
    location = "http://uploader.example/bulk/pixels-1"
    r = client.post(
        "/studies",
        headers={"Content-Type": JSON_TYPE},
        content=body(
            [metadata(ds, location)], [("application/octet-stream", location, ds.PixelData)]
        ),
    )
    assert r.status_code == 200, r.text
    (item,) = sequence(r, "00081199")
    assert values(item, "00081155") == [ds.SOPInstanceUID]
    back = retrieve(client, ds)
    assert back.PatientName == ds.PatientName and back.NumberOfFrames == 2
    assert np.array_equal(back.pixel_array, ds.pixel_array)


def test_compressed_frame_in_its_own_media_type(client: httpx.Client) -> None:
    source = parse(bundled_bytes("SC_rgb_jpeg_dcmtk.dcm"))
    (frame,) = list(generate_frames(source.PixelData, number_of_frames=1))
    meta = metadata(source, "/bulk/jpeg")
    part_type = f"image/jpeg; transfer-syntax={JPEG_BASELINE}"
    r = client.post(
        "/studies",
        headers={"Content-Type": JSON_TYPE},
        content=body([meta], [(part_type, "/bulk/jpeg", frame)]),
    )
    assert r.status_code == 200, r.text
    back = retrieve(client, source)
    assert back.file_meta.TransferSyntaxUID == JPEG_BASELINE
    url = (
        f"/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}/instances/"
        f"{source.SOPInstanceUID}/frames/1"
    )
    ((_, got),) = parts(client.get(url, headers={"Accept": 'multipart/related; type="image/jpeg"'}))
    assert got == frame


def test_image_jpeg_without_a_parameter_is_jpeg_lossless_sv1(client: httpx.Client) -> None:
    """PS3.18 Table 8.7.3-5: the default (D) syntax of image/jpeg is 1.2.840.10008.1.2.4.70."""
    source = parse(bundled_bytes("SC_rgb_jpeg_gdcm.dcm"))
    assert source.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    (frame,) = list(generate_frames(source.PixelData, number_of_frames=1))
    r = client.post(
        "/studies",
        headers={"Content-Type": JSON_TYPE},
        content=body([metadata(source, "/bulk/j")], [("image/jpeg", "/bulk/j", frame)]),
    )
    assert r.status_code == 200, r.text
    url = (
        f"/studies/{source.StudyInstanceUID}/series/{source.SeriesInstanceUID}/instances/"
        f"{source.SOPInstanceUID}"
    )
    as_stored = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    ((_, data),) = parts(client.get(url, headers={"Accept": as_stored}))
    back = parse(data)
    assert back.file_meta.TransferSyntaxUID == JPEG_LOSSLESS_SV1
    assert np.array_equal(back.pixel_array, source.pixel_array)


def test_a_jpeg_frame_that_contradicts_its_syntax_is_refused(client: httpx.Client) -> None:
    """A baseline frame sent as plain image/jpeg would be stored as lossless and be
    unreadable: it fails with 0xC122 and the reason says to name its syntax."""
    source = parse(bundled_bytes("SC_rgb_jpeg_dcmtk.dcm"))
    (frame,) = list(generate_frames(source.PixelData, number_of_frames=1))
    r = client.post(
        "/studies",
        headers={"Content-Type": JSON_TYPE},
        content=body([metadata(source, "/bulk/j")], [("image/jpeg", "/bulk/j", frame)]),
    )
    assert r.status_code == 409, r.text
    (failed,) = sequence(r, "00081198")
    assert values(failed, "00081197") == [0xC122]
    assert "transfer-syntax" in r.text
    assert client.get(f"/studies/{source.StudyInstanceUID}/series").status_code == 404


def test_relative_and_absolute_references_meet(client: httpx.Client) -> None:
    ds = make_instance(rows=64, columns=64)
    r = client.post(
        "/studies",
        headers={"Content-Type": JSON_TYPE},
        content=body(
            [metadata(ds, "https://uploader.example/parts/7")],
            [("application/octet-stream", "/parts/7", ds.PixelData)],
        ),
    )
    assert r.status_code == 200, r.text


def test_missing_bulk_part_and_bad_json_fail_with_reasons(client: httpx.Client) -> None:
    ds = make_instance(rows=64, columns=64)
    good = make_instance(rows=64, columns=64)
    data = body(
        [metadata(ds, "/nowhere"), metadata(good, "/pixels")],
        [("application/octet-stream", "/pixels", good.PixelData)],
    )
    r = client.post("/studies", headers={"Content-Type": JSON_TYPE}, content=data)
    assert r.status_code == 202
    (failed,) = sequence(r, "00081198")
    assert values(failed, "00081155") == [ds.SOPInstanceUID]
    assert "Content-Location '/nowhere'" in values(failed, "00000902")[0]
    broken = b"--MeTa\r\nContent-Type: application/dicom+json\r\n\r\n{not json\r\n--MeTa--\r\n"
    r = client.post("/studies", headers={"Content-Type": JSON_TYPE}, content=broken)
    assert r.status_code == 409
    assert "not valid JSON" in values(sequence(r, "00081198")[0], "00000902")[0]


def test_metadata_without_a_required_uid(client: httpx.Client) -> None:
    ds = make_instance(rows=64, columns=64)
    meta = metadata(ds, "/p")
    del meta["00080018"]
    r = client.post(
        "/studies",
        headers={"Content-Type": JSON_TYPE},
        content=body([meta], [("application/octet-stream", "/p", ds.PixelData)]),
    )
    assert r.status_code == 409
    assert (
        "SOP Instance UID (0008,0018) is missing"
        in values(sequence(r, "00081198")[0], "00000902")[0]
    )


XML_TYPE = 'multipart/related; type="application/dicom+xml"; boundary=MeTa'


def native_xml(meta: dict[str, object]) -> bytes:
    """PS3.19 Native DICOM Model of a DICOM JSON object (written here for the tests)."""
    from xml.sax.saxutils import escape, quoteattr

    def dataset(obj: dict[str, object]) -> str:
        out = []
        for tag, element in obj.items():
            assert isinstance(element, dict)
            vr = element["vr"]
            inner = ""
            if "BulkDataURI" in element:
                inner = f"<BulkData uri={quoteattr(element['BulkDataURI'])}/>"
            elif "InlineBinary" in element:
                inner = f"<InlineBinary>{element['InlineBinary']}</InlineBinary>"
            for n, value in enumerate(element.get("Value", []), start=1):
                if vr == "SQ":
                    inner += f'<Item number="{n}">{dataset(value)}</Item>'
                elif vr == "PN":
                    groups = ""
                    for group, text in value.items():
                        names = "".join(
                            f"<{part}>{escape(piece)}</{part}>"
                            for part, piece in zip(
                                (
                                    "FamilyName",
                                    "GivenName",
                                    "MiddleName",
                                    "NamePrefix",
                                    "NameSuffix",
                                ),
                                text.split("^"),
                                strict=False,
                            )
                        )
                        groups += f"<{group}>{names}</{group}>"
                    inner += f'<PersonName number="{n}">{groups}</PersonName>'
                else:
                    text = "" if value is None else escape(str(value))
                    inner += f'<Value number="{n}">{text}</Value>'
            out.append(f'<DicomAttribute tag="{tag}" vr="{vr}">{inner}</DicomAttribute>')
        return "".join(out)

    return (
        '<?xml version="1.0" encoding="UTF-8"?><NativeDicomModel xml:space="preserve">'
        + dataset(meta)
        + "</NativeDicomModel>"
    ).encode()


def xml_body(documents: list[bytes], bulk: list[tuple[str, str, bytes]]) -> bytes:
    out = b""
    for document in documents:
        out += b"--MeTa\r\nContent-Type: application/dicom+xml\r\n\r\n" + document + b"\r\n"
    for content_type, location, data in bulk:
        head = f"--MeTa\r\nContent-Type: {content_type}\r\nContent-Location: {location}\r\n"
        out += head.encode() + b"\r\n" + data + b"\r\n"
    return out + b"--MeTa--\r\n"


def test_xml_metadata_with_bulk_data(client: httpx.Client) -> None:
    ds = make_instance(rows=64, columns=64, patient_name="Yamada^Tarou")
    ds.ReferencedImageSequence = [Dataset()]
    ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID = "1.2.3.4"
    ds.SliceThickness = "2.5"
    document = native_xml(metadata(ds, "/xml/pixels"))
    r = client.post(
        "/studies",
        headers={"Content-Type": XML_TYPE},
        content=xml_body([document], [("application/octet-stream", "/xml/pixels", ds.PixelData)]),
    )
    assert r.status_code == 200, r.text
    back = retrieve(client, ds)
    assert str(back.PatientName) == "Yamada^Tarou"
    assert back.ReferencedImageSequence[0].ReferencedSOPInstanceUID == "1.2.3.4"
    assert float(back.SliceThickness) == 2.5
    assert np.array_equal(back.pixel_array, ds.pixel_array)


def test_hostile_xml_is_refused(client: httpx.Client) -> None:
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        b"<NativeDicomModel>&lol2;</NativeDicomModel>"
    )
    external = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<NativeDicomModel><DicomAttribute tag="00100010" vr="PN"><Value number="1">'
        b"&xxe;</Value></DicomAttribute></NativeDicomModel>"
    )
    for document in (laughs, external, b"<NativeDicomModel><unclosed>"):
        r = client.post(
            "/studies", headers={"Content-Type": XML_TYPE}, content=xml_body([document], [])
        )
        assert r.status_code == 409, r.text
        (failed,) = sequence(r, "00081198")
        assert values(failed, "00081197") == [0xC000]
    assert client.get("/studies").json() == []
