"""De-identification on ingest (PS3.15 Annex E): nothing the profile removes survives."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from dicomweb_server.container import deidentifier
from dicomweb_server.dicom.confidentiality_profile import PROFILE, Option
from dicomweb_server.dicom.deidentify import Deidentifier, resolve
from tests.conftest import RunningServer, make_settings
from tests.factories import make_instance, parse, to_bytes
from tests.helpers import parts, sequence, stow, values

KEY = b"test-secret"
DATE, DATETIME, TIME, AGE = "18990707", "18990707120000", "235959.123456", "077Y"
TEXT_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
IDENTITY = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "SOPClassUID")


@pytest.fixture
def deidentify(archive: RunningServer) -> Iterator[Callable[..., Deidentifier]]:
    """Turn de-identification on for the running server (DICOMWEB_DEIDENTIFY)."""
    store = archive.container.store

    def enable(*options: Option) -> Deidentifier:
        store.deidentifier = Deidentifier(KEY, frozenset(options))
        return store.deidentifier

    yield enable
    store.deidentifier = None


def marked_instance() -> tuple[Dataset, dict[int, str]]:
    """An instance with a recognisable value in every attribute of Table E.1-1 it can hold."""
    ds = make_instance(rows=4, columns=4)
    markers: dict[int, str] = {}
    for n, tag in enumerate(sorted(PROFILE)):
        if (
            tag >> 16 in (0x0000, 0x0002)
            or tag == 0xFFFCFFFC
            or (ds.get(tag) is not None and (dictionary_VR(tag) == "UI"))
        ):
            continue
        try:
            vr = dictionary_VR(tag)
        except KeyError:
            continue
        value = {"DA": DATE, "DT": DATETIME, "TM": TIME, "AS": AGE}.get(vr)
        if vr in TEXT_VRS:
            value = f"PHI{n:04d}"
        elif vr == "UI":
            value = f"1.2.999.{n}"
        if value is None:
            continue
        ds.add_new(tag, vr, value)
        markers[tag] = value
    ds.add_new(0x00090010, "LO", "PRIVATE CREATOR PHI")
    ds.add_new(0x00091001, "LO", "PHIPRIVATE")
    return ds, markers


def stored_instance(client: httpx.Client, response: httpx.Response) -> tuple[bytes, str]:
    (item,) = sequence(response, "00081199")
    url = values(item, "00081190")[0]
    ((_, data),) = parts(client.get(url))
    return data, client.get(url + "/metadata").text


def test_basic_profile_on_every_attribute(client: httpx.Client, deidentify) -> None:  # type: ignore[no-untyped-def]
    deidentifier = deidentify()
    ds, markers = marked_instance()
    original = {k: str(ds[k].value) for k in IDENTITY}
    r = stow(client, [ds])
    # PS3.18 I.2: the elements were changed, which is a Coercion of Data Elements warning.
    assert r.status_code == 202, r.text
    (item,) = sequence(r, "00081199")
    assert values(item, "00081196") == [0xB000]
    assert "de-identified" in values(item, "00000902")[0]
    data, metadata = stored_instance(client, r)
    back = parse(data)
    for tag, value in markers.items():
        action = resolve(PROFILE[tag], ())
        if action == "X":
            assert tag not in back, PROFILE[tag][0]
        elif action == "Z":
            assert back[tag].is_empty, PROFILE[tag][0]
        elif action == "U":
            assert str(back[tag].value) == deidentifier.map_uid(value), PROFILE[tag][0]
        elif action == "D":
            assert str(back[tag].value) not in ("", value), PROFILE[tag][0]
    # No marker survives anywhere: stored object, metadata, search results at every level.
    texts = [data.decode("latin-1"), metadata]
    for level in ("studies", "series", "instances"):
        texts.append(client.get(f"/{level}", params={"includefield": "all"}).text)
    survivors = {
        m
        for m in [*markers.values(), "PHIPRIVATE", "PRIVATE CREATOR PHI"]
        for text in texts
        if m in text
    }
    assert survivors == set()
    for keyword in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        assert str(back[keyword].value) == deidentifier.map_uid(original[keyword])
        assert original[keyword] not in "".join(texts)
    assert back.SOPClassUID == original["SOPClassUID"]
    assert back.PatientIdentityRemoved == "YES"
    assert back.DeidentificationMethodCodeSequence[0].CodeValue == "113100"
    assert back.file_meta.MediaStorageSOPInstanceUID == back.SOPInstanceUID


def test_series_stay_together_across_requests(client: httpx.Client, deidentify) -> None:  # type: ignore[no-untyped-def]
    deidentifier = deidentify()
    study, series = generate_uid(), generate_uid()
    first, second = make_instance(study, series), make_instance(study, series)
    assert stow(client, [first], study=study).status_code == 202
    assert stow(client, [second], study=study).status_code == 202
    new_study = deidentifier.map_uid(study)
    (found,) = client.get("/studies").json()
    assert values(found, "0020000D") == [new_study]
    assert values(found, "00201208") == [2] and values(found, "00201206") == [1]


def test_options(client: httpx.Client, deidentify) -> None:  # type: ignore[no-untyped-def]
    deidentify(
        Option.RETAIN_UIDS,
        Option.RETAIN_LONG_MODIFIED_DATES,
        Option.RETAIN_DEVICE_IDENTITY,
        Option.RETAIN_INSTITUTION_IDENTITY,
        Option.RETAIN_PATIENT_CHARACTERISTICS,
        Option.CLEAN_DESCRIPTORS,
    )
    ds = make_instance(
        patient_name="Doe^John", study_date="20240102", study_description="CT FOR JOHN DOE"
    )
    ds.DeviceSerialNumber = "SN-42"
    ds.InstitutionName = "General Hospital"
    ds.PatientSex = "F"
    r = stow(client, [to_bytes(ds)])
    assert r.status_code == 202, r.text
    back = parse(stored_instance(client, r)[0])
    assert back.SOPInstanceUID == ds.SOPInstanceUID  # retain UIDs
    assert back.StudyDate != "20240102" and len(back.StudyDate) == 8  # dates shifted
    assert back.StudyDate == back.ContentDate if "ContentDate" in back else True
    assert back.DeviceSerialNumber == "SN-42"
    assert back.InstitutionName == "General Hospital"
    assert back.PatientSex == "F"
    assert back.StudyDescription == "CT FOR"  # the patient's name cleaned out
    assert back.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {item.CodeValue for item in back.DeidentificationMethodCodeSequence}
    assert {"113100", "113107", "113109", "113110", "113112", "113108", "113105"} <= codes


def test_every_row_resolves_under_every_option() -> None:
    for row in PROFILE.values():
        for option in (None, *Option):
            assert resolve(row, () if option is None else (option,)) in {
                "D",
                "Z",
                "X",
                "K",
                "C",
                "U",
                "U*",
            }


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({}, "KEY"),
        ({"deidentify_key": "k", "deidentify_options": "retain-everything"}, "OPTIONS"),
        ({"deidentify_key": "k", "deidentify_options": "retain-safe-private"}, "not supported"),
    ],
)
def test_configuration_errors_fail_at_start(
    tmp_path: Path, settings: dict[str, str], reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        deidentifier(make_settings(tmp_path, deidentify=True, **settings))
