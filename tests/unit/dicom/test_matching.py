"""PS3.18 8.3.4 query parameters into the PS3.4 C.2.2.2 matching AST."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.matching import MatchKind, parse_match, parse_search


def test_kinds() -> None:
    assert parse_match("PatientID", "").kind is MatchKind.UNIVERSAL
    assert parse_match("PatientID", "P1").kind is MatchKind.SINGLE
    assert parse_match("PatientName", "Do*").kind is MatchKind.WILDCARD
    assert parse_match("StudyInstanceUID", "1.2,1.3").values == ("1.2", "1.3")
    assert parse_match("ModalitiesInStudy", "CT\\MR").values == ("CT", "MR")
    r = parse_match("StudyDate", "20200101-")
    assert (r.kind, r.lower, r.upper) == (MatchKind.RANGE, "20200101", None)
    r = parse_match("StudyTime", "-1200")
    assert (r.kind, r.lower, r.upper) == (MatchKind.RANGE, None, "1200")


def test_tags_and_keywords_are_the_same_attribute() -> None:
    assert parse_match("00100020", "x").tag == parse_match("PatientID", "x").tag == 0x00100020


def test_search_parameters() -> None:
    request = parse_search(
        [
            ("limit", "5"),
            ("offset", "10"),
            ("includefield", "all"),
            ("includefield", "StudyDescription,00081030"),
            ("fuzzymatching", "true"),
            ("emptyvaluematching", "true"),
        ]
    )
    assert (request.limit, request.offset, request.include_all, request.fuzzy) == (
        5,
        10,
        True,
        True,
    )
    assert request.include_fields == {0x00081030}
    assert any("emptyvaluematching" in w for w in request.warnings)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("StudyInstanceUID", "1.2*"),
        ("StudyDate", "2020"),
        ("StudyDate", "x-"),
        ("SeriesNumber", "one"),
        ("Nope", "x"),
        ("StudyDate", "20200102-20200101"),
        ("StudyInstanceUID", "01.2"),
    ],
)
def test_invalid(key: str, value: str) -> None:
    with pytest.raises(InvalidQuery):
        parse_match(key, value)


@given(st.text(max_size=40))
def test_any_text_is_parsed_or_refused_cleanly(value: str) -> None:
    for key in ("PatientName", "StudyDate", "StudyInstanceUID", "SeriesNumber", "Modality"):
        with contextlib.suppress(InvalidQuery):
            parse_match(key, value)


@pytest.mark.parametrize(
    "params", [[("PatientName", "\x00")], [("Pat\x00ientID", "x")], [("includefield", "\x00")]]
)
def test_nul_characters_are_refused(params: list[tuple[str, str]]) -> None:
    with pytest.raises(InvalidQuery, match="NUL"):
        parse_search(params)
