"""The oracle property test: random archives, random questions, the server's answers equal
those of the reference matcher in tests/oracle.py, on every backend."""

from __future__ import annotations

import random
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomweb_server.dicom.matching import parse_search
from tests import oracle
from tests.factories import make_instance
from tests.helpers import stow

NAMES = ["Doe^John", "Doe^Jane", "O'Brien^Mary^^Dr", "Yamada^Taro=山田^太郎=やまだ^たろう", "doe^j"]
READERS = ["House^Gregory", "Wilson^James", "Cuddy^Lisa"]
DATES = ["20230105", "20230610", "20240101", "20241231"]
TIMES = ["083000", "120000.5", "1530", "235959"]
DATE_TIMES = ["20230105083000", "20230105083000.5", "2023010508", "20240101120000+0100"]
DESCRIPTIONS = ["CHEST CT", "Head MR", "chest ct", "50% dose_x"]
WEIGHTS = ["70", "80.5", "0.5"]
MODALITIES = ["CT", "MR", "SR"]
PARTS = ["CHEST", "HEAD", "ABDOMEN"]
PROCEDURES = ["RP1", "RP2", "RP3"]
STEPS = ["S1", "S2"]
IMAGE_TYPES = ["ORIGINAL", "DERIVED", "PRIMARY", "SECONDARY", "AXIAL"]
THICKNESS = ["1", "2.5", "5"]

# Keys a query may use, per level, with the values they take (None: no value).
STUDY_KEYS: dict[str, list[str]] = {
    "PatientName": NAMES,
    "PatientID": ["P1", "P2", "P3"],
    "StudyDate": DATES,
    "StudyTime": TIMES,
    "AccessionNumber": ["A1", "A2", "A3"],
    "StudyDescription": DESCRIPTIONS,
    "ReferringPhysicianName": READERS,
    "NameOfPhysiciansReadingStudy": READERS,
    "PatientWeight": WEIGHTS,
    "ModalitiesInStudy": MODALITIES,
}
SERIES_KEYS: dict[str, list[str]] = {
    "Modality": MODALITIES,
    "SeriesNumber": ["1", "2", "3"],
    "BodyPartExamined": PARTS,
    "SeriesDate": DATES,
    "PerformingPhysicianName": READERS,
    "RequestAttributesSequence.RequestedProcedureID": PROCEDURES,
    "RequestAttributesSequence.ScheduledProcedureStepID": STEPS,
}
INSTANCE_KEYS: dict[str, list[str]] = {
    "InstanceNumber": ["1", "2", "3"],
    "ImageType": IMAGE_TYPES,
    "SliceThickness": THICKNESS,
    "AcquisitionDateTime": DATE_TIMES,
    "ImageComments": ["first look", "Second look", "*star*"],
}
VRS = {
    "PatientName": "PN",
    "ReferringPhysicianName": "PN",
    "NameOfPhysiciansReadingStudy": "PN",
    "PerformingPhysicianName": "PN",
    "StudyDate": "DA",
    "SeriesDate": "DA",
    "StudyTime": "TM",
    "AcquisitionDateTime": "DT",
    "PatientWeight": "DS",
    "SeriesNumber": "IS",
    "InstanceNumber": "IS",
    "SliceThickness": "DS",
    "StudyDescription": "LO",
    "ImageComments": "LT",
}


def _maybe(rng: random.Random, pool: list[str], empty: float = 0.25) -> str:
    return "" if rng.random() < empty else rng.choice(pool)


def _some(rng: random.Random, pool: list[str]) -> list[str]:
    return rng.sample(pool, rng.randint(0, min(3, len(pool))))


@dataclass
class Archive:
    instances: list[Dataset]
    # Entities as each level sees them: the attributes of their first instance.
    studies: dict[str, Dataset]
    series: dict[str, Dataset]


