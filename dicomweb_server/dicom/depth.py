"""One depth limit for every recursive structure a request carries.

pydicom, the JSON and XML models and our own converters recurse once per sequence level, so
a structure nested a few hundred levels deep would exhaust Python's stack. Each structure is
measured first, without recursion: DICOM JSON values, Native DICOM Model documents and key
paths here, sequences in an encoded object in `scan.check_nesting`.
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


def check_tree(root: object, children: str, what: str, levels_per_sequence: int) -> None:
    """An element tree (the Native DICOM Model, PS3.19 A.1) whose sequences each take
    `levels_per_sequence` levels of elements; `children` names the method listing them."""
    limit = levels_per_sequence * (MAX_DEPTH + 1) + 1
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            raise too_deep(what)
        stack.extend((child, depth + 1) for child in getattr(node, children)())
