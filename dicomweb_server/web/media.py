"""Media types: parsing Accept and Content-Type, and negotiating per resource (PS3.18 8.7)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from dicomweb_server.services.errors import InvalidRequest, NotAcceptable

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"
OCTET_STREAM = "application/octet-stream"
MULTIPART_RELATED = "multipart/related"

# PS3.18 Table 8.7.3-2 (subset): the media type of each encapsulated transfer syntax's frames.
FRAME_MEDIA_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg",
    "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg",
    "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}

_TOKEN = re.compile(r'\s*([^\s;,="]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,"]*))?\s*')


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        if self.type == "*/*":
            return True
        main, _, sub = self.type.partition("/")
        if sub == "*":
            return media_type.startswith(main + "/")
        return self.type == media_type


def parse_media_type(text: str) -> MediaRange:
    ranges = parse_accept(text)
    if len(ranges) != 1:
        raise InvalidRequest(f"malformed media type {text!r}")
    return ranges[0]


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse Accept (RFC 9110 12.5.1) into ranges, best first; parameters keep their case."""
    if header is None or not header.strip():
        return [MediaRange("*/*")]
    ranges: list[tuple[float, int, MediaRange]] = []
    for position, item in enumerate(_split_outside_quotes(header, ",")):
        if not item.strip():
            continue
        pieces = _split_outside_quotes(item, ";")
        media_type = pieces[0].strip().lower()
        if media_type.count("/") != 1 or not all(media_type.split("/")):
            raise InvalidRequest(f"malformed media range {item.strip()!r} in Accept")
        params: dict[str, str] = {}
        q = 1.0
        for piece in pieces[1:]:
            if not piece.strip():
                continue
            match = _TOKEN.fullmatch(piece)
            if match is None or match.group(2) is None:
                raise InvalidRequest(f"malformed parameter {piece.strip()!r} in Accept")
            name, value = match.group(1).lower(), match.group(2)
            if value.startswith('"'):
                value = re.sub(r"\\(.)", r"\1", value[1:-1])
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    raise InvalidRequest(f"malformed q value {value!r} in Accept") from None
            else:
                params[name] = value
        if q > 0:
            ranges.append((q, position, MediaRange(media_type, params, q)))
    ranges.sort(key=lambda r: (-r[0], r[1]))
    return [r[2] for r in ranges]


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == separator and not quoted:
            out.append("".join(current))
            current = []
            continue
        current.append(ch)
    out.append("".join(current))
    return out


def _related_accepts(media: MediaRange, candidate: str) -> bool:
    """Whether the `type` parameter of a multipart/related range admits `candidate`.

    Clients send wildcards there too (`type="*/*"`); no parameter admits anything.
    """
    value = media.params.get("type")
    return value is None or MediaRange(value.lower()).matches(candidate)


def negotiate_json(accept: str | None) -> str:
    """QIDO-RS and metadata: `application/dicom+json`, or the Native DICOM Model as
    `multipart/related; type="application/dicom+xml"` (PS3.18 8.7.4), whichever ranks first."""
    for media in parse_accept(accept):
        if media.matches(DICOM_JSON) or media.type == "application/json":
            return DICOM_JSON
        if media.type == DICOM_XML or (
            media.type == MULTIPART_RELATED and media.params.get("type", "").lower() == DICOM_XML
        ):
            return DICOM_XML
    raise NotAcceptable(
        f'this resource is available as {DICOM_JSON} or {MULTIPART_RELATED}; type="{DICOM_XML}"'
        f"; the request accepts only {accept!r}"
    )


def negotiate_dicom(accept: str | None, stored_syntaxes: set[str]) -> None:
    """Instances: `multipart/related; type="application/dicom"` in their stored syntax.

    PS3.18 8.7.3.5: `transfer-syntax=*` asks for the stored syntax; transcoding to another
    syntax is not offered yet, so any other explicit syntax must equal the stored one.
    """
    for media in parse_accept(accept):
        if not media.matches(MULTIPART_RELATED) or not _related_accepts(media, DICOM):
            continue
        syntax = media.params.get("transfer-syntax")
        if syntax is None or syntax == "*" or stored_syntaxes == {syntax}:
            return
    stored = ", ".join(sorted(stored_syntaxes))
    raise NotAcceptable(
        f'this resource is available as multipart/related; type="{DICOM}" in its stored '
        f"transfer syntax ({stored}; ask with transfer-syntax=*); the request accepts "
        f"{accept!r}"
    )


def negotiate_bytes(accept: str | None, transfer_syntax: str) -> str:
    """Frames and bulk data: the part media type to send (PS3.18 8.7.3.3, Table 8.7.3-2)."""
    own = FRAME_MEDIA_TYPES.get(transfer_syntax)
    for media in parse_accept(accept):
        if not media.matches(MULTIPART_RELATED):
            continue
        syntax = media.params.get("transfer-syntax")
        if syntax not in (None, "*", transfer_syntax):
            continue
        if _related_accepts(media, OCTET_STREAM):
            return OCTET_STREAM
        if own is not None and _related_accepts(media, own):
            return own
    offered = OCTET_STREAM + (f" or {own}" if own else "")
    raise NotAcceptable(
        f'this resource is available as multipart/related; type="{offered}" in transfer '
        f"syntax {transfer_syntax}; the request accepts {accept!r}"
    )
