"""Unified Procedure Steps (PS3.4 Annex CC) as pure rules on DICOM JSON workitems.

- `change_state`: the state machine of PS3.4 Table CC.1.1-2 for Change State (N-ACTION
  "Change UPS State"), with the statuses of CC.2.1.3 and the HTTP answers of PS3.18 11.7.3.
- `update_outcome` and `cancel_request_outcome`: the same table's N-SET and "Request UPS
  Cancel" rows (PS3.18 11.6.3, 11.8.3).
- `missing_for_create` / `missing_for_final`: the Type 1 and Type 2 rows of the N-CREATE
  and Final State columns of PS3.4 Table CC.2.5-3.
- `event_report`: the N-EVENT-REPORT data sets of CC.2.4 (PS3.18 11.13, 8.10.5).

A workitem is its DICOM JSON object (tag keys of 8 hex digits). Nothing here reads a clock or
a database: the caller passes the time and the stored workitem.
"""

from __future__ import annotations

import copy
import datetime
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from dicomweb_server.dicom.attributes import keyword_of, tag_of_keyword, vr_of
from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.matching import Key, parse_search

JsonDict = dict[str, Any]


def _key(keyword: str) -> str:
    tag = tag_of_keyword(keyword)
    assert tag is not None, keyword
    return f"{tag:08X}"


SOP_CLASS_UID = _key("SOPClassUID")
SOP_INSTANCE_UID = _key("SOPInstanceUID")
TRANSACTION_UID = _key("TransactionUID")
PROCEDURE_STEP_STATE = _key("ProcedureStepState")
INPUT_READINESS_STATE = _key("InputReadinessState")
PRIORITY = _key("ScheduledProcedureStepPriority")
PROCEDURE_STEP_LABEL = _key("ProcedureStepLabel")
WORKLIST_LABEL = _key("WorklistLabel")
START_DATETIME = _key("ScheduledProcedureStepStartDateTime")
MODIFICATION_DATETIME = _key("ScheduledProcedureStepModificationDateTime")
PROGRESS_SEQUENCE = _key("ProcedureStepProgressInformationSequence")
PERFORMED_SEQUENCE = _key("UnifiedProcedureStepPerformedProcedureSequence")
CANCELLATION_DATETIME = _key("ProcedureStepCancellationDateTime")
DISCONTINUATION_REASONS = _key("ProcedureStepDiscontinuationReasonCodeSequence")
REASON_FOR_CANCELLATION = _key("ReasonForCancellation")
COMMUNICATIONS_URI_SEQUENCE = _key("ProcedureStepCommunicationsURISequence")
CONTACT_URI = _key("ContactURI")
CONTACT_DISPLAY_NAME = _key("ContactDisplayName")
REQUESTING_AE = _key("RequestingAE")
STATION_NAMES = _key("ScheduledStationNameCodeSequence")
HUMAN_PERFORMERS = _key("ScheduledHumanPerformersSequence")
SPECIFIC_CHARACTER_SET = _key("SpecificCharacterSet")

# PS3.4 CC.3.1 and Table B.5-1.
UPS_PUSH_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.1"
UPS_EVENT_SOP_CLASS = "1.2.840.10008.5.1.4.34.6.4"
# PS3.4 CC.3.1: the well-known instances a global subscription is made on (PS3.18 11.10).
GLOBAL_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5"
FILTERED_SUBSCRIPTION = "1.2.840.10008.5.1.4.34.5.1"

SCHEDULED = "SCHEDULED"
IN_PROGRESS = "IN PROGRESS"
COMPLETED = "COMPLETED"
CANCELED = "CANCELED"
STATES = (SCHEDULED, IN_PROGRESS, COMPLETED, CANCELED)
FINAL_STATES = frozenset({COMPLETED, CANCELED})
PRIORITIES = frozenset({"HIGH", "MEDIUM", "LOW"})  # PS3.3 C.30.1 (0074,1200)
READINESS = frozenset({"READY", "UNAVAILABLE", "INCOMPLETE"})  # PS3.3 C.30.1 (0040,4041)

# The reason an SCP gives when it cancels and the requester gave none: DCM 110513.
UNSPECIFIED_DISCONTINUATION = {
    "00080100": {"vr": "SH", "Value": ["110513"]},
    "00080102": {"vr": "SH", "Value": ["DCM"]},
    "00080104": {"vr": "LO", "Value": ["Discontinued for unspecified reason"]},
}


