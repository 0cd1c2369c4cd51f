"""The Warning texts of PS3.18 chapter 11, one test per row of each transaction's table, word
for word as the standard prints them (2026a): Create 11.4.3.2, Update 11.6.3.2, Change State
11.7.3.2, Request Cancellation 11.8.3.2."""

from __future__ import annotations

import pytest

from dicomweb_server.dicom import ups

ROWS = [
    ("11.4.3.2", "The Workitem was created with modifications.", ups.CREATED_MODIFIED_TEXT),
    ("11.6.3.2", "The Workitem was updated with modifications.", ups.UPDATED_MODIFIED_TEXT),
    (
        "11.6.3.2",
        "Requested optional Attributes are not supported.",
        ups.OPTIONAL_NOT_SUPPORTED_TEXT,
    ),
    ("11.6.3.2", "The target URI did not reference a claimed Workitem.", ups.UPDATE_UNCLAIMED_TEXT),
    (
        "11.6.3.2",
        "The submitted request is inconsistent with the current state of the Workitem.",
        ups.UPDATE_INCONSISTENT_TEXT,
    ),
    (
        "11.7.3.2",
        "The UPS is already in the requested state of CANCELED.",
        ups.ALREADY_CANCELED_TEXT,
    ),
    (
        "11.7.3.2",
        "The UPS is already in the requested state of COMPLETED.",
        ups.ALREADY_COMPLETED_TEXT,
    ),
    ("11.7.3.2", "The Transaction UID is missing.", ups.MISSING_UID_TEXT),
    ("11.7.3.2", "The Transaction UID is incorrect.", ups.INCORRECT_UID_TEXT),
    (
        "11.7.3.2",
        "The submitted request is inconsistent with the state of the UPS Instance.",
        ups.INCONSISTENT_STATE_TEXT,
    ),
    (
        "11.8.3.2",
        "The UPS is already in the requested state of CANCELED.",
        ups.ALREADY_CANCELED_TEXT,
    ),
    ("11.8.3.2", "The UPS is already COMPLETED.", ups.CANCEL_COMPLETED_TEXT),
    ("11.8.3.2", "Performer chooses not to cancel.", ups.PERFORMER_WILL_NOT_CANCEL_TEXT),
    ("11.8.3.2", "The performer cannot be contacted.", ups.PERFORMER_UNREACHABLE_TEXT),
]


@pytest.mark.parametrize(("section", "standard", "ours"), ROWS, ids=[r[1][:40] for r in ROWS])
def test_warning_text_is_the_standards(section: str, standard: str, ours: str) -> None:
    assert ours == standard, section


def test_request_cancellation_answers_each_state_with_its_text() -> None:
    # PS3.18 11.8.3: COMPLETED is a conflict with its own text, CANCELED a warning.
    completed = ups.cancel_request_outcome(ups.COMPLETED)
    assert (completed.http_status, completed.dicom_status) == (409, 0xC311)
    assert completed.warning == "The UPS is already COMPLETED."
    canceled = ups.cancel_request_outcome(ups.CANCELED)
    assert (canceled.http_status, canceled.dicom_status) == (202, 0xB304)
    assert canceled.warning == "The UPS is already in the requested state of CANCELED."


def test_a_new_workitem_may_carry_an_empty_transaction_uid() -> None:
    # PS3.4 Table CC.2.5-3: Transaction UID is 2/2 on N-CREATE and shall be empty.
    workitem = {
        "00741200": {"vr": "CS", "Value": ["LOW"]},
        "00081195": {"vr": "UI"},
    }
    faults = ups.missing_for_create(workitem)
    assert not any("Transaction UID" in f for f in faults)
    valued = dict(workitem, **{"00081195": {"vr": "UI", "Value": ["1.2.3"]}})
    assert any("TransactionUID (0008,1195)" in f for f in ups.missing_for_create(valued))
    kept = ups.created(workitem, "1.2.3.4", 0.0)
    assert "00081195" not in kept
