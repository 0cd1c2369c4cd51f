"""PS3.18 8.3.4 query parameters into the PS3.4 C.2.2.2 matching AST."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.matching import (
    Match,
    MatchKind,
    SequenceMatch,
    parse_match,
    parse_search,
)


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
            ("multiplevaluematching", "false"),
        ]
    )
    assert (request.limit, request.offset, request.include_all, request.fuzzy) == (
        5,
        10,
        True,
        True,
    )
    assert request.include_fields == {0x00081030}
    assert request.empty_value_matching and not request.multiple_value_matching
    assert request.warnings == []


def test_keys_under_one_sequence_share_one_item_and_flags_apply_wherever_they_stand() -> None:
    request = parse_search(
        [
            ("RequestAttributesSequence.RequestedProcedureID", '""'),
            ("00400275.00400009", "A*"),
            ("00400275.00401001", ""),  # universal: no condition on the item
            ("ImageType", "ORIGINAL\\PRIMARY"),
            ("emptyvaluematching", "true"),
            ("multiplevaluematching", "true"),
        ]
    )
    image_type, sequence = request.matches
    assert isinstance(image_type, Match) and image_type.kind is MatchKind.ALL
    assert isinstance(sequence, SequenceMatch) and sequence.tag == 0x00400275
    kinds = [(k.tag, k.kind) for k in sequence.keys if isinstance(k, Match)]
    assert kinds == [(0x00401001, MatchKind.EMPTY), (0x00400009, MatchKind.WILDCARD)]


def test_a_sequence_with_only_universal_keys_is_universal() -> None:
    (match,) = parse_search([("RequestAttributesSequence.RequestedProcedureID", "")]).matches
    assert isinstance(match, Match) and match.kind is MatchKind.UNIVERSAL
    assert match.tag == 0x00400275


def test_a_negative_utc_offset_in_a_date_time_range_is_not_its_hyphen() -> None:
    match = parse_match("AcquisitionDateTime", "20200101-0500-20200102")
    assert (match.kind, match.lower, match.upper) == (MatchKind.RANGE, "20200101-0500", "20200102")


def test_real_dates_pass() -> None:
    # 29 February of a leap year, a leap second, a year alone, an offset west of UTC
    for key, value in (
        ("StudyDate", "20240229"),
        ("StudyTime", "235960"),
        ("AcquisitionDateTime", "2023"),
        ("AcquisitionDateTime", "20230101120000-0500"),
        ("StudyDate", "20240228-20240229"),
    ):
        parse_match(key, value)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("StudyInstanceUID", "1.2*"),
        ("StudyDate", "2020"),
        ("StudyDate", "x-"),
        ("SeriesNumber", "one"),
        ("Nope", "x"),
        ("StudyDate", "20200102-20200101"),
        ("AcquisitionDateTime", "20230101+9999"),  # an offset no clock has
        ("StudyInstanceUID", "01.2"),
        ("StudyDate", "20231399"),
        ("StudyDate", "20230230"),
        ("StudyDate", "20230230-20230301"),
        ("StudyDate", "00000101"),
        ("StudyTime", "126000"),
        ("AcquisitionDateTime", "202313"),
        ("AcquisitionDateTime", "202302301200-0500"),
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
