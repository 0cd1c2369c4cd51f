"""PS3.18 Table 10.5.3-1: the STOW-RS status is a function of the outcomes, row by row."""

from __future__ import annotations

import pytest

from dicomweb_server.services.store import InstanceOutcome, StoreResult, response_status

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