class EventType(IntEnum):
    """Event Type ID (0000,1002) of a UPS event report (PS3.4 Table CC.2.4-1)."""

    STATE_REPORT = 1
    CANCEL_REQUESTED = 2
    PROGRESS_REPORT = 3
    SCP_STATUS_CHANGE = 4
    ASSIGNED = 5


# PS3.4 CC.2.1.3 / CC.2.2.4 / CC.2.6 statuses (the ones the state table names).
SUCCESS = 0x0000
ALREADY_CANCELED = 0xB304  # warning: the UPS is already in the requested state of CANCELED
ALREADY_COMPLETED = 0xB306  # warning: ... of COMPLETED
MAY_NO_LONGER_BE_UPDATED = 0xC300
WRONG_TRANSACTION_UID = 0xC301  # the correct Transaction UID was not provided
ALREADY_IN_PROGRESS = 0xC302
ONLY_SCHEDULED_BY_CREATE = 0xC303  # may only become SCHEDULED via N-CREATE
FINAL_STATE_NOT_MET = 0xC304
NO_SUCH_UPS = 0xC307
NOT_YET_IN_PROGRESS = 0xC310
ALREADY_COMPLETED_FAILURE = 0xC311
DUPLICATE_INSTANCE = 0x0111
MISSING_ATTRIBUTE = 0x0120
INVALID_ATTRIBUTE_VALUE = 0x0106

# The Warning texts of PS3.18 chapter 11, word for word: Create 11.4.3.2, Update 11.6.3.2,
# Change State 11.7.3.2, Request Cancellation 11.8.3.2.
ALREADY_CANCELED_TEXT = "The UPS is already in the requested state of CANCELED."
ALREADY_COMPLETED_TEXT = "The UPS is already in the requested state of COMPLETED."
MISSING_UID_TEXT = "The Transaction UID is missing."
INCORRECT_UID_TEXT = "The Transaction UID is incorrect."
INCONSISTENT_STATE_TEXT = (
    "The submitted request is inconsistent with the state of the UPS Instance."
)
UPDATE_INCONSISTENT_TEXT = (
    "The submitted request is inconsistent with the current state of the Workitem."
)
UPDATE_UNCLAIMED_TEXT = "The target URI did not reference a claimed Workitem."
CREATED_MODIFIED_TEXT = "The Workitem was created with modifications."
UPDATED_MODIFIED_TEXT = "The Workitem was updated with modifications."
OPTIONAL_NOT_SUPPORTED_TEXT = "Requested optional Attributes are not supported."
CANCEL_COMPLETED_TEXT = "The UPS is already COMPLETED."
# The two other refusals of 11.8.3.2 belong to an origin server that performs the workitem
# itself; this one never does (its performers are clients), so it never sends them.
PERFORMER_WILL_NOT_CANCEL_TEXT = "Performer chooses not to cancel."
PERFORMER_UNREACHABLE_TEXT = "The performer cannot be contacted."


@dataclass(frozen=True)
class Outcome:
    """What a request on a workitem comes to: the DICOM status, the HTTP status, the Warning
    text (PS3.18 8.4, `299`) and the state the workitem moves to (None: it stays)."""

    dicom_status: int
    http_status: int
    warning: str | None = None
    next_state: str | None = None
    reason: str = ""

    @property
    def refused(self) -> bool:
        return self.dicom_status >= 0xC000 or self.dicom_status in (
            DUPLICATE_INSTANCE,
            MISSING_ATTRIBUTE,
            INVALID_ATTRIBUTE_VALUE,
        )


def _refused(status: int, http: int, warning: str, reason: str) -> Outcome:
    return Outcome(status, http, warning, None, reason)


