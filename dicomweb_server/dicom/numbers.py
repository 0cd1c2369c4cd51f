"""Every number a request carries, read one way.

ASCII digits only (`str.isdigit` and `\\d` also take superscript or Arabic-Indic digits,
which `int()` then refuses or reads), a bounded length (Python refuses `int()` of more than
4300 digits, and a long number costs time before it is refused), and a range checked here,
so a caller never meets a value it did not expect. Every refusal is InvalidNumber, which
the web answers with 400.
"""

from __future__ import annotations

import math
import re

from dicomweb_server.dicom.errors import InvalidNumber

# A whole number is at most 18 digits: past any count, size or offset we accept.
MAX_INTEGER_DIGITS = 18
# A decimal (window centre, region fraction...) is at most this many characters.
MAX_DECIMAL_CHARS = 32
MAX_LIST_ITEMS = 10_000

_INTEGER = re.compile(r"[0-9]{1,18}", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]{1,3})?", re.ASCII)


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def parse_integer(text: str, what: str, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
    """A whole number written in ASCII digits, no sign, from `minimum` to `maximum`."""
    if not _INTEGER.fullmatch(text):
        raise InvalidNumber(
            f"{what} {_shown(text)} is not a whole number (ASCII digits, at most "
            f"{MAX_INTEGER_DIGITS})"
        )
    value = int(text)
    if not minimum <= value <= maximum:
        raise InvalidNumber(f"{what} {value} is not from {minimum} to {maximum}")
    return value


def parse_integers(text: str, what: str, minimum: int = 0, maximum: int = 2**63 - 1) -> list[int]:
    """A comma-separated list of whole numbers, e.g. the frame list of PS3.18 10.4.1.1.3."""
    return [parse_integer(item, what, minimum, maximum) for item in _items(text, what)]


def parse_decimal(text: str, what: str, minimum: float = -1e15, maximum: float = 1e15) -> float:
    """A finite decimal number (`-12.5`, `3e2`), from `minimum` to `maximum`."""
    stripped = text.strip()
    if len(stripped) > MAX_DECIMAL_CHARS or not _DECIMAL.fullmatch(stripped):
        raise InvalidNumber(f"{what} {_shown(text)} is not a decimal number")
    value = float(stripped)
    if not math.isfinite(value) or not minimum <= value <= maximum:
        raise InvalidNumber(f"{what} {_shown(text)} is not from {minimum:g} to {maximum:g}")
    return value


def parse_decimals(
    text: str, what: str, minimum: float = -1e15, maximum: float = 1e15
) -> list[float]:
    """A comma-separated list of decimal numbers (window, viewport, region)."""
    return [parse_decimal(item, what, minimum, maximum) for item in _items(text, what)]


def _items(text: str, what: str) -> list[str]:
    items = text.split(",")
    if len(items) > MAX_LIST_ITEMS:
        raise InvalidNumber(f"{what} lists more than {MAX_LIST_ITEMS} numbers")
    return items
