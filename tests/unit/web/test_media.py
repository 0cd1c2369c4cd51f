"""Accept parsing and negotiation (PS3.18 8.7)."""

from __future__ import annotations

import pytest

from dicomweb_server.dicom.media_types import choose_bytes, choose_instance_syntax
from dicomweb_server.services.errors import InvalidRequest, NotAcceptable
from dicomweb_server.web.media import (
    negotiate_bytes,
    negotiate_instances,
    negotiate_json,
    parse_accept,
)

IMPLICIT = "1.2.840.10008.1.2"
EXPLICIT = "1.2.840.10008.1.2.1"
JPEG = "1.2.840.10008.1.2.4.50"
JPEG_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS = "1.2.840.10008.1.2.4.80"
RLE = "1.2.840.10008.1.2.5"


def test_parse_orders_by_quality_and_keeps_quoted_parameters() -> None:
    ranges = parse_accept(
        'text/html;q=0.2, multipart/related; type="application/dicom"; '
        "transfer-syntax=*, application/json;q=0.5"
    )
    assert [r.type for r in ranges] == ["multipart/related", "application/json", "text/html"]
    assert ranges[0].params == {"type": "application/dicom", "transfer-syntax": "*"}


@pytest.mark.parametrize("header", ["text", "a/b; q=x", "a/b; =1", "/x"])
def test_malformed_accept(header: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_accept(header)


def test_negotiation() -> None:
    assert negotiate_json(None) == "application/dicom+json"
    assert negotiate_json('multipart/related; type="application/dicom+xml"') == (
        "application/dicom+xml"
    )
    with pytest.raises(NotAcceptable):
        negotiate_json("text/csv")


def _instance(accept: str | None, stored: str, single: bool = False) -> tuple[str, str | None]:
    choice = negotiate_instances(accept, single)
    return choice.container, choose_instance_syntax(choice.syntaxes, stored)


def test_instance_transfer_syntax_per_ps3_18_8_7_3_4() -> None:
    related = 'multipart/related; type="application/dicom"'
    # No parameter: Explicit VR Little Endian, except lossy data stays as stored.
    assert _instance(related, RLE) == ("multipart/related", EXPLICIT)
    assert _instance(None, RLE) == ("multipart/related", EXPLICIT)
    assert _instance(related, JPEG) == ("multipart/related", JPEG)
    assert _instance(f"{related}; transfer-syntax=*", RLE) == ("multipart/related", RLE)
    assert _instance(f"{related}; transfer-syntax={JPEG_LS}", EXPLICIT)[1] == JPEG_LS
    # Implicit VR and Big Endian are never sent; the next acceptable range is used.
    assert _instance(
        f"{related}; transfer-syntax={IMPLICIT}, {related}; transfer-syntax=*;q=0.5", RLE
    ) == ("multipart/related", RLE)
    assert _instance(f"{related}; transfer-syntax={IMPLICIT}", RLE)[1] is None
    # Single part only for one instance; zip for any.
    assert _instance("application/dicom", EXPLICIT, single=True)[0] == "application/dicom"
    with pytest.raises(NotAcceptable):
        negotiate_instances("application/dicom", single=False)
    assert _instance("application/zip", EXPLICIT)[0] == "application/zip"


def _frames(accept: str | None, stored: str) -> tuple[str, str] | None:
    chosen = choose_bytes(negotiate_bytes(accept, single=False), stored)
    return None if chosen is None else (chosen[0].media_type, chosen[1])


def test_frame_media_types_per_table_8_7_3_2() -> None:
    octets = "application/octet-stream"
    assert _frames(None, EXPLICIT) == (octets, EXPLICIT)
    assert _frames(None, RLE) == (octets, EXPLICIT)  # decoded: lossless
    assert _frames(None, JPEG) == (octets, JPEG)  # lossy stays as stored
    assert _frames(f'multipart/related; type="{octets}"; transfer-syntax=*', RLE) == (octets, RLE)
    assert _frames('multipart/related; type="image/jpeg"', JPEG) == ("image/jpeg", JPEG)
    # A compressed media type of another syntax: its default (JPEG Lossless SV1), transcoded.
    assert _frames('multipart/related; type="image/jpeg"', EXPLICIT) == ("image/jpeg", JPEG_SV1)
    assert _frames(f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG}', EXPLICIT) == (
        "image/jpeg",
        JPEG,
    )
    assert _frames('multipart/related; type="image/jls"', RLE) == ("image/jls", JPEG_LS)
    htj2k = "1.2.840.10008.1.2.4.201"
    assert _frames('multipart/related; type="image/jphc"', EXPLICIT) == ("image/jphc", htj2k)
    # A syntax that is not the media type's is not acceptable.
    assert _frames(f'multipart/related; type="image/jpeg"; transfer-syntax={JPEG_LS}', RLE) is None
    assert _frames("text/html", EXPLICIT) is None