def change_state(
    current: str, requested: str, given_uid: str | None, held_uid: str | None
) -> Outcome:
    """PS3.4 Table CC.1.1-2, the "N-ACTION to Change State" rows, for a workitem in state
    `current` holding the Transaction UID `held_uid`, asked to move to `requested` with
    `given_uid`. The final-state requirements are checked apart (`missing_for_final`).

    HTTP answers (PS3.18 11.7.3.1): a missing or wrong Transaction UID, 400; a request the
    current state does not allow, 409; the warnings of 11.7.3.2 with each.
    """
    if requested == SCHEDULED:
        return _refused(
            ONLY_SCHEDULED_BY_CREATE,
            409,
            INCONSISTENT_STATE_TEXT,
            "a workitem becomes SCHEDULED only when it is created",
        )
    if requested not in (IN_PROGRESS, COMPLETED, CANCELED):
        return _refused(
            INVALID_ATTRIBUTE_VALUE,
            400,
            INCONSISTENT_STATE_TEXT,
            "Procedure Step State (0074,1000) must be IN PROGRESS, COMPLETED or CANCELED",
        )
    if not given_uid:
        return _refused(
            WRONG_TRANSACTION_UID, 400, MISSING_UID_TEXT, "Transaction UID (0008,1195) is missing"
        )
    # A SCHEDULED workitem holds no Transaction UID yet: the claim brings one, and for any
    # other request the state is what refuses it. Otherwise the UID must be the claim's.
    if current != SCHEDULED and requested != IN_PROGRESS and given_uid != held_uid:
        return _refused(
            WRONG_TRANSACTION_UID,
            400,
            INCORRECT_UID_TEXT,
            "the Transaction UID is not the one the workitem was claimed with",
        )
    return _STATE_TABLE[(requested, current)]


def _inconsistent(status: int, reason: str) -> Outcome:
    return _refused(status, 409, INCONSISTENT_STATE_TEXT, reason)


# (requested state, current state) -> outcome, given the correct Transaction UID.
_STATE_TABLE: dict[tuple[str, str], Outcome] = {
    (IN_PROGRESS, SCHEDULED): Outcome(SUCCESS, 200, None, IN_PROGRESS),
    (IN_PROGRESS, IN_PROGRESS): _inconsistent(
        ALREADY_IN_PROGRESS, "the workitem is already IN PROGRESS"
    ),
    (IN_PROGRESS, COMPLETED): _inconsistent(MAY_NO_LONGER_BE_UPDATED, "the workitem is COMPLETED"),
    (IN_PROGRESS, CANCELED): _inconsistent(MAY_NO_LONGER_BE_UPDATED, "the workitem is CANCELED"),
    (COMPLETED, SCHEDULED): _inconsistent(
        NOT_YET_IN_PROGRESS, "the workitem is SCHEDULED: claim it (IN PROGRESS) first"
    ),
    (COMPLETED, IN_PROGRESS): Outcome(SUCCESS, 200, None, COMPLETED),
    (COMPLETED, COMPLETED): Outcome(ALREADY_COMPLETED, 200, ALREADY_COMPLETED_TEXT),
    (COMPLETED, CANCELED): _inconsistent(MAY_NO_LONGER_BE_UPDATED, "the workitem is CANCELED"),
    (CANCELED, SCHEDULED): _inconsistent(
        NOT_YET_IN_PROGRESS,
        "the workitem is SCHEDULED: claim it first, or request its cancellation",
    ),
    (CANCELED, IN_PROGRESS): Outcome(SUCCESS, 200, None, CANCELED),
    (CANCELED, COMPLETED): _inconsistent(MAY_NO_LONGER_BE_UPDATED, "the workitem is COMPLETED"),
    (CANCELED, CANCELED): Outcome(ALREADY_CANCELED, 200, ALREADY_CANCELED_TEXT),
}


def update_outcome(current: str, given_uid: str | None, held_uid: str | None) -> Outcome:
    """PS3.4 Table CC.1.1-2, the N-SET row (PS3.18 11.6): a SCHEDULED workitem is updated
    without a Transaction UID, an IN PROGRESS one with the UID it was claimed with, a
    COMPLETED or CANCELED one never (400, 11.6.2)."""
    if current in FINAL_STATES:
        return _refused(
            MAY_NO_LONGER_BE_UPDATED,
            400,
            UPDATE_INCONSISTENT_TEXT,
            f"the workitem is {current} and may no longer be updated",
        )
    if current == SCHEDULED:
        if given_uid:
            return _refused(
                NOT_YET_IN_PROGRESS,
                409,
                UPDATE_INCONSISTENT_TEXT,
                "the workitem is SCHEDULED: it holds no Transaction UID yet",
            )
        return Outcome(SUCCESS, 200)
    if not given_uid:
        return _refused(
            WRONG_TRANSACTION_UID,
            400,
            UPDATE_UNCLAIMED_TEXT,
            "the workitem is IN PROGRESS: give its Transaction UID (?transaction=...)",
        )
    if given_uid != held_uid:
        return _refused(
            WRONG_TRANSACTION_UID,
            400,
            UPDATE_UNCLAIMED_TEXT,
            "the Transaction UID is not the one the workitem was claimed with",
        )
    return Outcome(SUCCESS, 200)


