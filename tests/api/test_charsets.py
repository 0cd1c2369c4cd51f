"""Names in other character sets are indexed decoded, and QIDO finds them by any group."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import make_instance, to_bytes
from tests.helpers import stow, values

# (Specific Character Set, Patient Name) as modalities send them.
NAMES = {
    "latin1": ("ISO_IR 100", "Müller^Jürgen"),
    "utf8": ("ISO_IR 192", "Wang^XiaoDong=王^小東"),
    "gb18030": ("GB18030", "Wang^XiaoDong=王^小东"),
    "japanese": (["ISO 2022 IR 6", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう"),
}


@pytest.fixture
def stored(client: httpx.Client) -> dict[str, str]:
    uids = {}
    items = []
    for key, (charset, name) in NAMES.items():
        ds = make_instance(patient_id=key)
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        items.append(to_bytes(ds))
        uids[key] = ds.StudyInstanceUID
    assert stow(client, items).status_code == 200
    return uids


def found(client: httpx.Client, name: str) -> set[str]:
    r = client.get("/studies", params={"PatientName": name})
    assert r.status_code == 200, r.text
    return {values(s, "00100020")[0] for s in r.json()}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("müller^jürgen", {"latin1"}),
        ("MÜLL*", {"latin1"}),
        ("Wang^XiaoDong", {"utf8", "gb18030"}),
        ("王^小東", {"utf8"}),
        ("王^小东", {"gb18030"}),
        ("王*", {"utf8", "gb18030"}),
        ("山田^太郎", {"japanese"}),
        ("やまだ*", {"japanese"}),
        ("yamada^tarou=山田^太郎", {"japanese"}),
        ("Yamada^Tarou=王^小東", set()),
    ],
)
def test_find_by_any_name_group(
    client: httpx.Client, stored: dict[str, str], query: str, expected: set[str]
) -> None:
    assert found(client, query) == expected


def test_names_come_back_decoded(client: httpx.Client, stored: dict[str, str]) -> None:
    (study,) = client.get("/studies", params={"PatientID": "japanese"}).json()
    assert values(study, "00100010") == [
        {"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎", "Phonetic": "やまだ^たろう"}
    ]
    meta = client.get(f"/studies/{stored['gb18030']}/metadata").json()
    assert values(meta[0], "00100010") == [
        {"Alphabetic": "Wang^XiaoDong", "Ideographic": "王^小东"}
    ]