def make_archive(seed: int) -> Archive:
    rng = random.Random(seed)
    instances = []
    for _ in range(6):
        study = {
            "StudyInstanceUID": generate_uid(),
            "PatientName": rng.choice(NAMES),
            "PatientID": rng.choice(["P1", "P2", "P3"]),
            "StudyDate": _maybe(rng, DATES),
            "StudyTime": _maybe(rng, TIMES),
            "AccessionNumber": _maybe(rng, ["A1", "A2", "A3"]),
            "StudyDescription": _maybe(rng, DESCRIPTIONS),
            "ReferringPhysicianName": _maybe(rng, READERS),
            "NameOfPhysiciansReadingStudy": _some(rng, READERS),
            "PatientWeight": _maybe(rng, WEIGHTS),
        }
        for number in range(1, rng.randint(1, 3) + 1):
            series = {
                "SeriesInstanceUID": generate_uid(),
                "Modality": rng.choice(MODALITIES),
                "SeriesNumber": number,
                "BodyPartExamined": _maybe(rng, PARTS),
                "SeriesDate": _maybe(rng, DATES),
                "PerformingPhysicianName": _some(rng, READERS),
            }
            requests = []
            for _ in range(rng.randint(0, 2)):
                item = Dataset()
                item.RequestedProcedureID = _maybe(rng, PROCEDURES, 0.2)
                item.ScheduledProcedureStepID = _maybe(rng, STEPS, 0.2)
                requests.append(item)
            for inumber in range(1, rng.randint(1, 3) + 1):
                ds = make_instance(
                    study["StudyInstanceUID"],
                    series["SeriesInstanceUID"],
                    patient_name=study["PatientName"],
                    patient_id=study["PatientID"],
                    study_date=study["StudyDate"],
                    study_time=study["StudyTime"],
                    accession_number=study["AccessionNumber"],
                    study_description=study["StudyDescription"],
                    modality=series["Modality"],
                    series_number=number,
                    instance_number=inumber,
                )
                ds.ReferringPhysicianName = study["ReferringPhysicianName"]
                ds.NameOfPhysiciansReadingStudy = study["NameOfPhysiciansReadingStudy"]
                ds.PatientWeight = study["PatientWeight"]
                ds.BodyPartExamined = series["BodyPartExamined"]
                ds.SeriesDate = series["SeriesDate"]
                ds.PerformingPhysicianName = series["PerformingPhysicianName"]
                if requests:
                    ds.RequestAttributesSequence = requests
                ds.ImageType = _some(rng, IMAGE_TYPES)
                ds.SliceThickness = _maybe(rng, THICKNESS)
                ds.AcquisitionDateTime = _maybe(rng, DATE_TIMES)
                ds.ImageComments = _maybe(rng, ["first look", "Second look", "*star*"])
                instances.append(ds)
    studies: dict[str, Dataset] = {}
    series_map: dict[str, Dataset] = {}
    for ds in instances:
        studies.setdefault(ds.StudyInstanceUID, ds)
        series_map.setdefault(ds.SeriesInstanceUID, ds)
    for uid, first in list(studies.items()):
        entity = Dataset()
        entity.update(first)
        modalities = {d.Modality for d in instances if d.StudyInstanceUID == uid}
        entity.ModalitiesInStudy = sorted(modalities)
        studies[uid] = entity
    return Archive(instances, studies, series_map)


def _wildcard(rng: random.Random, value: str) -> str:
    choice = rng.randrange(4)
    if choice == 0:
        return value[: rng.randint(0, len(value))] + "*"
    if choice == 1:
        i = rng.randrange(len(value))
        return value[:i] + "?" + value[i + 1 :]
    if choice == 2:
        return "*" + value[rng.randint(0, len(value)) :]
    return value.lower() + "*"


def _value_for(rng: random.Random, key: str, pool: list[str]) -> tuple[str, dict[str, str]]:
    """A value for one key and the flags it needs."""
    vr = VRS.get(
        key,
        "CS" if key in ("ModalitiesInStudy", "Modality", "BodyPartExamined", "ImageType") else "SH",
    )
    value = rng.choice(pool)
    if vr == "PN" and rng.random() < 0.5:
        value = value.split("=")[0]
        parts = value.split("^")
        value = rng.choice(parts) if rng.random() < 0.5 else value.lower()
    kind = rng.randrange(7)
    if kind == 0:
        return "", {}
    if kind == 1:
        return '""', {"emptyvaluematching": "true"}
    if kind == 2 and vr in ("DA", "TM", "DT"):
        low, high = sorted(rng.sample(pool, 2))
        low, high = rng.choice([(low, high), ("", high), (low, "")])
        if vr == "DT":
            low, high = low[:8], high[:10]
        return f"{low}-{high}", {}
    if kind == 3 and vr not in ("DA", "TM", "DT", "DS", "IS") and value:
        return _wildcard(rng, value), {}
    if kind == 4 and vr in ("CS", "SH", "LO", "PN"):
        other = rng.choice(pool).split("=")[0]
        flags = {"multiplevaluematching": "true"} if rng.random() < 0.5 else {}
        return f"{value}\\{other}", flags
    if kind == 5 and vr == "PN":
        return value[:3], {"fuzzymatching": "true"}
    return value, {}


