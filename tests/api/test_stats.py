"""Data-mining views (issue 18): totals, aggregates over any attribute under QIDO-RS keys,
and the consistency report of the patient model, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, settings_env
from tests.factories import make_instance
from tests.helpers import stow

pytestmark = pytest.mark.parametrize("server", ["sqlite", "postgresql"], indirect=True)


def _store(client: httpx.Client, items: list[Any]) -> None:
    answer = stow(client, items)
    assert answer.status_code == 200, answer.text


def _archive(client: httpx.Client) -> None:
    january, february = "20260115", "20260210"
    for modality, station, date, count in [
        ("CT", "CT-3", january, 3),
        ("CT", "CT-3", january, 2),
        ("CT", "CT-1", january, 1),
        ("MR", "MR-1", february, 2),
    ]:
        study, series = generate_uid(), generate_uid()
        items = [
            make_instance(study_uid=study, series_uid=series, modality=modality, study_date=date)
            for _ in range(count)
        ]
        for ds in items:
            ds.StationName = station
        _store(client, items)


def test_totals_and_aggregates(client: httpx.Client) -> None:
    _archive(client)
    totals = client.get("/stats").json()
    assert (totals["studies"], totals["series"], totals["instances"]) == (4, 4, 8)
    assert totals["bytes"] > 0
    answer = client.get(
        "/aggregate/series",
        params={"groupby": "Modality,StationName", "StudyDate": "20260101-20260131"},
    )
    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert found["groupby"] == ["Modality", "StationName"]
    groups = [
        (g["values"]["Modality"], g["values"]["StationName"], g["series"], g["instances"])
        for g in found["groups"]
    ]
    assert groups == [("CT", "CT-3", 2, 5), ("CT", "CT-1", 1, 1)]
    assert all(g["bytes"] > 0 and g["studies"] >= 1 for g in found["groups"])
    by_study = client.get("/aggregate/studies", params={"groupby": "StudyDate"}).json()
    assert [(g["values"]["StudyDate"], g["studies"]) for g in by_study["groups"]] == [
        ("20260115", 3),
        ("20260210", 1),
    ]
    instances = client.get(
        "/aggregate/instances", params={"groupby": "StationName", "Modality": "MR"}
    ).json()
    assert [(g["values"]["StationName"], g["instances"]) for g in instances["groups"]] == [
        ("MR-1", 2)
    ]
    whole = client.get("/aggregate/instances").json()
    assert whole["groupby"] == [] and whole["groups"][0]["instances"] == 8


def test_aggregate_refusals(client: httpx.Client) -> None:
    for params, path in [
        ({"groupby": "NotAKeyword"}, "/aggregate/series"),
        ({"groupby": "ReferencedImageSequence"}, "/aggregate/series"),
        ({"groupby": "Modality,Modality"}, "/aggregate/series"),
        ({"groupby": "Modality"}, "/aggregate/patients"),
        ({"StudyDate": "2026-01"}, "/aggregate/series"),
        # attributes the level does not hold: an instance's or a series' on study rows
        ({"groupby": "SOPInstanceUID"}, "/aggregate/studies"),
        ({"groupby": "ImageType"}, "/aggregate/series"),
        ({"groupby": "Modality"}, "/aggregate/studies"),
    ]:
        answer = client.get(path, params=params)
        assert answer.status_code == 400, (params, answer.text)
        assert answer.json()["error"]


def test_a_multi_valued_attribute_gives_one_group_per_value(client: httpx.Client) -> None:
    """A study with CT and MR series counts under CT and under MR (ModalitiesInStudy); an
    instance's ImageType ORIGINAL\\PRIMARY\\AXIAL counts under each of its values."""
    mixed, ct_only = generate_uid(), generate_uid()
    items = [
        make_instance(study_uid=mixed, series_uid=generate_uid(), modality="CT"),
        make_instance(study_uid=mixed, series_uid=generate_uid(), modality="MR"),
        make_instance(study_uid=ct_only, series_uid=generate_uid(), modality="CT"),
    ]
    items[0].ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    items[1].ImageType = ["ORIGINAL", "SECONDARY"]
    items[2].ImageType = ["DERIVED", "SECONDARY"]
    _store(client, items)
    by_modality = client.get("/aggregate/studies", params={"groupby": "ModalitiesInStudy"})
    assert by_modality.status_code == 200, by_modality.text
    groups = {g["values"]["ModalitiesInStudy"]: g["studies"] for g in by_modality.json()["groups"]}
    assert groups == {"CT": 2, "MR": 1}
    # The same under a key, and at the series level (each series under its study's values)
    ct = client.get(
        "/aggregate/studies", params={"groupby": "ModalitiesInStudy", "ModalitiesInStudy": "MR"}
    ).json()
    assert {g["values"]["ModalitiesInStudy"]: g["studies"] for g in ct["groups"]} == {
        "CT": 1,
        "MR": 1,
    }
    image_types = client.get("/aggregate/instances", params={"groupby": "ImageType"}).json()
    counted = {g["values"]["ImageType"]: g["instances"] for g in image_types["groups"]}
    assert counted == {"ORIGINAL": 2, "SECONDARY": 2, "PRIMARY": 1, "AXIAL": 1, "DERIVED": 1}
    series_counts = client.get(
        "/aggregate/studies", params={"groupby": "NumberOfStudyRelatedSeries"}
    ).json()
    assert {
        g["values"]["NumberOfStudyRelatedSeries"]: g["studies"] for g in series_counts["groups"]
    } == {
        "2": 1,
        "1": 1,
    }


def test_the_consistency_report_finds_what_the_patient_model_forbids(
    client: httpx.Client, archive: RunningServer
) -> None:
    good = generate_uid()
    _store(client, [make_instance(study_uid=good, patient_id="P-OK", patient_name="Fine^Ok")])
    # One PatientID, two names across its studies.
    for name in ("Smith^Anna", "Smyth^Anna"):
        _store(
            client, [make_instance(study_uid=generate_uid(), patient_id="P-1", patient_name=name)]
        )
    # One study, two PatientIDs among its instances.
    shared = generate_uid()
    _store(client, [make_instance(study_uid=shared, patient_id="P-2")])
    _store(client, [make_instance(study_uid=shared, patient_id="P-3")])
    # One series, two modalities.
    series = generate_uid()
    study = generate_uid()
    _store(client, [make_instance(study_uid=study, series_uid=series, modality="CT")])
    _store(client, [make_instance(study_uid=study, series_uid=series, modality="MR")])
    report = client.get("/reports/consistency")
    assert report.status_code == 200, report.text
    found = {(f["kind"], f["subject"]): f["values"] for f in report.json()["inconsistencies"]}
    assert found[("patient-name", "P-1")] == ["SMITH^ANNA", "SMYTH^ANNA"]
    assert found[("study-patients", shared)] == ["P-2", "P-3"]
    assert found[("series-modality", series)] == ["CT", "MR"]
    assert not any(subject in ("P-OK", good) for _, subject in found)
    assert client.get("/reports/consistency", params={"limit": "0"}).status_code == 400
    # The same from the command line: a finding a line, exit status 1 when there are some.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(settings_env(archive.settings))
    command = [str(Path(sys.executable).parent / "dicomweb-server"), "report"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = [line.split("\t") for line in done.stdout.splitlines()]
    assert ["series-modality", series, "CT | MR"] in lines
    assert len(lines) == len(found)
