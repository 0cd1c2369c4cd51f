"""Whether a DA, TM or DT value names a moment that exists (PS3.5 Table 6.2-1): a month of 01
to 12, a day that the month has (20230230 does not exist, 2024 has a 29 February), hours 00
to 23, minutes 00 to 59, seconds 00 to 60 (a leap second). The shape of each value is
checked by its caller's pattern; this adds the calendar and the clock."""

from __future__ import annotations

import calendar
import re

# The shapes of PS3.5 Table 6.2-1 (a DT may carry its own UTC offset, &ZZXX). Matched whole
# (fullmatch: `$` would take a trailing newline) and ASCII (`\d` would take any script's
# digits).
SHAPES = {
    "DA": re.compile(r"\d{8}", re.ASCII),
    "TM": re.compile(r"\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?", re.ASCII),
    "DT": re.compile(
        r"\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?)?)?)?([+-](0\d|1[0-4])[0-5]\d)?",
        re.ASCII,
    ),
}
WRITTEN = {"DA": "YYYYMMDD", "TM": "HHMMSS.FFFFFF", "DT": "YYYYMMDDHHMMSS.FFFFFF&ZZXX"}


def _date_fault(year: int, month: int | None, day: int | None) -> str | None:
    if month is not None and not 1 <= month <= 12:
        return f"there is no month {month:02d}"
    if year < 1:
        return "there is no year 0000"
    if month is not None and day is not None:
        last = calendar.monthrange(year, month)[1]
        if not 1 <= day <= last:
            return f"{year:04d}-{month:02d} has no day {day:02d}"
    return None


def _time_fault(digits: str) -> str | None:
    hour = int(digits[0:2])
    if hour > 23:
        return f"there is no hour {hour:02d}"
    if len(digits) >= 4 and int(digits[2:4]) > 59:
        return f"there is no minute {digits[2:4]}"
    if len(digits) >= 6 and int(digits[4:6]) > 60:
        return f"there is no second {digits[4:6]}"
    return None


def _fields(value: str, *widths: int) -> list[int]:
    found, at = [], 0
    for width in widths:
        if len(value) < at + width:
            break
        found.append(int(value[at : at + width]))
        at += width
    return found


def temporal_fault(vr: str, value: str) -> str | None:
    """Why `value` is no valid `vr` value (its shape, then its calendar); None when it is."""
    if not SHAPES[vr].fullmatch(value):
        return f"not of the form {WRITTEN[vr]}"
    return calendar_fault(vr, value)


def calendar_fault(vr: str, value: str) -> str | None:
    """Why `value` (well formed for `vr`) names no real date or time; None when it does."""
    if vr == "DA":
        year, month, day = _fields(value, 4, 2, 2)
        return _date_fault(year, month, day)
    if vr == "TM":
        return _time_fault(value.split(".")[0])
    if vr == "DT":
        digits = value.split(".")[0]
        if len(value) > 5 and value[-5] in "+-":
            digits = value[:-5].split(".")[0]
        parts = _fields(digits, 4, 2, 2)
        given_month = parts[1] if len(parts) > 1 else None
        given_day = parts[2] if len(parts) > 2 else None
        fault = _date_fault(parts[0], given_month, given_day)
        if fault is None and len(digits) > 8:
            fault = _time_fault(digits[8:])
        return fault
    return None