def cancel_request_outcome(current: str) -> Outcome:
    """PS3.4 Table CC.1.1-2, the "Request UPS Cancel" row (PS3.18 11.8.3): a SCHEDULED
    workitem is canceled by the server itself, an IN PROGRESS one is asked of its performer
    (Cancel Requested event), a CANCELED one answers the warning, a COMPLETED one 409."""
    if current == SCHEDULED:
        return Outcome(SUCCESS, 202, None, CANCELED)
    if current == IN_PROGRESS:
        return Outcome(SUCCESS, 202)
    if current == CANCELED:
        return Outcome(ALREADY_CANCELED, 202, ALREADY_CANCELED_TEXT)
    return _refused(
        ALREADY_COMPLETED_FAILURE, 409, CANCEL_COMPLETED_TEXT, "the workitem is COMPLETED"
    )


# --- attribute requirements (PS3.4 Table CC.2.5-3) -------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One row: the attribute, its type (1: present with a value, 2: present), and the rows
    of each of its items."""

    keyword: str
    type: int
    items: tuple[Requirement, ...] = ()

    @property
    def key(self) -> str:
        return _key(self.keyword)


def _code(keyword: str, type_: int) -> Requirement:
    # A Code Sequence's items (PS3.3 Table 8.8-1): a value, its scheme, its meaning.
    return Requirement(
        keyword,
        type_,
        (Requirement("CodeMeaning", 1),),
    )


# The N-CREATE column: Type 1 and Type 2 rows (1C/2C rows, whose condition depends on the
# use, and Type 3 rows are not checked).
CREATE_REQUIREMENTS: tuple[Requirement, ...] = (
    # Unified Procedure Step Scheduled Procedure Information Module
    Requirement("ScheduledProcedureStepPriority", 1),
    Requirement("ProcedureStepLabel", 1),
    Requirement("WorklistLabel", 2),
    _code("ScheduledStationNameCodeSequence", 2),
    _code("ScheduledStationClassCodeSequence", 2),
    _code("ScheduledStationGeographicLocationCodeSequence", 2),
    Requirement("ScheduledProcedureStepStartDateTime", 1),
    _code("ScheduledWorkitemCodeSequence", 2),
    Requirement("InputReadinessState", 1),
    Requirement("InputInformationSequence", 2),
    # Unified Procedure Step Relationship Module
    Requirement("PatientName", 2),
    Requirement("PatientID", 2),
    Requirement("PatientBirthDate", 2),
    Requirement("PatientSex", 2),
    Requirement("AdmissionID", 2),
    Requirement("IssuerOfAdmissionIDSequence", 2),
    Requirement("AdmittingDiagnosesDescription", 2),
    _code("AdmittingDiagnosesCodeSequence", 2),
    Requirement(
        "ReferencedRequestSequence",
        2,
        (
            Requirement("StudyInstanceUID", 1),
            Requirement("AccessionNumber", 2),
            Requirement("RequestedProcedureID", 2),
            Requirement("RequestedProcedureDescription", 2),
            _code("RequestedProcedureCodeSequence", 2),
        ),
    ),
    # Unified Procedure Step Progress Information Module
    Requirement("ProcedureStepState", 1),
)

# The Final State column for COMPLETED ("P" rows; the "R" rows are those of creation, kept
# by every update, and the server's own Scheduled Procedure Step Modification DateTime).
COMPLETED_REQUIREMENTS: tuple[Requirement, ...] = (
    Requirement(
        "UnifiedProcedureStepPerformedProcedureSequence",
        1,
        (
            _code("PerformedStationNameCodeSequence", 2),
            Requirement("PerformedProcedureStepStartDateTime", 1),
            _code("PerformedWorkitemCodeSequence", 2),
            Requirement("PerformedProcedureStepEndDateTime", 1),
            Requirement("OutputInformationSequence", 2),
        ),
    ),
)

# Attributes an N-CREATE carries present and empty (Table CC.2.5-3, N-CREATE "2/2" with "shall
# be empty": the Transaction UID exists only once a performer claims the workitem). A client
# may send them empty, as conformant ones do, or leave them out; a value is refused.
EMPTY_ON_CREATE = (TRANSACTION_UID,)
# Attributes an N-SET may not change: the state (Change State does), the lock, the identity.
NOT_ALLOWED_ON_UPDATE = (PROCEDURE_STEP_STATE, TRANSACTION_UID, SOP_INSTANCE_UID, SOP_CLASS_UID)


def _missing(item: JsonDict, rows: Iterable[Requirement], where: str) -> list[str]:
    found: list[str] = []
    for row in rows:
        element = item.get(row.key)
        name = f"{where}{row.keyword} ({row.key[:4]},{row.key[4:]})"
        values = element.get("Value") if isinstance(element, dict) else None
        if element is None:
            found.append(f"{name} is missing")
        elif row.type == 1 and not values:
            found.append(f"{name} has no value")
        if row.items and values:
            for number, each in enumerate(values, 1):
                if isinstance(each, dict):
                    found += _missing(each, row.items, f"{name} item {number} > ")
    return found


def missing_for_create(workitem: JsonDict) -> list[str]:
    """What a workitem to be created lacks (PS3.4 Table CC.2.5-3, N-CREATE column), and the
    values it may not hold: each as a sentence; none when it can be created."""
    faults = _missing(workitem, CREATE_REQUIREMENTS, "")
    state = first(workitem, PROCEDURE_STEP_STATE)
    if state not in (None, SCHEDULED):
        faults.append("Procedure Step State (0074,1000) of a new workitem must be SCHEDULED")
    for key in EMPTY_ON_CREATE:
        if first(workitem, key) is not None:
            faults.append(
                f"{_keyword_of_key(key)} ({key[:4]},{key[4:]}) of a new workitem must be empty"
                " (PS3.4 Table CC.2.5-3): a workitem gets one when it is claimed"
            )
    faults += _enumerated(workitem)
    return faults


def _enumerated(workitem: JsonDict) -> list[str]:
    faults = []
    priority = first(workitem, PRIORITY)
    if priority is not None and priority not in PRIORITIES:
        faults.append("Scheduled Procedure Step Priority (0074,1200) is HIGH, MEDIUM or LOW")
    readiness = first(workitem, INPUT_READINESS_STATE)
    if readiness is not None and readiness not in READINESS:
        faults.append("Input Readiness State (0040,4041) is READY, UNAVAILABLE or INCOMPLETE")
    return faults


def missing_for_final(workitem: JsonDict, state: str) -> list[str]:
    """What the workitem lacks to become `state` (PS3.4 CC.2.5.1.3.1 and the Final State
    column of Table CC.2.5-3). CANCELED asks nothing of the performer: the server supplies
    the cancellation date and reason (`canceled`)."""
    if state == COMPLETED:
        return _missing(workitem, COMPLETED_REQUIREMENTS, "")
    return []


def check_update(changes: JsonDict) -> list[str]:
    """The faults of an N-SET data set (PS3.4 CC.2.6.1): it may not change the state, the
    lock or the identity, and the enumerated values keep their meaning."""
    faults = []
    for key in NOT_ALLOWED_ON_UPDATE:
        if key in changes:
            faults.append(
                f"{_keyword_of_key(key)} ({key[:4]},{key[4:]}) may not be changed by an update"
            )
    faults += _enumerated(changes)
    # A Type 1 attribute of the workitem may not be emptied.
    for row in CREATE_REQUIREMENTS:
        if row.type == 1 and row.key in changes and not changes[row.key].get("Value"):
            faults.append(f"{row.keyword} ({row.key[:4]},{row.key[4:]}) may not be emptied")
    return faults


def _keyword_of_key(key: str) -> str:
    return keyword_of(int(key, 16))


# --- building and changing workitems ---------------------------------------------------------


def first(item: JsonDict, key: str) -> Any:
    element = item.get(key)
    values = element.get("Value") if isinstance(element, dict) else None
    return values[0] if values else None


def element(key: str, *values: Any) -> JsonDict:
    found: JsonDict = {"vr": vr_of(int(key, 16))}
    if values:
        found["Value"] = list(values)
    return found


def dicom_datetime(seconds: float) -> str:
    """A DT value (PS3.5 6.2) in UTC for a time in seconds since the epoch."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y%m%d%H%M%S.%f") + "+0000"


