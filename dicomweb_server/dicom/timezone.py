"""Timezone adjustment of date and time keys (PS3.18 QIDO-RS TimezoneOffsetFromUTC).

A query that gives TimezoneOffsetFromUTC (0008,0201) states that its DA, TM and DT values
are local times at that offset. A stored entity's dates and times are local times at its own
TimezoneOffsetFromUTC. To compare the same instants, each key is re-expressed at the
entity's offset: shifted by delta = entity offset - query offset (in minutes).

- DA: a day at the query's offset overlaps one or two days at the entity's; the key becomes
  the range of entity days that overlap it (a date range: of days overlapping the range).
- TM: the times shift around the clock; a range that crosses midnight after the shift
  becomes two ranges, either of which matches.
- DT: the instant (or the span a partial value covers) shifts exactly; a query value with
  its own `&ZZXX` suffix is local to that offset instead.

An entity without TimezoneOffsetFromUTC is taken to be at the query's offset (no shift).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from dicomweb_server.dicom.matching import Match, MatchKind, parse_offset

# The offsets in use around the world (whole, half and quarter hours), as DICOM writes them,
# with their minutes east of UTC.
OFFSETS: dict[str, int] = {
    f"{'-' if m < 0 else '+'}{abs(m) // 60:02d}{abs(m) % 60:02d}": m
    for m in (
        -720, -660, -600, -570, -540, -480, -420, -360, -300, -240, -210, -180, -150,
        -120, -60, 0, 60, 120, 180, 210, 240, 270, 300, 330, 345, 360, 390, 420, 480,
        525, 540, 570, 600, 630, 660, 720, 765, 780, 825, 840,
    )
}  # fmt: skip

_DAY_US = 24 * 3600 * 1_000_000


def has_own_offset(match: Match) -> bool:
    """A DT key with a value that carries its own `&ZZXX` offset."""
    values = (*match.values, match.lower or "", match.upper or "")
    return match.vr == "DT" and any(_split_dt(v)[1] is not None for v in values if v)


def adjust(match: Match, query_offset: int, entity_offset: int) -> tuple[Match, ...]:
    """The key re-expressed at an entity's offset (minutes east of UTC): the entity matches
    when any of the keys returned does. Keys of other VRs come back unchanged."""
    delta = entity_offset - query_offset
    if match.vr not in ("DA", "TM", "DT"):
        return (match,)
    # A DT value may carry its own offset, which then stands for the query's.
    if delta == 0 and not has_own_offset(match):
        return (match,)
    spans: list[tuple[str | None, str | None]]
    if match.kind in (MatchKind.SINGLE, MatchKind.LIST):
        spans = [(v, v) for v in match.values]
    elif match.kind is MatchKind.RANGE:
        spans = [(match.lower, match.upper)]
    else:
        return (match,)
    out: list[Match] = []
    for lower, upper in spans:
        out.extend(_shift(match, lower, upper, delta, entity_offset))
    return tuple(out)


def _shift(
    match: Match, lower: str | None, upper: str | None, delta: int, entity_offset: int
) -> list[Match]:
    ranged = replace(match, kind=MatchKind.RANGE, values=())
    if match.vr == "DA":
        low = None if lower is None else _date(lower) + timedelta(minutes=delta)
        high = None if upper is None else _date(upper) + timedelta(days=1, minutes=delta)
        return [
            replace(
                ranged,
                lower=None if low is None else low.strftime("%Y%m%d"),
                # The last moment of the range, not the first of the next day.
                upper=None
                if high is None
                else (high - timedelta(microseconds=1)).strftime("%Y%m%d"),
            )
        ]
    if match.vr == "DT":
        low_dt = None if lower is None else _datetime_span(lower, delta, entity_offset)[0]
        high_dt = None if upper is None else _datetime_span(upper, delta, entity_offset)[1]
        return [
            replace(
                ranged,
                lower=None if low_dt is None else _lowest(low_dt.strftime("%Y%m%d%H%M%S.%f")),
                upper=None if high_dt is None else high_dt.strftime("%Y%m%d%H%M%S.%f"),
            )
        ]
    # TM: microseconds of the day, around the clock (a range always has a bound).
    start = 0 if lower is None else _time_us(lower)
    end = _DAY_US - 1 if upper is None else _time_end(upper)
    if end - start >= _DAY_US - 1:
        return [replace(ranged, lower="000000", upper=None)]
    shift = delta * 60_000_000
    low_us, high_us = (start + shift) % _DAY_US, (end + shift) % _DAY_US
    if low_us <= high_us:
        return [replace(ranged, lower=_lowest(_tm(low_us)), upper=_tm(high_us))]
    return [
        replace(ranged, lower=_lowest(_tm(low_us)), upper=None),
        replace(ranged, lower=None, upper=_tm(high_us)),
    ]


def _date(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%d")


def _split_dt(value: str) -> tuple[str, int | None]:
    if len(value) > 5 and value[-5] in "+-":
        return value[:-5], parse_offset(value[-5:])
    return value, None


def _dt_parts(value: str) -> tuple[datetime, timedelta]:
    """A partial DT: its first moment and how long it covers."""
    digits, _, fraction = value.partition(".")
    widths = {4: "%Y", 6: "%Y%m", 8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    start = datetime.strptime(digits, widths[len(digits)])
    if fraction:
        start += timedelta(microseconds=int(fraction.ljust(6, "0")))
        return start, timedelta(microseconds=10 ** (6 - len(fraction)))
    if len(digits) == 4:
        return start, datetime(start.year + 1, 1, 1) - start
    if len(digits) == 6:
        following = datetime(start.year + start.month // 12, start.month % 12 + 1, 1)
        return start, following - start
    unit = {8: timedelta(days=1), 10: timedelta(hours=1), 12: timedelta(minutes=1)}
    return start, unit.get(len(digits), timedelta(seconds=1))


def _datetime_span(value: str, delta: int, entity_offset: int) -> tuple[datetime, datetime]:
    """The first and last moments a (partial) DT covers, at the entity's offset; a value
    with its own offset shifts from that offset instead of the query's."""
    text, own = _split_dt(value)
    start, width = _dt_parts(text)
    shift = timedelta(minutes=delta if own is None else entity_offset - own)
    return start + shift, start + width - timedelta(microseconds=1) + shift


def _time_end(value: str) -> int:
    digits, _, fraction = value.partition(".")
    unit = {2: 3600, 4: 60, 6: 1}[len(digits)] * 1_000_000
    if fraction:
        unit = 10 ** (6 - len(fraction))
    return _time_us(value) + unit - 1


def _time_us(value: str) -> int:
    digits, _, fraction = value.partition(".")
    digits = digits.ljust(6, "0")
    seconds = int(digits[:2]) * 3600 + int(digits[2:4]) * 60 + int(digits[4:6])
    return seconds * 1_000_000 + int(fraction.ljust(6, "0") or 0)


def _tm(us: int) -> str:
    seconds, micro = divmod(us, 1_000_000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours:02d}{rest // 60:02d}{rest % 60:02d}.{micro:06d}"


def _lowest(bound: str) -> str:
    """A lower bound without a zero fraction: "233000" sorts before "233000.000000", so a
    value stored without fraction would fall below a bound written with one."""
    return bound.removesuffix(".000000")
