"""The Native DICOM Model (PS3.19 A.1) to and from the DICOM JSON Model (PS3.18 Annex F).

Read for STOW-RS bodies of type `application/dicom+xml`; written for QIDO-RS and metadata
responses asked for in XML. The XML is parsed with defusedxml:
documents with a DTD, entity declarations or external references are refused, so neither
entity expansion nor external entities can be used against the server.
"""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, ParseError
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring
from pydicom.datadict import keyword_for_tag

from dicomweb_server.dicom import numbers
from dicomweb_server.dicom.depth import MAX_DEPTH
from dicomweb_server.dicom.errors import InvalidNumber, ObjectRejected
from dicomweb_server.dicom.store_status import CANNOT_UNDERSTAND
from dicomweb_server.dicom.vr import DECIMAL_VRS, INTEGER_VRS

_NAME_PARTS = ("FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix")


def native_to_json(document: bytes) -> dict[str, Any]:
    """One NativeDicomModel document as a DICOM JSON object; ObjectRejected if unreadable."""
    try:
        root = fromstring(document, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise ObjectRejected(
            CANNOT_UNDERSTAND, f"the XML is refused (DTDs and entities are not allowed): {exc}"
        ) from exc
    except ParseError as exc:
        raise ObjectRejected(CANNOT_UNDERSTAND, f"the XML cannot be parsed: {exc}") from exc
    if _local(root.tag) != "NativeDicomModel":
        raise ObjectRejected(CANNOT_UNDERSTAND, "the XML root is not NativeDicomModel")
    return _dataset(root, 0)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _numbered(element: Element, name: str) -> list[Element]:
    children = [c for c in element if _local(c.tag) == name]
    try:
        return sorted(
            children, key=lambda c: numbers.parse_integer(c.get("number") or "0", "number")
        )
    except InvalidNumber as exc:
        raise ObjectRejected(CANNOT_UNDERSTAND, f"an XML {name} number: {exc}") from None


def _dataset(element: Element, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise ObjectRejected(CANNOT_UNDERSTAND, "the XML nests sequences too deeply")
    out: dict[str, Any] = {}
    for attribute in element:
        if _local(attribute.tag) != "DicomAttribute":
            continue
        tag = (attribute.get("tag") or "").upper()
        vr = attribute.get("vr") or "UN"
        if len(tag) != 8 or any(c not in "0123456789ABCDEF" for c in tag):
            raise ObjectRejected(CANNOT_UNDERSTAND, f"DicomAttribute tag {tag!r} is not 8 hex")
        out[tag] = _attribute(attribute, vr, depth)
    return out


def _attribute(attribute: Element, vr: str, depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"vr": vr}
    bulk = [c for c in attribute if _local(c.tag) == "BulkData"]
    inline = [c for c in attribute if _local(c.tag) == "InlineBinary"]
    if bulk:
        value["BulkDataURI"] = bulk[0].get("uri") or ""
    elif inline:
        value["InlineBinary"] = (inline[0].text or "").strip()
    elif vr == "SQ":
        items = [_dataset(item, depth + 1) for item in _numbered(attribute, "Item")]
        if items:
            value["Value"] = items
    elif vr == "PN":
        names = [_person_name(p) for p in _numbered(attribute, "PersonName")]
        if names:
            value["Value"] = names
    else:
        values = [_value(vr, v.text) for v in _numbered(attribute, "Value")]
        if values:
            value["Value"] = values
    return value


def _value(vr: str, text: str | None) -> Any:
    if text is None or text == "":
        return None
    try:
        if vr in INTEGER_VRS:
            return int(text)
        if vr in DECIMAL_VRS:
            return float(text)
    except ValueError as exc:
        raise ObjectRejected(CANNOT_UNDERSTAND, f"{text!r} is not a valid {vr} value") from exc
    return text


def _person_name(element: Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for group in ("Alphabetic", "Ideographic", "Phonetic"):
        found = [c for c in element if _local(c.tag) == group]
        if not found:
            continue
        parts = {_local(c.tag): (c.text or "") for c in found[0]}
        text = "^".join(parts.get(name, "") for name in _NAME_PARTS).rstrip("^")
        if text:
            out[group] = text
    return out


def json_to_native(obj: dict[str, Any]) -> bytes:
    """One DICOM JSON object as a NativeDicomModel document (PS3.19 A.1), UTF-8."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xml:space="preserve">']
    _write_dataset(obj, out)
    out.append("</NativeDicomModel>")
    return "".join(out).encode("utf-8")


def _write_dataset(obj: dict[str, Any], out: list[str]) -> None:
    for tag, element in obj.items():
        vr = element.get("vr", "UN")
        keyword = keyword_for_tag(int(tag, 16)) if tag[4:] != "0000" else ""
        head = f'<DicomAttribute tag="{escape(tag)}" vr="{escape(vr)}"'
        if keyword:
            head += f' keyword="{keyword}"'
        out.append(head + ">")
        if "BulkDataURI" in element:
            out.append(f"<BulkData uri={quoteattr(str(element['BulkDataURI']))}/>")
        elif "InlineBinary" in element:
            out.append(f"<InlineBinary>{escape(str(element['InlineBinary']))}</InlineBinary>")
        for number, value in enumerate(element.get("Value", []), start=1):
            if vr == "SQ":
                out.append(f'<Item number="{number}">')
                _write_dataset(value or {}, out)
                out.append("</Item>")
            elif vr == "PN":
                out.append(f'<PersonName number="{number}">')
                for group, text in (value or {}).items():
                    out.append(f"<{group}>")
                    for part, piece in zip(_NAME_PARTS, str(text).split("^"), strict=False):
                        if piece:
                            out.append(f"<{part}>{escape(piece)}</{part}>")
                    out.append(f"</{group}>")
                out.append("</PersonName>")
            elif value is None:
                out.append(f'<Value number="{number}"/>')
            else:
                out.append(f'<Value number="{number}">{escape(_text(value))}</Value>')
        out.append("</DicomAttribute>")


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
