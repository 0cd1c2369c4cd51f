"""No 500 from any input: each class the adversarial probe found, on every backend pair.

Numbers (one parser: ASCII digits, bounded length and range), recursion (one depth limit for
request paths, sequences in objects and in JSON), empty lists, geometry, parser limits,
values against their VR, and identifiers. Each answer is a 4xx with the reason.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from tests.factories import make_instance, to_bytes
from tests.helpers import STOW_TYPE, multipart_body, parts, sequence, stow

JSON_TYPE = 'multipart/related; type="application/dicom+json"; boundary=MeTa'


@pytest.fixture
def stored(client: httpx.Client) -> Dataset:
    ds = make_instance(rows=16, columns=16, frames=3)
    assert stow(client, [ds]).status_code == 200
    return ds


def _instance_url(ds: Dataset) -> str:
    return (
        f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
        f"/instances/{ds.SOPInstanceUID}"
    )


def _bad_request(r: httpx.Response) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text


# -- numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frames",
    [
        "9" * 5000,
        "1," + "9" * 5000,
        "\u00b9",
        "\u0661",
        "1,\u00b2",
        "+1",
        "0x1",
        "1_000",
        " 1",
        "1e3",
    ],
)
def test_frame_lists_of_any_number(client: httpx.Client, stored: Dataset, frames: str) -> None:
    for tail in ("", "/rendered", "/thumbnail"):
        r = client.get(f"{_instance_url(stored)}/frames/{frames}{tail}", headers={"Accept": "*/*"})
        _bad_request(r)


@pytest.mark.parametrize("value", ["\u00b3", "9" * 5000, "\u0661\u0660", "-1", "1.0", "+5", " 5"])
@pytest.mark.parametrize("name", ["limit", "offset"])
def test_paging_numbers(client: httpx.Client, stored: Dataset, name: str, value: str) -> None:
    _bad_request(client.get("/studies", params={name: value}))


@pytest.mark.parametrize(
    "params",
    [
        {"frameNumber": "\u00b9"},
        {"frameNumber": "9" * 5000},
        {"rows": "\u00b2"},
        {"columns": "9" * 5000},
        {"imageQuality": "\u0669\u0660"},
        {"windowCenter": "1" * 5000, "windowWidth": "10"},
        {"windowCenter": "\u0661", "windowWidth": "10"},
        {"windowCenter": "nan", "windowWidth": "10"},
        {"windowCenter": "40", "windowWidth": "inf"},
        {"region": "0,0,1,\u0661"},
    ],
)
def test_wado_uri_numbers(client: httpx.Client, stored: Dataset, params: dict[str, str]) -> None:
    query = {
        "requestType": "WADO",
        "studyUID": stored.StudyInstanceUID,
        "seriesUID": stored.SeriesInstanceUID,
        "objectUID": stored.SOPInstanceUID,
        "contentType": "image/jpeg",
        **params,
    }
    _bad_request(client.get("/wado", params=query))


@pytest.mark.parametrize(
    "params",
    [
        {"viewport": "\u0661\u0666,16"},
        {"viewport": "9" * 5000 + ",16"},
        {"quality": "\u0669"},
        {"window": "\u0661,2,LINEAR"},
        {"window": "40," + "9" * 400 + ",LINEAR"},
    ],
)
def test_rendered_numbers(client: httpx.Client, stored: Dataset, params: dict[str, str]) -> None:
    _bad_request(client.get(f"{_instance_url(stored)}/rendered", params=params))


def test_range_headers_of_any_number(client: httpx.Client, stored: Dataset) -> None:
    url = f"{_instance_url(stored)}/bulkdata/7FE00010"
    for value in ("bytes=" + "9" * 5000 + "-", "bytes=\u00b9-\u00b2", "bytes=-" + "9" * 5000):
        # Header values travel as Latin-1 bytes.
        headers = {"Range": value.encode("latin-1"), "Accept": b"application/octet-stream"}
        r = client.get(url, headers=headers)
        assert r.status_code < 500, (value, r.status_code, r.text[:200])


# -- recursion ---------------------------------------------------------------------------------


def test_a_query_key_path_1000_sequences_deep(client: httpx.Client) -> None:
    path = ".".join(["00081115"] * 1000) + ".00080018"
    _bad_request(client.get("/instances", params={path: "1.2.3"}))
    _bad_request(client.get("/instances", params={"includefield": path}))


_SEQUENCE = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff"  # (0040,A730), undefined length
_ITEM = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
_ITEM_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
_SEQUENCE_END = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"


def _nested(depth: int) -> tuple[Dataset, bytes]:
    """An instance whose Content Sequence nests `depth` levels, encoded by hand (pydicom's
    writer recurses per level too)."""
    ds = make_instance()
    ds.ContentSequence = Sequence([Dataset()])
    data = to_bytes(ds)
    # pydicom writes the sequence and its empty item with defined lengths.
    shallow = b"\x40\x00\x30\xa7SQ\x00\x00\x08\x00\x00\x00\xfe\xff\x00\xe0\x00\x00\x00\x00"
    assert data.count(shallow) == 1
    deep = (_SEQUENCE + _ITEM) * depth + (_ITEM_END + _SEQUENCE_END) * depth
    return ds, data.replace(shallow, deep)


def test_a_stow_object_300_sequences_deep(client: httpx.Client) -> None:
    ds, data = _nested(300)
    r = stow(client, [data])
    assert r.status_code == 409, r.text[:300]
    (failed,) = sequence(r, "00081198")
    assert "deep" in failed["00000902"]["Value"][0]
    assert client.get(_instance_url(ds), headers={"Accept": "*/*"}).status_code == 404


def test_a_stow_object_within_the_depth_limit(client: httpx.Client) -> None:
    ds, data = _nested(20)
    assert stow(client, [data]).status_code == 200
    assert client.get(f"{_instance_url(ds)}/metadata").status_code == 200


def _json_stow(client: httpx.Client, items: list[object]) -> httpx.Response:
    body = b"--MeTa\r\nContent-Type: application/dicom+json\r\n\r\n" + orjson.dumps(items)
    return client.post(
        "/studies", headers={"Content-Type": JSON_TYPE}, content=body + b"\r\n--MeTa--\r\n"
    )


def _json_instance(**extra: object) -> dict[str, object]:
    ds = make_instance()
    del ds.PixelData
    item = ds.to_json_dict()
    item.update(extra)
    return item


def test_dicom_json_300_sequences_deep(client: httpx.Client) -> None:
    # Written as text: JSON encoders refuse to nest this deep themselves.
    deep = '{"0040A730":{"vr":"SQ","Value":[' * 300 + "{}" + "]}}" * 300
    item = orjson.dumps(_json_instance()).decode()
    document = item[:-1] + ',"0040A730":' + deep[len('{"0040A730":') : -1] + "}"
    body = b"--MeTa\r\nContent-Type: application/dicom+json\r\n\r\n" + document.encode()
    r = client.post(
        "/studies", headers={"Content-Type": JSON_TYPE}, content=body + b"\r\n--MeTa--\r\n"
    )
    assert r.status_code == 409, r.text[:300]


def test_dicom_json_deeper_than_the_json_parser_allows(client: httpx.Client) -> None:
    body = b"--MeTa\r\nContent-Type: application/dicom+json\r\n\r\n" + b"[" * 5000 + b"]" * 5000
    r = client.post(
        "/studies", headers={"Content-Type": JSON_TYPE}, content=body + b"\r\n--MeTa--\r\n"
    )
    _bad_request(r)


# -- values against their VR -------------------------------------------------------------------


@pytest.mark.parametrize(
    "element",
    [
        {"00280010": {"vr": "US", "Value": [-5]}},
        {"00280010": {"vr": "US", "Value": [70000]}},
        {"00280010": {"vr": "US", "Value": ["16"]}},
        {"00181063": {"vr": "DS", "Value": ["not a number"]}},
        {"00200013": {"vr": "IS", "Value": [1.5]}},
        {"00189219": {"vr": "SS", "Value": [40000]}},
        {"00280010": {"vr": "XX", "Value": [1]}},
        {"00100010": {"vr": "PN", "Value": [5]}},
        {"00100010": {"vr": "PN", "Value": "Doe"}},
        {"00080060": {"vr": "CS"}, "0008103E": {"vr": "LO", "Value": [{"a": 1}]}},
        {"00101010": {"vr": "AS", "InlineBinary": "!!!"}},
        {"00080018": {"vr": "UI", "Value": ["1.2.3\n"]}},
    ],
)
def test_dicom_json_values_against_their_vr(client: httpx.Client, element: dict) -> None:
    r = _json_stow(client, [_json_instance(**element)])
    assert r.status_code == 409, r.text[:300]
    (failed,) = sequence(r, "00081198")
    assert failed["00081197"]["Value"][0] in (0xA900, 0xC000)
    # The Error Comment says what is wrong, in one line: no traceback, no server path.
    (comment,) = failed["00000902"]["Value"]
    assert "\n" not in comment and "Traceback" not in comment and "/" not in comment


# -- empty lists, identifiers, geometry, parser limits -----------------------------------------


@pytest.mark.parametrize("value", ["\\", "\\\\", ",", "1.2.3\\", "\\1.2.3"])
@pytest.mark.parametrize(
    "key", ["FrameOfReferenceUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"]
)
def test_empty_uid_lists(client: httpx.Client, stored: Dataset, key: str, value: str) -> None:
    for level in ("studies", "series", "instances"):
        r = client.get(f"/{level}", params={key: value})
        assert r.status_code < 500, (level, key, value, r.text[:200])


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "\t", "\x00"])
def test_uids_with_trailing_characters(client: httpx.Client, stored: Dataset, suffix: str) -> None:
    study = stored.StudyInstanceUID + suffix
    _bad_request(client.get("/studies", params={"StudyInstanceUID": study}))
    from urllib.parse import quote

    _bad_request(client.get(f"/studies/{quote(study, safe='')}/metadata"))


def test_a_uid_with_a_trailing_newline_is_not_stored(client: httpx.Client) -> None:
    ds = make_instance(sop_instance_uid="1.2.3.4")
    # pydicom would strip the newline: it is written into the bytes (padding is NUL).
    data = to_bytes(ds).replace(b"1.2.3.4\x00", b"1.2.3.4\n")
    r = stow(client, [data])
    assert r.status_code in (400, 409), r.text[:300]


@pytest.mark.parametrize(
    "viewport",
    ["16,16,20,20,5,5", "16,16,15.5,15.5,0.1,0.1", "16,16,0,0,0.001,0.001", "16,16,100,0,-5,5"],
)
def test_source_regions_that_crop_to_nothing(
    client: httpx.Client, stored: Dataset, viewport: str
) -> None:
    r = client.get(f"{_instance_url(stored)}/rendered", params={"viewport": viewport})
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])


@pytest.mark.parametrize("region", ["0.5,0.5,0.5,0.5", "0.99999,0,1,1", "0,0,0.0001,0.0001"])
def test_wado_uri_regions_that_crop_to_nothing(
    client: httpx.Client, stored: Dataset, region: str
) -> None:
    query = {
        "requestType": "WADO",
        "studyUID": stored.StudyInstanceUID,
        "seriesUID": stored.SeriesInstanceUID,
        "objectUID": stored.SOPInstanceUID,
        "region": region,
    }
    r = client.get("/wado", params=query)
    assert r.status_code in (200, 400), (r.status_code, r.text[:300])


@pytest.mark.parametrize("length", [71, 257, 1000, 70_000])
def test_long_multipart_boundaries(client: httpx.Client, length: int) -> None:
    boundary = "b" * length
    body, _ = multipart_body([to_bytes(make_instance())], boundary=boundary)
    r = client.post("/studies", content=body, headers={"Content-Type": STOW_TYPE.format(boundary)})
    _bad_request(r)
    assert "boundary" in r.json()["error"]


def test_a_nul_inside_a_text_value_is_stored_and_searchable(client: httpx.Client) -> None:
    """PS3.5 6.1: NUL is only padding; one inside a value (seen from faulty modalities) is
    dropped from the index and the metadata, not a 500 from PostgreSQL, and the object keeps
    the bytes it was sent with."""
    ds = make_instance(patient_id="NUL\x00ID")
    ds.InstitutionName = "HOSP\x00ITAL"
    ds.PatientName = "DOE\x00^JOHN"
    r = stow(client, [ds])
    assert r.status_code == 200, r.text
    for params in ({"PatientID": "NULID"}, {"InstitutionName": "HOSPI*"}, {"PatientName": "DOE^*"}):
        found = client.get("/studies", params=params)
        assert found.status_code == 200 and len(found.json()) == 1, (params, found.text)
    url = _instance_url(ds)
    meta = client.get(url + "/metadata").json()[0]
    assert meta["00100020"]["Value"] == ["NULID"]
    ((_, data),) = parts(client.get(url))
    assert b"NUL\x00ID" in data
