"""Store outcomes: the reason codes, one instance's outcome, the status of a whole request
(PS3.18 Table 10.5.3-1) and the Store Instances Response data set (PS3.18 10.5.3).

Everything here is plain data and pure functions, so STOW-RS and a DIMSE C-STORE (whose
per-instance status is the same code, PS3.4 B.2.3) report the same outcomes. URLs are
handed in as functions: this module names no URL shape.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# PS3.18 Table I.2-2 (and PS3.4 Table B.2-1): failure reasons.
OUT_OF_RESOURCES = 0xA700
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
CANNOT_UNDERSTAND = 0xC000
TRANSFER_SYNTAX_NOT_SUPPORTED = 0xC122
PROCESSING_FAILURE = 0x0110
# PS3.7 C.4 "Duplicate SOP Instance", for the duplicate policy "reject".
DUPLICATE_SOP_INSTANCE = 0x0111
# PS3.7 C.5 "Refused: Not Authorized": a caller limited to labels storing into a study that
# does not carry one of them.
NOT_AUTHORIZED = 0x0124

# PS3.18 Table I.2-1: warning reasons. "Coercion of Data Elements": the object was
# de-identified.
COERCION_OF_DATA_ELEMENTS = 0xB000
# Implementation-specific warning (PS3.18 I.2.1 allows them): the instance was already
# stored and the first copy kept; the value is the one the Microsoft DICOM server uses.
ALREADY_STORED = 0xB00E

SUCCESS = 0x0000

# Error Comment (0000,0902) carries the reason in words, cut to this many characters.
_COMMENT_LENGTH = 1024


@dataclass(frozen=True)
class InstanceOutcome:
    """What storing one object did: stored (maybe with a warning) or failed, and why."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    study_uid: str | None = None
    series_uid: str | None = None
    failure_reason: int | None = None
    warning_reason: int | None = None
    message: str = ""

    @property
    def stored(self) -> bool:
        return self.failure_reason is None

    @property
    def status(self) -> int:
        """The DIMSE status of this outcome (PS3.4 B.2.3): failure, warning or success."""
        if self.failure_reason is not None:
            return self.failure_reason
        return self.warning_reason if self.warning_reason is not None else SUCCESS

    def failed(self, reason: int, message: str) -> InstanceOutcome:
        """The same object, failed for `reason`."""
        return InstanceOutcome(
            self.sop_class_uid,
            self.sop_instance_uid,
            self.study_uid,
            self.series_uid,
            failure_reason=reason,
            message=message,
        )


def failure(reason: int, message: str) -> InstanceOutcome:
    """A failure before any UID of the object could be read."""
    return InstanceOutcome(None, None, failure_reason=reason, message=message)


@dataclass
class StoreResult:
    """The outcomes of one request, and what stopped it being read, if anything."""

    outcomes: list[InstanceOutcome] = field(default_factory=list)
    # Set when the request body itself could not be read to the end.
    request_error: str | None = None


def response_status(result: StoreResult) -> int:
    """PS3.18 Table 10.5.3-1, from the per-instance outcomes alone."""
    stored = [o for o in result.outcomes if o.stored]
    failed = [o for o in result.outcomes if not o.stored]
    warned = [o for o in stored if o.warning_reason is not None]
    if not stored:
        # Nothing stored: a request we could not read is bad syntax, otherwise a conflict.
        return 400 if result.request_error is not None or not failed else 409
    if failed or warned or result.request_error is not None:
        return 202
    return 200


def response_dataset(
    result: StoreResult,
    study_url: Callable[[str], str],
    instance_url: Callable[[str, str, str], str],
    study_uid: str | None = None,
) -> dict[str, Any]:
    """The Store Instances Response Module (PS3.18 10.5.3, Table 10.5.3-2) in the DICOM JSON
    Model: RetrieveURL of the study, FailedSOPSequence, ReferencedSOPSequence."""
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in result.outcomes if o.stored and o.study_uid}
    if study_uid is not None or len(studies) == 1:
        body["00081190"] = {"vr": "UR", "Value": [study_url(study_uid or studies.pop())]}
    failed = [_failed_item(o) for o in result.outcomes if not o.stored]
    if result.request_error is not None:
        failed.append(
            {
                "00081197": {"vr": "US", "Value": [CANNOT_UNDERSTAND]},
                "00000902": {"vr": "LO", "Value": [result.request_error]},
            }
        )
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    stored = [_stored_item(o, instance_url) for o in result.outcomes if o.stored]
    if stored:
        body["00081199"] = {"vr": "SQ", "Value": stored}
    return body


def _uid(value: str | None) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _stored_item(o: InstanceOutcome, url: Callable[[str, str, str], str]) -> dict[str, Any]:
    item = {
        "00081150": _uid(o.sop_class_uid),
        "00081155": _uid(o.sop_instance_uid),
        "00081190": {
            "vr": "UR",
            "Value": [url(o.study_uid or "", o.series_uid or "", o.sop_instance_uid or "")],
        },
    }
    if o.warning_reason is not None:
        item["00081196"] = {"vr": "US", "Value": [o.warning_reason]}
        item["00000902"] = {"vr": "LO", "Value": [o.message[:_COMMENT_LENGTH]]}
    return item


def _failed_item(o: InstanceOutcome) -> dict[str, Any]:
    # Error Comment (0000,0902) carries the reason in words beside the PS3.18 I.2 code.
    return {
        "00081150": _uid(o.sop_class_uid),
        "00081155": _uid(o.sop_instance_uid),
        "00081197": {"vr": "US", "Value": [o.failure_reason]},
        "00000902": {"vr": "LO", "Value": [o.message[:_COMMENT_LENGTH]]},
    }
