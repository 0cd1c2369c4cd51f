"""Whatever a client sends, the answer is never a 500 (DEVELOPERS.md: bad input gets a 4xx)."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import RunningServer
from tests.factories import make_instance
from tests.helpers import stow

KEYS = [
    "PatientName",
    "PatientID",
    "StudyDate",
    "StudyTime",
    "StudyInstanceUID",
    "ModalitiesInStudy",
    "SeriesNumber",
    "limit",
    "offset",
    "includefield",
    "fuzzymatching",
    "00100010",
    "0020000D",
    "NoSuchKey",
    "00080020.00100010",
    "",
    "emptyvaluematching",
    "multiplevaluematching",
    "TimezoneOffsetFromUTC",
    "AcquisitionDateTime",
    "ImageType",
    "SliceThickness",
    "NameOfPhysiciansReadingStudy",
    "RequestAttributesSequence",
    "RequestAttributesSequence.RequestedProcedureID",
    "00400275.00400009",
    "ReferencedSOPSequence.ReferencedSOPInstanceUID",
    # Paths of any depth (the depth limit), empty lists on UID keys.
    ".".join(["ReferencedSeriesSequence"] * 40) + ".SeriesInstanceUID",
    ".".join(["00081115"] * 1000),
    "FrameOfReferenceUID",
    "SOPInstanceUID",
]
ACCEPTS = [
    None,
    "*/*",
    "application/dicom+json",
    'multipart/related; type="application/dicom"',
    "text/html;q=abc",
    "multipart/related; type=",
    '"',
    "a/b;c",
    ",,,",
]
# Numbers of every kind: other scripts' digits, huge, signed, with exponents.
numbers = st.one_of(
    st.text(alphabet=st.characters(categories=("Nd", "No")), min_size=1, max_size=8),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["9" * 5000, "1," + "9" * 5000, "1e999", "0x10", "1_0", "\u00b3", "\\", ","]),
)
text = st.one_of(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
    st.sampled_from(['""', "true", "+0100", "-1400", "2023-", "-2023+0100", "A\\B*", "1.5"]),
    numbers,
)


@pytest.fixture(scope="module")
def loaded(server: RunningServer) -> tuple[str, str, str]:
    server.reset()
    ds = make_instance(frames=2)
    with httpx.Client(base_url=server.base_url) as c:
        assert stow(c, [ds]).status_code == 200
    return ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    params=st.lists(st.tuples(st.sampled_from(KEYS), text), max_size=4),
    accept=st.sampled_from(ACCEPTS),
    level=st.sampled_from(["studies", "series", "instances"]),
)
def test_random_searches(
    server: RunningServer,
    loaded: tuple[str, str, str],
    params: list[tuple[str, str]],
    accept: str | None,
    level: str,
) -> None:
    headers = {"Accept": accept} if accept is not None else {}
    r = httpx.get(f"{server.base_url}/{level}", params=params, headers=headers)
    assert r.status_code < 500, r.text


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    segment=text,
    tail=st.sampled_from(
        ["", "/metadata", "/frames/1", "/frames/{x}", "/bulkdata/{x}", "/series/{x}/instances"]
    ),
    accept=st.sampled_from(ACCEPTS),
)
def test_random_paths(
    server: RunningServer, loaded: tuple[str, str, str], segment: str, tail: str, accept: str | None
) -> None:
    study, series, instance = loaded
    quoted = quote(segment, safe="")
    for path in (
        f"/studies/{quoted}{tail}",
        f"/studies/{study}/series/{series}/instances/{instance}{tail}",
    ):
        headers = {"Accept": accept} if accept is not None else {}
        r = httpx.get(server.base_url + path.replace("{x}", quoted), headers=headers)
        assert r.status_code < 500, (path, r.text)


RETRIEVE_ACCEPTS = [
    *ACCEPTS,
    "image/jpeg",
    "image/png;q=0.5, image/gif",
    'multipart/related; type="image/jpeg"',
    "application/zip",
    "application/dicom",
    "application/octet-stream",
    'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.4.50',
    'multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.81',
    'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.91',
    'multipart/related; type="application/dicom"; transfer-syntax=1.2.3',
    'multipart/related; type="image/*"',
]
RENDER_KEYS = ["window", "viewport", "quality", "annotation", "iccprofile"]
WADO_URI_KEYS = [
    "contentType",
    "charset",
    "anonymize",
    "annotation",
    "rows",
    "columns",
    "region",
    "windowCenter",
    "windowWidth",
    "frameNumber",
    "imageQuality",
    "presentationUID",
    "presentationSeriesUID",
    "transferSyntax",
]
render_text = st.one_of(
    text,
    st.sampled_from(
        [
            "40,400,LINEAR",
            "1,1,SIGMOID",
            "10,10",
            "64,64,0,0,8,8",
            "0.1,0.1,0.9,0.9",
            "yes",
            "image/png",
            "application/dicom",
            "2",
            "1e308",
            "nan",
            "-5",
            "patient",
            # Geometry: huge outputs, crops to nothing, flips.
            "16384,16384",
            "16384,16384,0,0,1,1",
            "16,16,15.9,15.9,0.01,0.01",
            "16,16,0,0,-4,-4",
            "0.5,0.5,0.5000001,0.5000001",
            "16384",
        ]
    ),
    numbers,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    tail=st.sampled_from(
        [
            "",
            "/rendered",
            "/thumbnail",
            "/frames/1/rendered",
            "/frames/1,2/rendered",
            "/frames/1,2,1,2,1,2/rendered",
            "/frames/\u00b9/rendered",
            "/frames/99999999999999999999",
            "/frames/2/thumbnail",
            "/frames/1",
            "/frames/1,2",
            "/bulkdata/7FE00010",
        ]
    ),
    level=st.sampled_from(["study", "series", "instance"]),
    params=st.lists(st.tuples(st.sampled_from(RENDER_KEYS), render_text), max_size=3),
    accept=st.sampled_from(RETRIEVE_ACCEPTS),
    byte_range=st.sampled_from(
        [None, "bytes=0-10", "bytes=-5", "bytes=99999-", "bytes=a-b", "bytes=" + "9" * 400 + "-"]
    ),
)
def test_random_retrieves(
    server: RunningServer,
    loaded: tuple[str, str, str],
    tail: str,
    level: str,
    params: list[tuple[str, str]],
    accept: str | None,
    byte_range: str | None,
) -> None:
    study, series, instance = loaded
    path = {
        "study": f"/studies/{study}",
        "series": f"/studies/{study}/series/{series}",
        "instance": f"/studies/{study}/series/{series}/instances/{instance}",
    }[level]
    if "frames" in tail or "bulkdata" in tail:
        path = f"/studies/{study}/series/{series}/instances/{instance}"
    headers = {k: v for k, v in (("Accept", accept), ("Range", byte_range)) if v is not None}
    r = httpx.get(server.base_url + path + tail, params=params, headers=headers)
    assert r.status_code < 500, (path + tail, params, accept, r.text)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(params=st.lists(st.tuples(st.sampled_from(WADO_URI_KEYS), render_text), max_size=4))
def test_random_wado_uri(
    server: RunningServer, loaded: tuple[str, str, str], params: list[tuple[str, str]]
) -> None:
    study, series, instance = loaded
    query = [
        ("requestType", "WADO"),
        ("studyUID", study),
        ("seriesUID", series),
        ("objectUID", instance),
        *params,
    ]
    r = httpx.get(server.base_url + "/wado", params=query)
    assert r.status_code < 500, (params, r.text)