def created(workitem: JsonDict, uid: str, now: float) -> JsonDict:
    """The workitem as the server keeps it once created: its UID and SOP Class, SCHEDULED,
    and the modification time (PS3.4 CC.2.5.1.2: the SCP sets these)."""
    kept = {k: copy.deepcopy(v) for k, v in workitem.items() if k not in EMPTY_ON_CREATE}
    kept[SOP_INSTANCE_UID] = element(SOP_INSTANCE_UID, uid)
    kept.setdefault(SOP_CLASS_UID, element(SOP_CLASS_UID, UPS_PUSH_SOP_CLASS))
    kept[PROCEDURE_STEP_STATE] = element(PROCEDURE_STEP_STATE, SCHEDULED)
    kept[MODIFICATION_DATETIME] = element(MODIFICATION_DATETIME, dicom_datetime(now))
    kept.setdefault(PROGRESS_SEQUENCE, element(PROGRESS_SEQUENCE))
    kept.setdefault(PERFORMED_SEQUENCE, element(PERFORMED_SEQUENCE))
    return dict(sorted(kept.items()))


def updated(workitem: JsonDict, changes: JsonDict, now: float) -> JsonDict:
    """The workitem with the attributes of an N-SET replaced (PS3.4 CC.2.6: a sequence is
    replaced whole) and its modification time."""
    kept = copy.deepcopy(workitem)
    kept.update(copy.deepcopy(changes))
    kept[MODIFICATION_DATETIME] = element(MODIFICATION_DATETIME, dicom_datetime(now))
    return dict(sorted(kept.items()))


