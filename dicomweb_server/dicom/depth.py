"""One depth limit for every recursive structure a request carries.

pydicom, the JSON and XML models and our own converters recurse once per sequence level, so
a structure nested a few hundred levels deep would exhaust Python's stack. Each structure is
measured against MAX_DEPTH before anything recurses past it: DICOM JSON values and key paths
here, without recursion; sequences in an encoded object in `scan.check_nesting`; the Native
DICOM Model level by level as `xml_model` reads it (the XML parser itself does not recurse).
Real objects nest a handful of levels (structured reports about ten).
"""

from __future__ import annotations

from collections.abc import Iterable

from dicomweb_server.dicom.errors import NestedTooDeeply

# Sequences inside sequences: the most any request may nest.
MAX_DEPTH = 32


def too_deep(what: str) -> NestedTooDeeply:
    return NestedTooDeeply(f"{what} is nested more than {MAX_DEPTH} sequences deep")


def check_path(parts: list[str], what: str) -> None:
    """A dotted key path (PS3.18 8.3.4.1) names at most MAX_DEPTH sequences."""
    if len(parts) > MAX_DEPTH + 1:
        raise too_deep(what)


def check_json(value: object, what: str = "the DICOM JSON") -> None:
    """DICOM JSON (PS3.18 F.2): each sequence level is an element object, its Value array and
    an item object, so containers may nest three times MAX_DEPTH (plus the outer array)."""
    limit = 3 * (MAX_DEPTH + 1) + 1
    stack: list[tuple[Iterable[object], int]] = [([value], 0)]
    while stack:
        children, depth = stack.pop()
        for child in children:
            if isinstance(child, dict):
                inner: Iterable[object] = child.values()
            elif isinstance(child, list):
                inner = child
            else:
                continue
            if depth + 1 > limit:
                raise too_deep(what)
            stack.append((inner, depth + 1))
