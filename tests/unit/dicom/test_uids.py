"""Fresh UIDs (issue 16's UID service): valid (PS3.5 9.1), at most 64 characters, no
component with a leading zero, under 2.25 (PS3.5 B.2) or the organisation's root."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dicomweb_server import cli
from dicomweb_server.dicom.errors import InvalidUID
from dicomweb_server.dicom.uids import MAX_UID_LENGTH, is_valid_uid, new_uid

_COMPONENT = st.one_of(st.just("0"), st.integers(1, 10**12).map(str))
ROOTS = (
    st.lists(_COMPONENT, min_size=1, max_size=12)
    .map(".".join)
    .filter(lambda r: len(r) <= 40 and r[0] != "0")
)


def test_without_a_root_uids_are_2_25_and_a_uuid() -> None:
    made = {new_uid() for _ in range(1000)}
    assert len(made) == 1000
    for uid in made:
        assert uid.startswith("2.25.") and is_valid_uid(uid) and len(uid) <= MAX_UID_LENGTH
        assert int(uid[5:]) < 2**128


@given(ROOTS)
def test_under_a_root_uids_fill_64_characters_and_stay_valid(root: str) -> None:
    uid = new_uid(root)
    assert uid.startswith(root + ".")
    assert is_valid_uid(uid)
    suffix = uid[len(root) + 1 :]
    assert suffix[0] != "0" and len(suffix) == min(MAX_UID_LENGTH - len(root) - 1, 39)


def test_a_root_too_long_or_invalid_is_refused() -> None:
    with pytest.raises(ValueError):
        new_uid("1." + "2" * 45)
    with pytest.raises(InvalidUID):
        new_uid("1.02.3")


def test_the_cli_prints_uids(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DICOMWEB_UID_ROOT", "1.2.826.0.1.3680043.10.1543")
    assert cli.main(["uid", "--count", "3"]) == 0
    lines = capsys.readouterr().out.split()
    assert len(set(lines)) == 3
    assert all(u.startswith("1.2.826.0.1.3680043.10.1543.") and is_valid_uid(u) for u in lines)
    assert cli.main(["uid", "--count", "0"]) == 2