def in_state(workitem: JsonDict, state: str) -> JsonDict:
    kept = copy.deepcopy(workitem)
    kept[PROCEDURE_STEP_STATE] = element(PROCEDURE_STEP_STATE, state)
    return kept


def canceled(workitem: JsonDict, now: float, request: JsonDict | None = None) -> JsonDict:
    """The workitem CANCELED: its progress information holds the cancellation time and a
    discontinuation reason (the request's, else DCM 110513), and the request's reason and
    contact (PS3.4 CC.2.4.3.1, Final State column of Table CC.2.5-3)."""
    kept = in_state(workitem, CANCELED)
    items = (kept.get(PROGRESS_SEQUENCE) or {}).get("Value") or [{}]
    progress = items[0]
    request = request or {}
    progress.setdefault(CANCELLATION_DATETIME, element(CANCELLATION_DATETIME, dicom_datetime(now)))
    if request.get(DISCONTINUATION_REASONS, {}).get("Value"):
        progress[DISCONTINUATION_REASONS] = copy.deepcopy(request[DISCONTINUATION_REASONS])
    if not (progress.get(DISCONTINUATION_REASONS) or {}).get("Value"):
        progress[DISCONTINUATION_REASONS] = element(
            DISCONTINUATION_REASONS, copy.deepcopy(UNSPECIFIED_DISCONTINUATION)
        )
    if first(request, REASON_FOR_CANCELLATION):
        progress[REASON_FOR_CANCELLATION] = copy.deepcopy(request[REASON_FOR_CANCELLATION])
    contact = {
        k: copy.deepcopy(request[k]) for k in (CONTACT_URI, CONTACT_DISPLAY_NAME) if k in request
    }
    if contact:
        progress[COMMUNICATIONS_URI_SEQUENCE] = element(COMMUNICATIONS_URI_SEQUENCE, contact)
    kept[PROGRESS_SEQUENCE] = element(PROGRESS_SEQUENCE, dict(sorted(progress.items())))
    return kept


def without_lock(workitem: JsonDict) -> JsonDict:
    """The workitem as Retrieve and Search show it: never its Transaction UID (PS3.18
    11.5.2, the lock is known to its owner alone)."""
    return {k: v for k, v in workitem.items() if k != TRANSACTION_UID}


# --- event reports (PS3.4 CC.2.4) ------------------------------------------------------------


def state_report(workitem: JsonDict) -> JsonDict:
    """UPS State Report information: the state and input readiness; for CANCELED the reason
    (PS3.4 Table CC.2.4-1)."""
    info: JsonDict = {}
    for key in (INPUT_READINESS_STATE, PROCEDURE_STEP_STATE):
        if key in workitem:
            info[key] = copy.deepcopy(workitem[key])
    if first(workitem, PROCEDURE_STEP_STATE) == CANCELED:
        progress = first(workitem, PROGRESS_SEQUENCE) or {}
        for key in (REASON_FOR_CANCELLATION, DISCONTINUATION_REASONS):
            if key in progress:
                info[key] = copy.deepcopy(progress[key])
    return info


