"""QIDO-RS (PS3.18 10.6) through the HTTP API, on every backend."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomweb_server.dicom.attributes import (
    INSTANCE_RETURN_KEYS,
    SERIES_RETURN_KEYS,
    STUDY_RETURN_KEYS,
)
from tests.conftest import RunningServer
from tests.factories import make_instance
from tests.helpers import stow, values


@pytest.fixture
def studies(client: httpx.Client) -> dict[str, str]:
    """Three studies: two patients, three dates, CT and MR."""
    made = {
        "doe": make_instance(
            patient_name="Doe^John",
            patient_id="P1",
            study_date="20230105",
            accession_number="A1",
            modality="CT",
        ),
        "roe": make_instance(
            patient_name="Roe^Jane",
            patient_id="P2",
            study_date="20230610",
            accession_number="A2",
            modality="MR",
        ),
        "doe2": make_instance(
            patient_name="Doe^John",
            patient_id="P1",
            study_date="20240101",
            accession_number="A3",
            modality="CT",
        ),
    }
    # A second series in doe2's study.
    extra = make_instance(
        made["doe2"].StudyInstanceUID,
        patient_name="Doe^John",
        patient_id="P1",
        study_date="20240101",
        modality="SR",
        series_number=2,
    )
    assert stow(client, [*made.values(), extra]).status_code == 200
    return {k: v.StudyInstanceUID for k, v in made.items()}


def patient_ids(client: httpx.Client, path: str, params: dict[str, str]) -> set[str]:
    """The PatientIDs of the results; a warning would mean a key was ignored."""
    r = client.get(path, params={**params, "includefield": "PatientID"})
    assert r.status_code == 200, r.text
    assert "warning" not in r.headers, r.headers["warning"]
    return {values(x, "00100020")[0] for x in r.json()}


def study_uids(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/dicom+json"
    return {values(r, "0020000D")[0] for r in response.json()}


def test_search_by_patient_id(client: httpx.Client, studies: dict[str, str]) -> None:
    assert study_uids(client.get("/studies", params={"PatientID": "P1"})) == {
        studies["doe"],
        studies["doe2"],
    }


def test_search_by_tag_instead_of_keyword(client: httpx.Client, studies: dict[str, str]) -> None:
    assert study_uids(client.get("/studies", params={"00100020": "P2"})) == {studies["roe"]}


def test_patient_name_wildcard_is_case_insensitive(
    client: httpx.Client, studies: dict[str, str]
) -> None:
    assert study_uids(client.get("/studies", params={"PatientName": "doe*"})) == {
        studies["doe"],
        studies["doe2"],
    }
    assert study_uids(client.get("/studies", params={"PatientName": "R?E^Jane"})) == {
        studies["roe"]
    }
    assert study_uids(client.get("/studies", params={"PatientName": "roe^jane"})) == {
        studies["roe"]
    }


def test_wildcard_on_other_text_is_case_sensitive(
    client: httpx.Client, studies: dict[str, str]
) -> None:
    assert study_uids(client.get("/studies", params={"AccessionNumber": "A*"})) == set(
        studies.values()
    )
    assert study_uids(client.get("/studies", params={"AccessionNumber": "a*"})) == set()


def test_date_ranges(client: httpx.Client, studies: dict[str, str]) -> None:
    get = lambda v: study_uids(client.get("/studies", params={"StudyDate": v}))  # noqa: E731
    assert get("20230101-20231231") == {studies["doe"], studies["roe"]}
    assert get("-20230301") == {studies["doe"]}
    assert get("20240101-") == {studies["doe2"]}
    assert get("20230610") == {studies["roe"]}


def test_uid_list(client: httpx.Client, studies: dict[str, str]) -> None:
    wanted = {studies["doe"], studies["roe"]}
    assert (
        study_uids(client.get("/studies", params={"StudyInstanceUID": ",".join(wanted)})) == wanted
    )
    assert (
        study_uids(client.get("/studies", params={"StudyInstanceUID": "\\".join(wanted)})) == wanted
    )


def test_modalities_in_study(client: httpx.Client, studies: dict[str, str]) -> None:
    assert study_uids(client.get("/studies", params={"ModalitiesInStudy": "MR"})) == {
        studies["roe"]
    }
    assert study_uids(client.get("/studies", params={"ModalitiesInStudy": "SR"})) == {
        studies["doe2"]
    }
    (doe2,) = client.get("/studies", params={"StudyInstanceUID": studies["doe2"]}).json()
    assert values(doe2, "00080061") == ["CT", "SR"]


def test_modalities_in_study_at_series_and_instance_level(
    client: httpx.Client, studies: dict[str, str]
) -> None:
    # The series of studies that hold an SR series: both series of doe2's study.
    series = client.get("/series", params={"ModalitiesInStudy": "SR"})
    assert series.status_code == 200, series.text
    assert sorted(values(s, "00080060")[0] for s in series.json()) == ["CT", "SR"]
    instances = client.get("/instances", params={"ModalitiesInStudy": "MR"})
    assert instances.status_code == 200 and len(instances.json()) == 1


def test_limit_and_offset_page_without_overlap(
    client: httpx.Client, studies: dict[str, str]
) -> None:
    pages = [study_uids(client.get("/studies", params={"limit": 1, "offset": i})) for i in range(4)]
    assert [len(p) for p in pages] == [1, 1, 1, 0]
    assert set().union(*pages) == set(studies.values())


def test_required_return_keys_at_each_level(client: httpx.Client, studies: dict[str, str]) -> None:
    optional = {"00080201", "00400244", "00400245", "00400275", "00280008"}
    (study,) = client.get("/studies", params={"StudyInstanceUID": studies["roe"]}).json()
    assert {f"{t:08X}" for t in STUDY_RETURN_KEYS} - optional <= set(study)
    assert values(study, "00201206") == [1] and values(study, "00201208") == [1]
    (series,) = client.get(f"/studies/{studies['roe']}/series").json()
    assert {f"{t:08X}" for t in SERIES_RETURN_KEYS} - optional <= set(series)
    (instance,) = client.get(f"/studies/{studies['roe']}/instances").json()
    assert {f"{t:08X}" for t in INSTANCE_RETURN_KEYS} - optional <= set(instance)
    assert values(instance, "00080056") == ["ONLINE"]
    retrieve_url = values(instance, "00081190")[0]
    assert client.get(retrieve_url + "/metadata").status_code == 200


def test_includefield(client: httpx.Client, studies: dict[str, str]) -> None:
    params = {"StudyInstanceUID": studies["doe"], "includefield": "StudyDescription,00100030"}
    (study,) = client.get("/studies", params=params).json()
    assert values(study, "00081030") == ["CHEST CT"]
    assert values(study, "00100030") == ["19700101"]
    (everything,) = client.get(
        "/studies", params={"StudyInstanceUID": studies["doe"], "includefield": "all"}
    ).json()
    assert values(everything, "00080090") == [{"Alphabetic": "Welby^Marcus"}]
    (instance,) = client.get(
        f"/studies/{studies['doe']}/instances", params={"includefield": "ImageType"}
    ).json()
    assert values(instance, "00080008") == ["ORIGINAL", "PRIMARY", "AXIAL"]


def test_series_and_instances_at_every_scope(client: httpx.Client, studies: dict[str, str]) -> None:
    doe2 = studies["doe2"]
    series = client.get(f"/studies/{doe2}/series").json()
    assert sorted(values(s, "00080060")[0] for s in series) == ["CT", "SR"]
    sr = next(s for s in series if values(s, "00080060") == ["SR"])
    sr_uid = values(sr, "0020000E")[0]
    assert len(client.get(f"/studies/{doe2}/series/{sr_uid}/instances").json()) == 1
    assert len(client.get(f"/studies/{doe2}/instances").json()) == 2
    all_series = client.get("/series", params={"Modality": "CT"}).json()
    assert len(all_series) == 2
    # Across the archive, series results carry their study's attributes too.
    assert all(values(s, "00100020") == ["P1"] for s in all_series)
    assert len(client.get("/instances", params={"PatientID": "P1"}).json()) == 3
    assert len(client.get("/series", params={"SeriesNumber": "2"}).json()) == 1


def test_empty_result_is_200_with_empty_array(
    client: httpx.Client, studies: dict[str, str]
) -> None:
    r = client.get("/studies", params={"PatientID": "nobody"})
    assert r.status_code == 200 and r.json() == []


def test_sql_metacharacters_are_plain_values(client: httpx.Client, studies: dict[str, str]) -> None:
    for value in ("' OR '1'='1", "P1'; DROP TABLE studies; --", "%", "_1", "P\\1"):
        r = client.get("/studies", params={"PatientID": value})
        assert r.status_code == 200 and r.json() == [], value
    # LIKE specials inside a DICOM wildcard match only themselves.
    assert client.get("/studies", params={"PatientID": "%*"}).json() == []
    assert len(client.get("/studies").json()) == 3


def _request(procedure: str, step: str) -> Dataset:
    item = Dataset()
    item.RequestedProcedureID = procedure
    item.ScheduledProcedureStepID = step
    return item


@pytest.fixture
def described(client: httpx.Client) -> dict[str, str]:
    """Instances whose attributes have no index column of their own."""
    thin = make_instance(patient_id="W70")
    thin.PatientWeight = "70"
    thin.SliceThickness = "2.5"
    thin.BodyPartExamined = "CHEST"
    thin.OperatorsName = "Smith^Anna"
    thick = make_instance(patient_id="W80")
    thick.PatientWeight = "80.5"
    thick.SliceThickness = "5"
    thick.BodyPartExamined = "HEAD"
    thick.OperatorsName = "Jones^Bob"
    thick.ImageType = ["DERIVED", "SECONDARY"]
    thick.NameOfPhysiciansReadingStudy = ["House^Gregory", "Wilson^James"]
    thin.AdmittingDiagnosesDescription = ["Cough", "Fever"]
    # Two requests of one series (PS3.3 C.7.3.1 Request Attributes Sequence).
    thick.RequestAttributesSequence = [
        _request("RP-1", "SPS-1"),
        _request("RP-2", "SPS-2"),
    ]
    assert stow(client, [thin, thick]).status_code == 200
    return {"thin": thin.SOPInstanceUID, "thick": thick.SOPInstanceUID}


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        ("/instances", {"SliceThickness": "2.5"}, {"W70"}),
        ("/instances", {"SliceThickness": "2.50"}, {"W70"}),  # numbers compare as numbers
        ("/instances", {"SliceThickness": "5"}, {"W80"}),
        ("/instances", {"ImageType": "DERIVED"}, {"W80"}),
        ("/series", {"BodyPartExamined": "CHEST"}, {"W70"}),
        ("/series", {"BodyPartExamined": "CH*"}, {"W70"}),
        ("/series", {"BodyPartExamined": "ch*"}, set()),  # CS is case-sensitive
        ("/series", {"OperatorsName": "smith*"}, {"W70"}),  # PN is not
        ("/series", {"BodyPartExamined": "CHEST\\HEAD"}, {"W70", "W80"}),
        ("/studies", {"PatientWeight": "80.5"}, {"W80"}),
        ("/studies", {"PatientWeight": "70"}, {"W70"}),
        ("/instances", {"BodyPartExamined": "HEAD", "SliceThickness": "5"}, {"W80"}),
        ("/instances", {"BodyPartExamined": "' OR 1=1 --"}, set()),
        # Any value of a multi-valued attribute matches (PS3.4 C.2.2.2).
        ("/instances", {"ImageType": "SECONDARY"}, {"W80"}),
        ("/studies", {"NameOfPhysiciansReadingStudy": "wilson*"}, {"W80"}),
        ("/studies", {"AdmittingDiagnosesDescription": "Fever"}, {"W70"}),
        # multiplevaluematching: every value listed must be held (PS3.18 8.3.4).
        (
            "/instances",
            {"ImageType": "DERIVED\\SECONDARY", "multiplevaluematching": "true"},
            {"W80"},
        ),
        ("/instances", {"ImageType": "DERIVED\\PRIMARY", "multiplevaluematching": "true"}, set()),
        ("/instances", {"ImageType": "DERIVED\\ORIGINAL"}, {"W70", "W80"}),  # any of them
        # emptyvaluematching: `""` finds the entities where the attribute has no value.
        ("/studies", {"NameOfPhysiciansReadingStudy": '""', "emptyvaluematching": "true"}, {"W70"}),
        (
            "/studies",
            {"emptyvaluematching": "true", "AdmittingDiagnosesDescription": '""'},
            {"W80"},
        ),
        (
            "/series",
            {"emptyvaluematching": "true", "RequestAttributesSequence": ""},
            {"W70", "W80"},
        ),
        # Sequence matching (PS3.4 C.2.2.2.6): one item must match every key.
        ("/series", {"00400275.00401001": "RP-2"}, {"W80"}),
        ("/series", {"RequestAttributesSequence.ScheduledProcedureStepID": "SPS-*"}, {"W80"}),
        (
            "/series",
            {
                "RequestAttributesSequence.RequestedProcedureID": "RP-1",
                "RequestAttributesSequence.ScheduledProcedureStepID": "SPS-1",
            },
            {"W80"},
        ),
        (
            "/series",
            {
                "RequestAttributesSequence.RequestedProcedureID": "RP-1",
                "RequestAttributesSequence.ScheduledProcedureStepID": "SPS-2",
            },
            set(),  # two items, each matching one key, are not one item matching both
        ),
        ("/series", {"RequestAttributesSequence.RequestedProcedureID": ""}, {"W70", "W80"}),
        ("/instances", {"00400275.00401001": "RP-1", "SliceThickness": "5"}, {"W80"}),
    ],
)
def test_any_attribute_is_a_matching_key(
    client: httpx.Client,
    described: dict[str, str],
    path: str,
    params: dict[str, str],
    expected: set[str],
) -> None:
    assert patient_ids(client, path, params) == expected


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"NoSuchKeyword": "x"}, "keyword"),
        ({"0010002": "x"}, "keyword"),
        ({"StudyInstanceUID": "1.2.*"}, "wildcard"),
        ({"StudyInstanceUID": "1.2.abc"}, "UID"),
        ({"StudyDate": "2023-01-01"}, "DA"),
        ({"StudyDate": "20231301x"}, "DA"),
        ({"StudyDate": "20240101-20230101"}, "range"),
        ({"StudyDate": "-"}, "range"),
        # Dates and times that do not exist (PS3.5 Table 6.2-1), alone and in ranges
        ({"StudyDate": "20231399"}, "no month 13"),
        ({"StudyDate": "20230230"}, "has no day 30"),
        ({"StudyDate": "20230101-20230230"}, "has no day 30"),
        ({"StudyDate": "20231399-"}, "no month 13"),
        ({"StudyTime": "250000"}, "no hour 25"),
        ({"AcquisitionDateTime": "20230229120000"}, "has no day 29"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "99999999999999"}, "limit"),
        ({"offset": "abc"}, "offset"),
        ({"fuzzymatching": "maybe"}, "fuzzymatching"),
        ({"includefield": "NotAKeyword"}, "keyword"),
        ({"SeriesNumber": "x1"}, "number"),
        ({"RequestAttributesSequence": "x"}, "sequence"),
        ({"PatientName.PatientID": "x"}, "not a sequence"),
        ({"00400275.NoSuchKeyword": "x"}, "keyword"),
        ({"emptyvaluematching": "yes"}, "emptyvaluematching"),
        ({"PixelData": "x"}, "OB"),
        ({"ImageType": "A*\\B", "multiplevaluematching": "true"}, "wildcard"),
    ],
)
def test_bad_queries_are_400_with_reason(
    client: httpx.Client, params: dict[str, str], reason: str
) -> None:
    r = client.get("/studies", params=params)
    assert r.status_code == 400, r.text
    assert reason.lower() in r.json()["error"].lower()


def test_unknown_study_in_path_is_404(client: httpx.Client) -> None:
    r = client.get(f"/studies/{generate_uid()}/series")
    assert r.status_code == 404 and r.json()["error"]


def test_bad_uid_in_path_is_400(client: httpx.Client) -> None:
    r = client.get("/studies/1.2.x/series")
    assert r.status_code == 400 and "UID" in r.json()["error"]


def test_unacceptable_accept_is_406(client: httpx.Client) -> None:
    r = client.get("/studies", headers={"Accept": "application/pdf"})
    assert r.status_code == 406 and r.json()["error"]
    assert client.get("/studies", headers={"Accept": "application/json"}).status_code == 200


@pytest.fixture
def max_limit(archive: RunningServer) -> Iterator[None]:
    """A server maximum of 2 results (DICOMWEB_QIDO_MAX_LIMIT) for one test."""
    search = archive.container.search
    before = search.max_limit
    search.max_limit = 2
    yield
    search.max_limit = before


def test_truncation_by_the_server_maximum_warns_and_links_the_next_page(
    client: httpx.Client, studies: dict[str, str], max_limit: None
) -> None:
    r = client.get("/studies")
    assert r.status_code == 200 and len(r.json()) == 2
    assert "exceeded the maximum supported by the server" in r.headers["warning"]
    link = r.headers["link"]
    assert link.endswith('>; rel="next"') and "offset=2" in link
    rest = client.get(link[1 : link.index(">")])
    assert len(rest.json()) == 1 and "link" not in rest.headers
    assert {values(s, "0020000D")[0] for s in r.json() + rest.json()} == set(studies.values())


def test_a_page_the_client_asked_for_links_on_without_warning(
    client: httpx.Client, studies: dict[str, str]
) -> None:
    r = client.get("/studies", params={"limit": 1, "offset": 1})
    assert len(r.json()) == 1
    assert "warning" not in r.headers
    assert "offset=2" in r.headers["link"]
    last = client.get("/studies", params={"limit": 1, "offset": 2})
    assert "link" not in last.headers


@pytest.mark.parametrize(
    ("name", "fuzzy", "expected"),
    [
        ("john", "true", {"doe", "doe2"}),  # a given name alone
        ("JA", "true", {"roe"}),  # the start of a component
        ("doe", "true", {"doe", "doe2"}),
        ("oe", "true", set()),  # not the start of a component
        ("john", "false", set()),
        ("j?n*", "true", {"roe"}),  # wildcards keep their meaning
    ],
)
def test_fuzzy_matching_of_names(
    client: httpx.Client, studies: dict[str, str], name: str, fuzzy: str, expected: set[str]
) -> None:
    r = client.get("/studies", params={"PatientName": name, "fuzzymatching": fuzzy})
    assert r.status_code == 200 and "warning" not in r.headers
    assert study_uids(r) == {studies[k] for k in expected}


@pytest.mark.parametrize("path", ["/studies", "/series", "/instances"])
def test_search_results_in_xml(
    client: httpx.Client, studies: dict[str, str], described: dict[str, str], path: str
) -> None:
    from dicomweb_server.dicom.xml_model import native_to_json
    from tests.helpers import parts

    query = {"PatientID": "P1\\W80", "includefield": "all"}
    as_json = client.get(path, params=query).json()
    r = client.get(
        path,
        params=query,
        headers={"Accept": 'multipart/related; type="application/dicom+xml"'},
    )
    assert r.status_code == 200 and len(as_json) >= 2
    assert [native_to_json(body) for _, body in parts(r)] == as_json


def test_includefield_with_a_sequence_path_returns_the_sequence(
    client: httpx.Client, described: dict[str, str]
) -> None:
    r = client.get(
        "/series",
        params={
            "PatientID": "W80",
            "includefield": "RequestAttributesSequence.RequestedProcedureID",
        },
    )
    (found,) = r.json()
    items = found["00400275"]["Value"]
    assert [i["00401001"]["Value"] for i in items] == [["RP-1"], ["RP-2"]]


def test_fuzzy_matching_of_names_held_only_in_the_json(
    client: httpx.Client, described: dict[str, str]
) -> None:
    r = client.get(
        "/studies",
        params={"NameOfPhysiciansReadingStudy": "jam", "fuzzymatching": "true"},
    )
    assert r.status_code == 200 and "warning" not in r.headers
    assert {values(x, "00100020")[0] for x in r.json()} == {"W80"}


@pytest.fixture
def zoned(client: httpx.Client) -> dict[str, str]:
    """The same local clock reading, once at +0100 and once with no offset."""
    made = {}
    for name, offset in (("paris", "+0100"), ("unzoned", None)):
        ds = make_instance(patient_id=name, study_date="20230105", study_time="233000")
        ds.AcquisitionDateTime = "20230105233000"
        if offset:
            ds.TimezoneOffsetFromUTC = offset
        made[name] = ds
    assert stow(client, made.values()).status_code == 200
    return {k: v.StudyInstanceUID for k, v in made.items()}


@pytest.mark.parametrize(
    ("path", "params", "expected"),
    [
        # 23:30 at +0100 is 22:30 UTC and 17:30 at -0500, on 5 January everywhere.
        (
            "/studies",
            {"StudyDate": "20230105", "TimezoneOffsetFromUTC": "-0500"},
            {"paris", "unzoned"},
        ),
        ("/studies", {"StudyDate": "20230106", "TimezoneOffsetFromUTC": "-0500"}, set()),
        # At +0500 it is 03:30 on 6 January.
        ("/studies", {"StudyDate": "20230106", "TimezoneOffsetFromUTC": "+0500"}, {"paris"}),
        ("/studies", {"StudyTime": "2230-2240", "TimezoneOffsetFromUTC": "+0000"}, {"paris"}),
        ("/studies", {"StudyTime": "0300-0400", "TimezoneOffsetFromUTC": "+0500"}, {"paris"}),
        (
            "/studies",
            {"StudyTime": "233000", "TimezoneOffsetFromUTC": "+0100"},
            {"paris", "unzoned"},
        ),
        ("/studies", {"StudyTime": "2230-2240"}, set()),  # without the key: no adjustment
        (
            "/instances",
            {"AcquisitionDateTime": "2023010522", "TimezoneOffsetFromUTC": "+0000"},
            {"paris"},
        ),
        ("/instances", {"AcquisitionDateTime": "2023010522+0000"}, {"paris"}),
        (
            "/instances",
            {"AcquisitionDateTime": "-2023010521+0000", "TimezoneOffsetFromUTC": "+0100"},
            set(),
        ),
    ],
)
def test_timezone_offset_from_utc_adjusts_date_and_time_keys(
    client: httpx.Client,
    zoned: dict[str, str],
    path: str,
    params: dict[str, str],
    expected: set[str],
) -> None:
    assert patient_ids(client, path, params) == expected


def test_a_malformed_timezone_offset_is_400(client: httpx.Client) -> None:
    r = client.get("/studies", params={"TimezoneOffsetFromUTC": "+25:00"})
    assert r.status_code == 400 and "TimezoneOffsetFromUTC" in r.json()["error"]
