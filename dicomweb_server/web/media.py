"""Accept and Content-Type parsing, and what each resource's Accept asks (PS3.18 8.7).

The tables of media types and transfer syntaxes and the rules that choose between them are
in `dicom/media_types.py`; this module turns headers into the values they take.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from dicomweb_server.dicom import media_types
from dicomweb_server.dicom.media_types import (
    DICOM,
    DICOM_JSON,
    DICOM_XML,
    MULTIPART_RELATED,
    OCTET_STREAM,
    ZIP,
    BytesChoice,
)
from dicomweb_server.services.errors import InvalidRequest, NotAcceptable

_TOKEN = re.compile(r'\s*([^\s;,="]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^\s;,"]*))?\s*', re.ASCII)


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        return media_types.matches(self.type, media_type)


def parse_media_type(text: str) -> MediaRange:
    ranges = parse_accept(text)
    if len(ranges) != 1:
        raise InvalidRequest(f"malformed media type {text!r}")
    return ranges[0]


def parse_accept(header: str | None) -> list[MediaRange]:
    """Parse Accept (RFC 9110 12.5.1) into ranges, best first; parameters keep their case."""
    if header is None or not header.strip():
        return [MediaRange("*/*")]
    if len(header) > _CACHED_ACCEPT_LENGTH:
        return list(_parse_accept(header))
    # A viewer sends the same few Accept headers over and over.
    return list(_parse_accept_cached(header))


_CACHED_ACCEPT_LENGTH = 512


def _parse_accept(header: str) -> tuple[MediaRange, ...]:
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
            if match is None or not match.group(2):
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
    return tuple(r[2] for r in ranges)


_parse_accept_cached = functools.lru_cache(maxsize=256)(_parse_accept)


def _split_outside_quotes(text: str, separator: str) -> list[str]:
    if '"' not in text:
        return text.split(separator)
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


def accept_of(query: list[str], header: str | None) -> str | None:
    """What a request accepts (PS3.18 8.3.3.1): the `accept` query parameter when given (for
    hyperlinks, which cannot set the header), media types without wildcards, each compatible
    with a range of the Accept header field (406 otherwise); else the header."""
    if not query:
        return header
    value = ",".join(query)
    asked = parse_accept(value)
    if any("*" in m.type for m in asked):
        raise InvalidRequest("the accept query parameter takes media types, not wildcards")
    ranges = parse_accept(header)
    for media in asked:
        if not any(r.matches(media.type) for r in ranges):
            raise NotAcceptable(
                f"{media.type} of the accept query parameter is not in the Accept header field"
            )
    return value


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


@dataclass(frozen=True)
class InstancesChoice:
    """What an Accept header asks of instances: the container, then the transfer syntaxes
    acceptable in it, best first (None: no parameter, the default; "*": as stored)."""

    container: str  # MULTIPART_RELATED, DICOM (one instance, single part) or ZIP
    syntaxes: list[str | None]


def negotiate_instances(accept: str | None, single: bool) -> InstancesChoice:
    """PS3.18 8.7.3, Table 10.4.4-1: `multipart/related; type="application/dicom"`, the
    single-part `application/dicom` for one instance, or `application/zip` (PS3.18 8.7.5)."""
    chosen: list[tuple[str, str | None]] = []
    for media in parse_accept(accept):
        if media.matches(MULTIPART_RELATED) and _related_accepts(media, DICOM):
            kind = MULTIPART_RELATED
        elif single and media.matches(DICOM):
            kind = DICOM
        elif media.type == ZIP:
            kind = ZIP
        else:
            continue
        chosen.append((kind, media.params.get("transfer-syntax")))
    if not chosen:
        raise NotAcceptable(
            f'this resource is available as multipart/related; type="{DICOM}"'
            + (f" or {DICOM}" if single else "")
            + f" or {ZIP}; the request accepts {accept!r}"
        )
    container = chosen[0][0]
    return InstancesChoice(container, [ts for kind, ts in chosen if kind == container])


def negotiate_bytes(accept: str | None, single: bool) -> list[BytesChoice]:
    """Frames and bulk data (PS3.18 8.7.3.3, Table 8.7.3-2): every acceptable pair of part
    media type and transfer syntax, best first; single part only for one item."""
    out: list[BytesChoice] = []
    for media in parse_accept(accept):
        syntax = media.params.get("transfer-syntax")
        if media.matches(MULTIPART_RELATED):
            wanted = media.params.get("type", OCTET_STREAM).lower()
            out.append(BytesChoice(wanted, syntax, True))
        elif single and media.type != "*/*":
            out.append(BytesChoice(media.type, syntax, False))
        elif media.type == "*/*":
            out.append(BytesChoice(OCTET_STREAM, syntax, True))
    return out
