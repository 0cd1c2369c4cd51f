"""PS3.18 Table 10.5.3-1: the STOW-RS status is a function of the outcomes, row by row."""

from __future__ import annotations

import pytest

from dicomweb_server.dicom.store_status import (
    InstanceOutcome,
    StoreResult,
    response_dataset,
    response_status,
)

OK = InstanceOutcome("1.2", "1.2.1")
WARNED = InstanceOutcome("1.2", "1.2.2", warning_reason=0xB000)
FAILED = InstanceOutcome("1.2", "1.2.3", failure_reason=0xC000, message="bad")


@pytest.mark.parametrize(
    ("outcomes", "error", "status"),
    [
        ([OK], None, 200),
        ([OK, OK], None, 200),
        ([OK, FAILED], None, 202),
        ([WARNED], None, 202),
        ([OK], "body cut", 202),
        ([FAILED], None, 409),
        ([FAILED, FAILED], None, 409),
        ([], "body cut", 400),
        ([FAILED], "body cut", 400),
        ([], None, 400),
    ],
)
def test_status(outcomes: list[InstanceOutcome], error: str | None, status: int) -> None:
    assert response_status(StoreResult(outcomes, error)) == status


def test_dimse_status_is_the_reason_code() -> None:
    """A C-STORE answers each instance with the same code (PS3.4 B.2.3)."""
    assert (OK.status, WARNED.status, FAILED.status) == (0x0000, 0xB000, 0xC000)


def test_response_dataset_names_every_outcome() -> None:
    stored = InstanceOutcome("1.2", "1.2.1", "9.1", "9.1.1")
    warned = InstanceOutcome("1.2", "1.2.2", "9.1", "9.1.1", warning_reason=0xB00E, message="w")
    result = StoreResult([stored, warned, FAILED], "body cut")
    body = response_dataset(
        result, lambda s: f"u/{s}", lambda s, se, i: f"u/{s}/{se}/{i}", study_uid=None
    )
    assert body["00081190"]["Value"] == ["u/9.1"]
    referenced = body["00081199"]["Value"]
    assert [item["00081190"]["Value"] for item in referenced] == [
        ["u/9.1/9.1.1/1.2.1"],
        ["u/9.1/9.1.1/1.2.2"],
    ]
    assert "00081196" not in referenced[0] and referenced[1]["00081196"]["Value"] == [0xB00E]
    failed = body["00081198"]["Value"]
    assert [item["00081197"]["Value"] for item in failed] == [[0xC000], [0xC000]]
    assert failed[1]["00000902"]["Value"] == ["body cut"]