@pytest.fixture
def archive_data(client: httpx.Client) -> Archive:
    archive = make_archive(seed=20261122)
    assert stow(client, archive.instances).status_code == 200
    return archive


# Each resource: the level of its results, their UID attribute (and tag), the keys asked.
RESOURCES: dict[str, tuple[str, str, str, dict[str, list[str]]]] = {
    "/studies": ("study", "StudyInstanceUID", "0020000D", STUDY_KEYS),
    "/series": ("series", "SeriesInstanceUID", "0020000E", {**STUDY_KEYS, **SERIES_KEYS}),
    "/instances": (
        "instance",
        "SOPInstanceUID",
        "00080018",
        {**STUDY_KEYS, **SERIES_KEYS, **INSTANCE_KEYS},
    ),
    "study/series": ("series", "SeriesInstanceUID", "0020000E", SERIES_KEYS),
    "study/instances": ("instance", "SOPInstanceUID", "00080018", {**SERIES_KEYS, **INSTANCE_KEYS}),
    "series/instances": ("instance", "SOPInstanceUID", "00080018", INSTANCE_KEYS),
}


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(seed=st.integers(0, 2**32), resource=st.sampled_from(sorted(RESOURCES)))
def test_server_answers_like_the_reference_matcher(
    client: httpx.Client, archive_data: Archive, seed: int, resource: str
) -> None:
    rng = random.Random(seed)
    a = archive_data
    some = rng.choice(a.instances)
    level, uid_attr, uid_tag, keys = RESOURCES[resource]
    params: list[tuple[str, str]] = []
    flags: dict[str, str] = {}
    for key in rng.sample(sorted(keys), rng.randint(1, 3)):
        value, needs = _value_for(rng, key, keys[key])
        params.append((key, value))
        flags.update(needs)
    if rng.random() < 0.2:
        params.append(("StudyInstanceUID", f"{some.StudyInstanceUID},{generate_uid()}"))
    params += sorted(flags.items())
    path = {
        "/studies": "/studies",
        "/series": "/series",
        "/instances": "/instances",
        "study/series": f"/studies/{some.StudyInstanceUID}/series",
        "study/instances": f"/studies/{some.StudyInstanceUID}/instances",
        "series/instances": (
            f"/studies/{some.StudyInstanceUID}/series/{some.SeriesInstanceUID}/instances"
        ),
    }[resource]
    response = client.get(path, params=[*params, ("limit", "1000")])
    assert response.status_code == 200, (params, response.text)
    assert "warning" not in response.headers, (params, response.headers["warning"])
    got = {r[uid_tag]["Value"][0] for r in response.json()}

    request = parse_search(params)
    expected = set()
    for ds in a.instances:
        if resource.startswith("study") and ds.StudyInstanceUID != some.StudyInstanceUID:
            continue
        if resource.startswith("series") and ds.SeriesInstanceUID != some.SeriesInstanceUID:
            continue
        # Each level sees its entity's attributes (those of its first instance), and
        # every level sees ModalitiesInStudy.
        if level == "study":
            entity = a.studies[ds.StudyInstanceUID]
        else:
            entity = Dataset()
            entity.update(a.series[ds.SeriesInstanceUID] if level == "series" else ds)
            entity.ModalitiesInStudy = a.studies[ds.StudyInstanceUID].ModalitiesInStudy
        if oracle.matches(entity, request.matches, request.fuzzy):
            expected.add(str(getattr(ds, uid_attr)))
    assert got == expected, params
