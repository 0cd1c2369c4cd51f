"""The parsers every request value goes through: numbers, depths, DICOM JSON values, texts.

Hypothesis feeds them random numbers, depths and geometries: each answers a value or its
own refusal (InvalidValue, ObjectRejected), never another exception.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from dicomweb_server.dicom import depth, numbers, render
from dicomweb_server.dicom.errors import (
    InvalidNumber,
    InvalidValue,
    NestedTooDeeply,
    ObjectRejected,
    backend_text,
    client_text,
)
from dicomweb_server.dicom.json_model import validate_json
from dicomweb_server.dicom.matching import parse_attribute_path, parse_search
from dicomweb_server.dicom.scan import check_nesting

DIGITS = st.text(alphabet=st.characters(categories=("Nd", "No")), min_size=1, max_size=30)
ANY_TEXT = st.text(max_size=60)


@given(st.one_of(DIGITS, ANY_TEXT, st.integers().map(str)))
def test_integers_are_ascii_bounded_and_in_range(text: str) -> None:
    try:
        value = numbers.parse_integer(text, "n", 1, 10**9)
    except InvalidNumber:
        return
    assert text.isascii() and 1 <= value <= 10**9 and str(value) == text.lstrip("0")


@given(st.one_of(DIGITS, ANY_TEXT, st.floats().map(str), st.integers().map(str)))
def test_decimals_are_finite_and_in_range(text: str) -> None:
    try:
        value = numbers.parse_decimal(text, "x", -100, 100)
    except InvalidNumber:
        return
    assert -100 <= value <= 100


@pytest.mark.parametrize("text", ["\u00b3", "\u0661", "9" * 5000, "1" * 19, "-1", "+1", "1 "])
def test_integers_refused(text: str) -> None:
    with pytest.raises(InvalidNumber):
        numbers.parse_integer(text, "n")


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "1e999", "1" * 40, "\u0661.5", "1,5"])
def test_decimals_refused(text: str) -> None:
    with pytest.raises(InvalidNumber):
        numbers.parse_decimal(text, "x")


@given(st.lists(st.tuples(ANY_TEXT, ANY_TEXT), max_size=5))
def test_search_parameters_parse_or_are_refused(params: list[tuple[str, str]]) -> None:
    with contextlib.suppress(InvalidValue):
        parse_search(params)


@given(st.integers(min_value=1, max_value=200))
def test_key_paths_of_any_depth(length: int) -> None:
    path = ".".join(["00081115"] * (length - 1) + ["00080018"])
    if length > depth.MAX_DEPTH + 1:
        with pytest.raises(NestedTooDeeply):
            parse_attribute_path(path)
    else:
        assert len(parse_attribute_path(path)) == length


@given(st.integers(min_value=0, max_value=400))
def test_json_of_any_depth(levels: int) -> None:
    item: dict[str, object] = {}
    for _ in range(levels):
        item = {"0040A730": {"vr": "SQ", "Value": [item]}}
    try:
        depth.check_json([item])
    except NestedTooDeeply:
        assert levels > depth.MAX_DEPTH
        return
    assert levels <= depth.MAX_DEPTH + 1
    validate_json(item)


_SQ = b"\x40\x00\x30\xa7SQ\x00\x00\xff\xff\xff\xff"
_ITEM = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
_END = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00\xfe\xff\xdd\xe0\x00\x00\x00\x00"


@given(st.integers(min_value=0, max_value=400), st.booleans())
def test_encoded_sequences_of_any_depth(levels: int, cut: bool) -> None:
    data = (_SQ + _ITEM) * levels + _END * levels
    if cut:
        data = data[: len(data) // 2 + 3]
    try:
        check_nesting(data, 0, implicit=False, little=True)
    except ObjectRejected:
        assert levels > depth.MAX_DEPTH
        return
    # Cut short, a deep structure may end before it is too deep.
    assert levels <= depth.MAX_DEPTH or cut


@given(st.binary(max_size=300), st.booleans(), st.booleans())
def test_nesting_check_of_any_bytes(data: bytes, implicit: bool, little: bool) -> None:
    with contextlib.suppress(ObjectRejected):
        check_nesting(data, 0, implicit, little)


@pytest.mark.parametrize(
    "element",
    [
        {"vr": "US", "Value": [-5]},
        {"vr": "US", "Value": [True]},
        {"vr": "SS", "Value": [2**15]},
        {"vr": "UL", "Value": [2**32]},
        {"vr": "FD", "Value": ["1.5"]},
        {"vr": "IS", "Value": ["1.5"]},
        {"vr": "DS", "Value": ["1,5"]},
        {"vr": "XX", "Value": []},
        {"vr": "PN", "Value": [{"Other": "x"}]},
        {"vr": "CS", "Value": "A"},
        {"vr": "CS", "Value": [1]},
        {"vr": "OB", "Value": [1]},
        {"vr": "LO", "InlineBinary": "AAAA"},
        {"vr": "OB", "InlineBinary": "***"},
        {"vr": "UI", "Value": ["1.2.3\n"]},
        {"vr": "AT", "Value": ["0010001"]},
        {"vr": "SQ", "Value": ["not an item"]},
    ],
)
def test_json_values_against_their_vr(element: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        validate_json({"00100020": element})


def test_json_values_that_pass() -> None:
    validate_json(
        {
            "00280010": {"vr": "US", "Value": [512]},
            "00200013": {"vr": "IS", "Value": [3, "4"]},
            "00281050": {"vr": "DS", "Value": [40.5, "-1.5e2", None]},
            "00100010": {"vr": "PN", "Value": [{"Alphabetic": "Doe^J"}]},
            "7FE00010": {"vr": "OB or OW", "BulkDataURI": "http://x/1"},
            "00080018": {"vr": "UI", "Value": ["1.2.840.0123.1"]},
            "00081115": {"vr": "SQ", "Value": [{"00081150": {"vr": "UI", "Value": ["1.2"]}}]},
        }
    )


@given(
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=1, max_value=40),
    st.tuples(*[st.floats(-50, 100, allow_nan=False)] * 4),
)
def test_source_regions_never_crop_to_nothing(
    width: int, height: int, box: tuple[float, float, float, float]
) -> None:
    image = Image.new("L", (width, height))
    try:
        cropped = render._crop(image, box, "region")
    except InvalidValue:
        return
    assert cropped.size[0] >= 1 and cropped.size[1] >= 1


def test_texts_shown_to_clients_and_logs() -> None:
    traced = "With tag (0008,0018) got exception: bad\nTraceback (most recent call last):\n  x"
    assert client_text(traced) == "With tag (0008,0018) got exception: bad"
    assert client_text("No such file: '/srv/data/spool/part-1.dcm'") == "No such file: '<file>'"
    assert "<url>" in client_text("endpoint http://10.0.0.5:9000/bucket/key failed")
    assert len(client_text("x" * 5000)) <= 1024
    uid = "SOP Instance 1.2.826.0.1.3680043.8.498.1 of study 1.2.840.10008"
    assert client_text(uid) == uid
    db = 'connection to server at "10.1.2.3", port 5432 failed: refused'
    assert backend_text(db) == 'connection to server at "<host>", port <port> failed: refused'