def cancel_requested_report(request: JsonDict, requesting_ae: str | None) -> JsonDict:
    """UPS Cancel Requested information: who asked, why, and whom to talk to."""
    info: JsonDict = {}
    for key in (
        REASON_FOR_CANCELLATION,
        DISCONTINUATION_REASONS,
        CONTACT_URI,
        CONTACT_DISPLAY_NAME,
    ):
        if key in request:
            info[key] = copy.deepcopy(request[key])
    if requesting_ae:
        info[REQUESTING_AE] = element(REQUESTING_AE, requesting_ae)
    return dict(sorted(info.items()))


def progress_report(workitem: JsonDict) -> JsonDict:
    return {
        PROGRESS_SEQUENCE: copy.deepcopy(
            workitem.get(PROGRESS_SEQUENCE) or element(PROGRESS_SEQUENCE)
        )
    }


def assigned_report(workitem: JsonDict) -> JsonDict:
    """UPS Assigned information: the station and the human performers scheduled."""
    return {
        key: copy.deepcopy(workitem[key])
        for key in (STATION_NAMES, HUMAN_PERFORMERS)
        if key in workitem
    }


def scp_status_report(status: str) -> JsonDict:
    """SCP Status Change (PS3.4 CC.2.4.2): GOING DOWN or RESTARTED; subscriptions are kept in
    the database, so a restart is a warm start."""
    scp = _key("SCPStatus")
    lists = _key("SubscriptionListStatus")
    ups_list = _key("UnifiedProcedureStepListStatus")
    return {
        scp: element(scp, status),
        lists: element(lists, "WARM START"),
        ups_list: element(ups_list, "WARM START"),
    }


def events_of_change(before: JsonDict | None, after: JsonDict) -> list[tuple[EventType, JsonDict]]:
    """The reports a change of a workitem (creation when `before` is None) calls for: a
    State Report when its state or input readiness changed, a Progress Report when its
    progress information did (while IN PROGRESS), UPS Assigned when its station or human
    performers were set (PS3.4 CC.2.4.2)."""
    reports: list[tuple[EventType, JsonDict]] = []
    old = before or {}
    if before is None or any(
        old.get(k) != after.get(k) for k in (PROCEDURE_STEP_STATE, INPUT_READINESS_STATE)
    ):
        reports.append((EventType.STATE_REPORT, state_report(after)))
    if (
        before is not None
        and first(after, PROCEDURE_STEP_STATE) == IN_PROGRESS
        and old.get(PROGRESS_SEQUENCE) != after.get(PROGRESS_SEQUENCE)
    ):
        reports.append((EventType.PROGRESS_REPORT, progress_report(after)))
    assigned = assigned_report(after)
    if any((after.get(k) or {}).get("Value") for k in assigned) and any(
        old.get(k) != after.get(k) for k in assigned
    ):
        reports.append((EventType.ASSIGNED, assigned))
    return reports


def event_report(uid: str, event: EventType, info: JsonDict, message_id: int) -> JsonDict:
    """The event report sent to a subscriber (PS3.18 11.13, 8.10.5): the N-EVENT-REPORT's
    command attributes, then the event information."""
    report: JsonDict = {
        "00000002": {"vr": "UI", "Value": [UPS_EVENT_SOP_CLASS]},
        "00000110": {"vr": "US", "Value": [message_id % 65536]},
        "00001000": {"vr": "UI", "Value": [uid]},
        "00001002": {"vr": "US", "Value": [int(event)]},
    }
    report.update(info)
    return report


def parse_filter(text: str) -> list[Key]:
    """The keys of a filtered Worklist subscription (PS3.18 11.10.1.2: `filter=` a comma-
    separated list of `attribute=value` matching keys, with the syntax of 8.3.4.1)."""
    pairs = []
    for part in text.split(","):
        if not part.strip():
            continue
        name, sign, value = part.partition("=")
        if not sign or not name.strip():
            raise InvalidQuery(f"the filter item {part[:40]!r} is not attribute=value")
        pairs.append((name.strip(), value))
    if not pairs:
        raise InvalidQuery("a filtered subscription needs filter=attribute=value[,...]")
    request = parse_search(pairs)
    if request.limit is not None or request.offset or request.include_fields:
        raise InvalidQuery("a filter holds matching keys only")
    return request.matching_keys()
