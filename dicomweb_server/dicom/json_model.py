"""The DICOM JSON Model (PS3.18 Annex F) of a data set, built once at ingest.

Unlike pydicom's own `to_json_dict`, this never reads a value it will replace with a
BulkDataURI (so deferred values stay on disk), it knows the full path of a value inside
sequences, and one malformed value degrades to its text instead of failing the whole object.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable, Iterable
from typing import Any

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from dicomweb_server.dicom.scan import BINARY_VRS, tag_path

JsonDict = dict[str, Any]
BulkDataURIFactory = Callable[[str], str]

_STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DT", "LO", "LT", "SH", "ST", "TM", "UC", "UI", "UR", "UT"}
)
_INT_VRS = frozenset({"IS", "SL", "SS", "SV", "UL", "US", "UV"})
_FLOAT_VRS = frozenset({"DS", "FL", "FD"})


def dataset_to_json(
    ds: Dataset,
    bulk_paths: Iterable[str],
    bulk_data_uri: BulkDataURIFactory,
    *,
    extra_bulk: dict[str, str] | None = None,
) -> JsonDict:
    """Return the DICOM JSON object of `ds` (PS3.18 F.2).

    `bulk_paths` are the paths (see `scan.tag_path`) of values given as BulkDataURI;
    `bulk_data_uri(path)` mints the URI. `extra_bulk` maps paths of top-level elements the
    data set does not hold (Pixel Data read with stop_before_pixels) to their VR.
    """
    result = _convert(ds, (), frozenset(bulk_paths), bulk_data_uri)
    for path, vr in (extra_bulk or {}).items():
        result[path] = {"vr": vr, "BulkDataURI": bulk_data_uri(path)}
    return dict(sorted(result.items()))


def _convert(
    ds: Dataset,
    path: tuple[int | str, ...],
    bulk: frozenset[str],
    uri: BulkDataURIFactory,
) -> JsonDict:
    out: JsonDict = {}
    # keys(), not iteration: iterating a Dataset converts raw elements and reads deferred values.
    for base_tag in ds.keys():  # noqa: SIM118
        tag = int(base_tag)
        # Group lengths (gggg,0000) are retired and would be wrong after any coercion.
        if tag & 0xFFFF == 0 or tag >> 16 in (0x0000, 0x0002):
            continue
        key = f"{tag:08X}"
        raw = ds.get_item(tag)
        vr = str(raw.VR or "UN")
        here = (*path, tag)
        if vr in BINARY_VRS and tag_path(here) in bulk:
            out[key] = {"vr": vr, "BulkDataURI": uri(tag_path(here))}
            continue
        out[key] = _element(ds, tag, vr, raw, here, bulk, uri)
    return out


def _element(
    ds: Dataset,
    tag: int,
    vr: str,
    raw: RawDataElement | DataElement,
    path: tuple[int | str, ...],
    bulk: frozenset[str],
    uri: BulkDataURIFactory,
) -> JsonDict:
    try:
        elem = ds[tag]
    except (ValueError, TypeError, KeyError, LookupError, OverflowError):
        return _raw_text(vr, raw)
    vr = str(elem.VR)
    value = elem.value
    if vr == "SQ":
        items = [_convert(item, (*path, str(i)), bulk, uri) for i, item in enumerate(value or [])]
        return {"vr": vr, "Value": items} if items else {"vr": vr}
    if value is None or value == "" or value == b"":
        return {"vr": vr}
    if vr in BINARY_VRS:
        data = value if isinstance(value, bytes) else b"".join(value)
        return {"vr": vr, "InlineBinary": base64.b64encode(data).decode("ascii")}
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    try:
        converted = [_value(vr, v) for v in values]
    except (ValueError, TypeError, OverflowError):
        return _raw_text(vr, raw)
    return {"vr": vr, "Value": converted}


def _value(vr: str, v: Any) -> Any:
    if v is None or v == "":
        return None
    if vr == "PN":
        return _person_name(v)
    if vr in _STRING_VRS:
        return str(v)
    if vr in _INT_VRS:
        return int(v)
    if vr in _FLOAT_VRS:
        f = float(v)
        # JSON has no NaN or infinity: keep the text rather than lose the value.
        if not math.isfinite(f):
            return str(v)
        return int(f) if vr == "DS" and f.is_integer() and abs(f) < 2**53 else f
    if vr == "AT":
        return f"{int(v):08X}"
    return str(v)


def _person_name(v: Any) -> dict[str, str]:
    # PS3.18 F.2.2: a PN value is an object of up to three component groups.
    name = v if isinstance(v, PersonName) else PersonName(str(v))
    groups = list(name.components)
    out: dict[str, str] = {}
    for label, text in zip(("Alphabetic", "Ideographic", "Phonetic"), groups, strict=False):
        if text:
            out[label] = text
    return out


def _raw_text(vr: str, raw: RawDataElement | DataElement) -> JsonDict:
    """A value pydicom cannot convert: keep its characters so nothing is silently lost."""
    data = raw.value
    if isinstance(data, bytes):
        text = data.decode("latin-1").rstrip("\x00 ")
    else:
        text = "" if data is None else str(data)
    if not text:
        return {"vr": vr}
    return {"vr": vr, "Value": [part.strip() or None for part in text.split("\\")]}
