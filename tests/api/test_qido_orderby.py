"""QIDO-RS `orderby` (dcm4chee's extension; PS3.18 has no sort key): results sorted by
indexed attributes of the level and the levels above, descending with `-`, empty values
last; any other attribute ignored with Warning 299; paging stays stable."""

from __future__ import annotations

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.factories import make_instance
from tests.helpers import stow

pytestmark = pytest.mark.parametrize("server", ["sqlite", "postgresql"], indirect=True)

PEOPLE = [
    ("Carter^Ann", "20260305", 3),
    ("Abbott^Ben", "20260101", 1),
    ("Baker^Cid", "20261231", 2),
    ("Dyson^Dee", "", 1),
]


def _store(client: httpx.Client) -> dict[str, str]:
    uids = {}
    for name, date, count in PEOPLE:
        study = generate_uid()
        series = generate_uid()
        sent = []
        for i in range(count):
            ds = make_instance(study, series, instance_number=count - i)
            ds.PatientName = name
            ds.StudyDate = date
            sent.append(ds)
        assert stow(client, sent).status_code == 200
        uids[name] = study
    return uids


def _names(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 200, answer.text
    return [s["00100010"]["Value"][0]["Alphabetic"] for s in answer.json()]


def test_studies_sorted_both_ways(client: httpx.Client) -> None:
    _store(client)
    by_name = client.get("/studies", params={"orderby": "PatientName"})
    assert _names(by_name) == sorted(p[0] for p in PEOPLE)
    assert "warning" not in by_name.headers
    assert _names(client.get("/studies", params={"orderby": "-PatientName"})) == sorted(
        (p[0] for p in PEOPLE), reverse=True
    )
    # Empty dates last, either way.
    assert _names(client.get("/studies", params={"orderby": "StudyDate"})) == [
        "Abbott^Ben",
        "Carter^Ann",
        "Baker^Cid",
        "Dyson^Dee",
    ]
    assert _names(client.get("/studies", params={"orderby": "-00080020"})) == [
        "Baker^Cid",
        "Carter^Ann",
        "Abbott^Ben",
        "Dyson^Dee",
    ]
    # The counts, then a second key; pages do not overlap.
    counted = client.get(
        "/studies", params={"orderby": "-NumberOfStudyRelatedInstances,PatientName"}
    )
    assert _names(counted) == ["Carter^Ann", "Baker^Cid", "Abbott^Ben", "Dyson^Dee"]
    pages = [
        _names(
            client.get(
                "/studies",
                params={"orderby": "-NumberOfStudyRelatedInstances", "limit": 2, "offset": o},
            )
        )
        for o in (0, 2)
    ]
    assert sorted(pages[0] + pages[1]) == sorted(p[0] for p in PEOPLE)


def test_instances_by_number_and_by_a_study_attribute(client: httpx.Client) -> None:
    uids = _store(client)
    found = client.get(
        f"/studies/{uids['Carter^Ann']}/instances", params={"orderby": "InstanceNumber"}
    )
    assert [i["00200013"]["Value"][0] for i in found.json()] == [1, 2, 3]
    every = client.get("/instances", params={"orderby": "-PatientName,InstanceNumber"})
    assert _names(every)[:3] == ["Dyson^Dee", "Carter^Ann", "Carter^Ann"]


def test_what_cannot_be_sorted_by_is_said(client: httpx.Client) -> None:
    _store(client)
    ignored = client.get("/studies", params={"orderby": "InstitutionName"})
    assert ignored.status_code == 200
    assert "sorting by InstitutionName is not supported" in ignored.headers["warning"]
    refused = client.get("/studies", params={"orderby": "NoSuchKeyword"})
    assert refused.status_code == 400 and "NoSuchKeyword" in refused.json()["error"]
    too_many = client.get("/studies", params={"orderby": ",".join(["PatientName"] * 9)})
    assert too_many.status_code == 400
    workitems = client.get("/workitems", params={"orderby": "PatientName"})
    assert workitems.status_code in (200, 204)
    assert "orderby is not supported for workitems" in workitems.headers["warning"]


def test_an_empty_orderby_is_the_order_of_storage(client: httpx.Client) -> None:
    _store(client)
    assert _names(client.get("/studies", params={"orderby": ""})) == [p[0] for p in PEOPLE]
