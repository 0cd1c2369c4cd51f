"""Accept parsing and negotiation (PS3.18 8.7)."""

from __future__ import annotations

import pytest

from dicomweb_server.services.errors import InvalidRequest, NotAcceptable
from dicomweb_server.web.media import (
    negotiate_bytes,
    negotiate_dicom,
    negotiate_json,
    parse_accept,
)

EXPLICIT = "1.2.840.10008.1.2.1"
JPEG = "1.2.840.10008.1.2.4.50"


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
    negotiate_dicom('multipart/related; type="application/dicom"', {JPEG})
    negotiate_dicom(f'multipart/related; type="*/*"; transfer-syntax={JPEG}', {JPEG})
    with pytest.raises(NotAcceptable):
        negotiate_dicom(
            f'multipart/related; type="application/dicom"; transfer-syntax={EXPLICIT}', {JPEG}
        )
    assert negotiate_bytes(None, EXPLICIT) == "application/octet-stream"
    assert negotiate_bytes('multipart/related; type="image/jpeg"', JPEG) == "image/jpeg"
    with pytest.raises(NotAcceptable):
        negotiate_bytes('multipart/related; type="image/jpeg"', EXPLICIT)
