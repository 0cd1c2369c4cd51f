"""Date and time keys re-expressed at an entity's TimezoneOffsetFromUTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.matching import MatchKind, parse_match, parse_offset
from dicomweb_server.dicom.timezone import OFFSETS, adjust


def bounds(key: str, value: str, query: int, entity: int) -> list[tuple[str | None, str | None]]:
    return [(m.lower, m.upper) for m in adjust(parse_match(key, value), query, entity)]


def test_offsets_parse_to_minutes_east_of_utc() -> None:
    assert [parse_offset(v) for v in ("+0000", "+0530", "-0930", "+1400")] == [0, 330, -570, 840]
    for bad in ("0100", "+1500", "+0160", "+01:00", "UTC"):
        with pytest.raises(InvalidQuery):
            parse_offset(bad)
    assert OFFSETS["+0545"] == 345 and OFFSETS["-0930"] == -570


def test_a_day_covers_the_entity_days_it_overlaps() -> None:
    assert bounds("StudyDate", "20230105", 0, 60) == [("20230105", "20230106")]
    assert bounds("StudyDate", "20230105", 0, -60) == [("20230104", "20230105")]
    assert bounds("StudyDate", "-20230105", 0, 60) == [(None, "20230106")]


def test_a_time_range_crossing_midnight_splits_in_two() -> None:
    assert bounds("StudyTime", "2300-2330", 0, 120) == [("010000", "013059.999999")]
    assert bounds("StudyTime", "2200-2330", 0, 90) == [("233000", None), (None, "010059.999999")]


def test_a_date_time_shifts_exactly_and_its_own_offset_wins() -> None:
    assert bounds("AcquisitionDateTime", "2023010522", 0, 60) == [
        ("20230105230000", "20230105235959.999999")
    ]
    assert bounds("AcquisitionDateTime", "2023010522+0200", 0, 60) == [
        ("20230105210000", "20230105215959.999999")
    ]


def test_same_offset_changes_nothing() -> None:
    key = parse_match("StudyDate", "20230105")
    assert adjust(key, 60, 60) == (key,)
    assert adjust(parse_match("PatientID", "x"), 0, 60)[0].kind is MatchKind.SINGLE


@given(
    st.datetimes(datetime(2000, 1, 1), datetime(2030, 1, 1)),
    st.sampled_from(sorted(OFFSETS)),
    st.sampled_from(sorted(OFFSETS)),
)
def test_a_moment_inside_the_query_day_is_inside_the_adjusted_range(
    moment: datetime, query: str, entity: str
) -> None:
    """Independently of the code: the same instant, written at both offsets."""
    q, e = parse_offset(query), parse_offset(entity)
    assume(q != e)  # the same offset leaves the key as it was
    instant = moment.replace(tzinfo=UTC)
    at_query = instant.astimezone(timezone(timedelta(minutes=q)))
    at_entity = instant.astimezone(timezone(timedelta(minutes=e)))
    (lower, upper), *_ = bounds("StudyDate", at_query.strftime("%Y%m%d"), q, e)
    assert lower is not None and upper is not None
    assert lower <= at_entity.strftime("%Y%m%d") <= upper
    stamp = at_entity.strftime("%Y%m%d%H%M%S.%f")
    (lower, upper), *_ = bounds("AcquisitionDateTime", at_query.strftime("%Y%m%d%H"), q, e)
    assert lower is not None and upper is not None
    assert lower <= stamp <= upper + "\x7f"
    ranges = bounds("StudyTime", at_query.strftime("%H%M"), q, e)
    clock = at_entity.strftime("%H%M%S.%f")
    assert any((lo or "") <= clock <= (hi or "\x7f") + "\x7f" for lo, hi in ranges)
