"""Corrections (issue 18; Microsoft's bulk update, outside PS3.18) and patient merge, on
every backend pair: the objects served carry the new values with their SOP Instance UIDs
unchanged, the original version stays retrievable, QIDO matches the new values, the change
feed gets `update` entries and the audit trail DICOM Instances Accessed."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from tests.api.test_audit import _event_id, _events, _studies
from tests.api.test_delete import _objects
from tests.conftest import RunningServer, make_settings, private_server
from tests.factories import make_instance
from tests.helpers import stow

WHOLE = {"Accept": "application/dicom; transfer-syntax=*"}
ORIGINAL = {**WHOLE, "msdicom-request-original": "true"}


def _patient_study(
    client: httpx.Client, patient: str, name: str, n: int = 2
) -> tuple[str, list[Any]]:
    study, series = generate_uid(), generate_uid()
    items = []
    for _ in range(n):
        ds = make_instance(study_uid=study, series_uid=series)
        ds.PatientID, ds.PatientName, ds.PatientSex = patient, name, "F"
        ds.PatientBirthDate, ds.AccessionNumber = "19700101", "ACC1"
        items.append(ds)
    answer = stow(client, items)
    assert answer.status_code == 200, answer.text
    return study, items


def _url(study: str, ds: Any) -> str:
    return f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def _object(client: httpx.Client, url: str, headers: dict[str, str] = WHOLE) -> Any:
    answer = client.get(url, headers=headers)
    assert answer.status_code == 200, answer.text
    return dcmread(io.BytesIO(answer.content))


def _name(value: str) -> dict[str, Any]:
    return {"vr": "PN", "Value": [{"Alphabetic": value}]}


def _da(value: str) -> dict[str, Any]:
    return {"vr": "DA", "Value": [value]}


def test_correct_a_study_and_retrieve_the_original(
    client: httpx.Client, archive: RunningServer
) -> None:
    study, items = _patient_study(client, "P-1", "Smiht^Anna")
    url = _url(study, items[0])
    before = client.get(url, headers=WHOLE).content
    answer = client.post(
        "/studies/$bulkUpdate",
        json={
            "studyInstanceUids": [study],
            "changeDataset": {
                "00100010": _name("Smith^Anna"),
                "00081030": {"vr": "LO", "Value": ["Chest, corrected"]},
                "00080050": {"vr": "SH"},
            },
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"studies": 1, "instances": 2}
    # The object served carries the new values; UIDs and pixels unchanged.
    ds = _object(client, url)
    assert str(ds.PatientName) == "Smith^Anna" and ds.StudyDescription == "Chest, corrected"
    assert ds.AccessionNumber == "" and ds.SOPInstanceUID == items[0].SOPInstanceUID
    assert ds.PixelData == items[0].PixelData
    metadata = client.get(url + "/metadata").json()[0]
    assert metadata["00100010"]["Value"] == [{"Alphabetic": "Smith^Anna"}]
    # QIDO matches the new values at once, and no longer the old ones.
    assert len(client.get("/studies", params={"PatientName": "Smith*"}).json()) == 1
    assert client.get("/studies", params={"PatientName": "Smiht*"}).json() == []
    found = client.get(
        "/studies", params={"StudyInstanceUID": study, "includefield": "StudyDescription"}
    ).json()[0]
    assert found["00081030"]["Value"] == ["Chest, corrected"]
    assert found["00201208"]["Value"] == [2]
    # The original stays retrievable, byte for byte.
    assert client.get(url, headers=ORIGINAL).content == before
    original = _object(client, url, ORIGINAL)
    assert str(original.PatientName) == "Smiht^Anna"
    # A second correction: the original is still the first copy; nothing is left behind.
    second = {
        "studyInstanceUids": [study],
        "changeDataset": {"00100040": {"vr": "CS", "Value": ["O"]}},
    }
    assert client.post("/studies/$bulkUpdate", json=second).status_code == 200
    assert _object(client, url).PatientSex == "O"
    assert str(_object(client, url).PatientName) == "Smith^Anna"
    assert client.get(url, headers=ORIGINAL).content == before
    report = archive.container.consistency.check(repair=True, grace_seconds=0)
    assert report.orphans == [] and report.missing == []
    assert _objects(archive) == 4  # two current copies, two originals

    entries = client.get("/changefeed", params={"limit": 100}).json()
    assert [e["Action"] for e in entries] == ["create"] * 2 + ["update"] * 4
    # Deleting the study removes the originals too.
    assert client.delete(f"/studies/{study}").status_code == 204
    assert _objects(archive) == 0


def test_correct_every_study_of_a_patient_and_merge(client: httpx.Client) -> None:
    first, _ = _patient_study(client, "P-2", "Doe^Jane")
    second, _ = _patient_study(client, "P-2", "Doe^Jane", n=1)
    other, _ = _patient_study(client, "P-3", "Roe^Richard")
    answer = client.post(
        "/studies/$bulkUpdate",
        json={
            "patientId": "P-2",
            "changeDataset": {"00100030": {"vr": "DA", "Value": ["19700202"]}},
        },
    )
    assert answer.json() == {"studies": 2, "instances": 3}
    assert len(client.get("/studies", params={"PatientBirthDate": "19700202"}).json()) == 2

    # Merge P-3 into P-2: P-3's study takes P-2's identity.
    answer = client.post("/patients/P-3/merge", json={"into": "P-2"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"studies": 1, "instances": 2}
    assert client.get("/studies", params={"PatientID": "P-3"}).json() == []
    merged = client.get("/studies", params={"PatientID": "P-2"}).json()
    assert {s["0020000D"]["Value"][0] for s in merged} == {first, second, other}
    assert {s["00100010"]["Value"][0]["Alphabetic"] for s in merged} == {"Doe^Jane"}
    assert {s["00100030"]["Value"][0] for s in merged} == {"19700202"}
    # The consistency report no longer sees a conflict.
    assert client.post("/patients/P-3/merge", json={"into": "P-2"}).status_code == 404
    assert client.post("/patients/P-2/merge", json={"into": "P-2"}).status_code == 409
    assert client.post("/patients/P-9/merge", json={"into": "P-2"}).status_code == 404
    assert client.post("/patients/P-2/merge", json={}).status_code == 400


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"changeDataset": {"00100010": _name("X")}}, 400, "studyInstanceUids"),
        ({"studyInstanceUids": [], "changeDataset": {"00100010": _name("X")}}, 400, "non-empty"),
        (
            {"studyInstanceUids": ["not-a-uid"], "changeDataset": {"00100010": _name("X")}},
            400,
            "UID",
        ),
        ({"studyInstanceUids": ["1.2.3"], "changeDataset": {}}, 400, "non-empty"),
        (
            {
                "studyInstanceUids": ["1.2.3"],
                "changeDataset": {"0020000D": {"vr": "UI", "Value": ["1.2"]}},
            },
            400,
            "cannot be corrected",
        ),
        (
            {
                "studyInstanceUids": ["1.2.3"],
                "changeDataset": {"00100010": {"vr": "LO", "Value": ["X"]}},
            },
            400,
            "vr PN",
        ),
        (
            {"studyInstanceUids": ["1.2.3"], "changeDataset": {"PatientName": _name("X")}},
            400,
            "not a DICOM tag",
        ),
        (
            {"studyInstanceUids": ["1.2.3"], "changeDataset": {"00100010": _name("X")}, "x": 1},
            400,
            "unknown",
        ),
        ({"studyInstanceUids": ["1.2.3"], "changeDataset": {"00100010": _name("X")}}, 404, "1.2.3"),
        ({"patientId": "nobody", "changeDataset": {"00100010": _name("X")}}, 404, "patient"),
        ([1, 2], 400, "object"),
        (
            {"studyInstanceUids": ["1.2.3"], "changeDataset": {"00100030": _da("20230230")}},
            400,
            "has no day 30",
        ),
        (
            {"studyInstanceUids": ["1.2.3"], "changeDataset": {"00100030": _da("20231399")}},
            400,
            "no month 13",
        ),
        (
            {"studyInstanceUids": ["1.2.3"], "changeDataset": {"00100030": _da("1980-01-01")}},
            400,
            "YYYYMMDD",
        ),
    ],
)
def test_bad_corrections_are_refused_with_the_reason(
    client: httpx.Client, body: object, status: int, says: str
) -> None:
    study, items = _patient_study(client, "P-4", "Keep^Me", n=1)
    answer = client.post("/studies/$bulkUpdate", json=body)
    assert answer.status_code == status, answer.text
    assert says in answer.text
    assert str(_object(client, _url(study, items[0])).PatientName) == "Keep^Me"


def test_original_of_an_uncorrected_instance_is_itself(client: httpx.Client) -> None:
    study, items = _patient_study(client, "P-5", "Same^One", n=1)
    url = _url(study, items[0])
    assert client.get(url, headers=ORIGINAL).content == client.get(url, headers=WHOLE).content
    tagged = {"Accept": "application/dicom; transfer-syntax=1.2.840.10008.1.2.4.50"}
    answer = client.get(url, headers={**tagged, "msdicom-request-original": "true"})
    assert answer.status_code == 406


def test_corrections_need_the_update_scope_and_are_audited(
    tmp_path: Path, archive: RunningServer
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("access control and the audit trail do not depend on the backends")
    settings = make_settings(tmp_path, auth="api-key", audit="table", max_correction_instances=3)
    with private_server(settings) as (client, container):
        writer = container.access.create_key("writer", {"read", "write"}).secret
        fixer = container.access.create_key("fixer", {"read", "update"}).secret
        admin = {"X-API-Key": container.access.create_key("admin", {"admin"}).secret}
        client.headers["X-API-Key"] = writer
        study, _ = _patient_study(client, "P-6", "Audit^Me")
        big, _ = _patient_study(client, "P-7", "Too^Many", n=2)
        body = {"studyInstanceUids": [study], "changeDataset": {"00100010": _name("Fixed")}}
        assert client.post("/studies/$bulkUpdate", json=body).status_code == 403
        client.headers["X-API-Key"] = fixer
        assert client.post("/studies/$bulkUpdate", json=body).status_code == 200
        too_many = {**body, "studyInstanceUids": [study, big]}
        answer = client.post("/studies/$bulkUpdate", json=too_many)
        assert answer.status_code == 400 and "at most 3" in answer.text
        accessed = [m for m in _events(client, admin, container) if _event_id(m) == "110103"]
        assert len(accessed) == 1 and _studies(accessed[0]) == [study]
        assert accessed[0]["EventIdentification"]["EventActionCode"] == "U"
