"""The audit trail: DICOM Audit Messages (PS3.15 A.5) for every transaction, handed to the
configured sinks by a background thread so that no clinical request ever waits for one.

The messages follow the schema of PS3.15 A.5.1 (EventIdentification, ActiveParticipant,
AuditSourceIdentification, ParticipantObjectIdentification) and the specialisations of A.5.3:
DICOM Instances Transferred (A.5.3.7: STOW-RS create, WADO retrieve read), Query (A.5.3.10:
QIDO-RS), User Authentication (A.5.3.12: credential checks, share redemptions), Security
Alert (A.5.3.11: keys, shares and labels changed), Audit Log Used (A.5.3.2: GET /audit).
`as_dict` is the JSON form of the sinks that write JSON, `as_xml` the XML of the schema that
syslog carries to an audit record repository (IHE ATNA).

A sink that fails is counted and logged, and the others still get the message; a queue that
is full (sinks far slower than the requests) drops the message, counted and logged, rather
than holding the request.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Protocol
from xml.sax.saxutils import escape, quoteattr

from dicomweb_server.services.context import ADMIN, Caller
from dicomweb_server.services.errors import NotFound
from dicomweb_server.services.ports.audit import AuditLog, KeptAuditMessage

log = logging.getLogger("dicomweb_server.audit")


@dataclass(frozen=True)
class Code:
    """A coded value of PS3.16 (the DCM scheme unless told)."""

    code: str
    meaning: str
    scheme: str = "DCM"


# Event IDs (PS3.15 A.5.3) and event type codes (CID 403 and 412).
INSTANCES_ACCESSED = Code("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = Code("110104", "DICOM Instances Transferred")
STUDY_DELETED = Code("110105", "DICOM Study Deleted")
QUERY = Code("110112", "Query")
USER_AUTHENTICATION = Code("110114", "User Authentication")
SECURITY_ALERT = Code("110113", "Security Alert")
AUDIT_LOG_USED = Code("110101", "Audit Log Used")
LOGIN = Code("110122", "Login")
USER_SECURITY_ATTRIBUTES_CHANGED = Code("110137", "User Security Attributes Changed")
OBJECT_SECURITY_ATTRIBUTES_CHANGED = Code("110135", "Object Security Attributes Changed")
SOURCE_ROLE = Code("110153", "Source Role ID")
DESTINATION_ROLE = Code("110152", "Destination Role ID")
STUDY_INSTANCE_UID = Code("110180", "Study Instance UID")
SOP_CLASS_UID = Code("110181", "SOP Class UID")
# What QIDO-RS queries: the Study Root Query/Retrieve Information Model.
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"

# EventOutcomeIndicator (PS3.15 A.5.1): success, minor failure, serious failure.
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE = "0", "4", "8"


def outcome_of(status: int) -> str:
    """The EventOutcomeIndicator of an HTTP status: the client's fault is minor, ours
    serious."""
    if status < 400:
        return SUCCESS
    return MINOR_FAILURE if status < 500 else SERIOUS_FAILURE


@dataclass(frozen=True)
class AuditMessage:
    event: Code
    action: str  # C, R, U, D, E
    outcome: str
    at: float
    requestor: str  # who asked: key:..., oidc:..., share:..., or anonymous
    client: str | None = None  # their network address
    event_type: Code | None = None
    outcome_text: str | None = None
    studies: tuple[str, ...] = ()
    query: str | None = None  # a query, as sent (Query messages)
    object_id: str | None = None  # what a security alert is about (a key id, a share id)
    object_name: str | None = None
    request_id: str = "-"
    source: str = "dicomweb-server"  # AuditSourceID, set by the trail
    destination: str | None = None  # the archive's side of a transfer (its URL)


def requestor_of(caller: Caller) -> str:
    return caller.principal or "anonymous"


def transfer(
    caller: Caller, studies: Sequence[str], outcome: str, stored: bool, note: str | None = None
) -> AuditMessage:
    """DICOM Instances Transferred: stored into the archive (C) or sent by it (R)."""
    return AuditMessage(
        INSTANCES_TRANSFERRED,
        "C" if stored else "R",
        outcome,
        time.time(),
        requestor_of(caller),
        caller.client,
        outcome_text=note,
        studies=tuple(dict.fromkeys(studies)),
        request_id=caller.request_id,
    )


def instances_accessed(
    caller: Caller, study: str, action: str, outcome: str, note: str | None = None
) -> AuditMessage:
    """DICOM Instances Accessed (PS3.15 A.5.3.4): instances of the study changed (U: a
    correction, a restore) or made unavailable (D: a rejection), what was done in `note`."""
    return _of_study(INSTANCES_ACCESSED, action, caller, study, outcome, note)


def study_deleted(
    caller: Caller, study: str, outcome: str, note: str | None = None
) -> AuditMessage:
    """DICOM Study Deleted (PS3.15 A.5.3.5): the study, or instances of it, removed."""
    return _of_study(STUDY_DELETED, "D", caller, study, outcome, note)


def _of_study(
    event: Code, action: str, caller: Caller, study: str, outcome: str, note: str | None
) -> AuditMessage:
    return AuditMessage(
        event,
        action,
        outcome,
        time.time(),
        requestor_of(caller),
        caller.client,
        outcome_text=note,
        studies=(study,),
        request_id=caller.request_id,
    )


def query(caller: Caller, text: str, outcome: str, studies: Sequence[str] = ()) -> AuditMessage:
    return AuditMessage(
        QUERY,
        "E",
        outcome,
        time.time(),
        requestor_of(caller),
        caller.client,
        query=text,
        studies=tuple(studies),
        request_id=caller.request_id,
    )


def authentication(
    user: str, client: str | None, reason: str | None, request_id: str = "-"
) -> AuditMessage:
    """User Authentication (Login): `reason` says why it failed (None: it succeeded)."""
    return AuditMessage(
        USER_AUTHENTICATION,
        "E",
        SUCCESS if reason is None else MINOR_FAILURE,
        time.time(),
        user,
        client,
        event_type=LOGIN,
        outcome_text=reason,
        request_id=request_id,
    )


def security_alert(
    caller: Caller | None,
    kind: Code,
    object_id: str,
    what: str,
    studies: Sequence[str] = (),
) -> AuditMessage:
    """Security Alert: a key, share or label changed (`what` says how)."""
    return AuditMessage(
        SECURITY_ALERT,
        "E",
        SUCCESS,
        time.time(),
        requestor_of(caller) if caller else "local administrator (CLI)",
        caller.client if caller else None,
        event_type=kind,
        outcome_text=what,
        object_id=object_id,
        object_name=what,
        studies=tuple(studies),
        request_id=caller.request_id if caller else "-",
    )


def audit_log_used(caller: Caller, where: str) -> AuditMessage:
    return AuditMessage(
        AUDIT_LOG_USED,
        "R",
        SUCCESS,
        time.time(),
        requestor_of(caller),
        caller.client,
        object_id=where,
        object_name="Security Audit Log",
        request_id=caller.request_id,
    )


@functools.cache
def _code(code: Code) -> dict[str, str]:
    """The coded value's JSON form, made once per code (shared by every message: read only)."""
    return {"csd-code": code.code, "codeSystemName": code.scheme, "originalText": code.meaning}


# The last second _timestamp wrote, and its text to the second (one tuple: read and replaced
# whole, so threads need no lock).
_second: tuple[int, str] = (-1, "")


def _timestamp(at: float) -> str:
    """ISO 8601 in UTC to the millisecond, e.g. 2026-12-07T23:33:25.123Z."""
    global _second
    whole = int(at)
    second, text = _second
    if whole != second:
        text = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second = (whole, text)
    return f"{text}.{min(int((at - whole) * 1000), 999):03d}Z"


def as_dict(m: AuditMessage) -> dict[str, object]:
    """The message in the element and attribute names of the PS3.15 A.5.1 schema."""
    event: dict[str, object] = {
        "EventID": _code(m.event),
        "EventActionCode": m.action,
        "EventDateTime": _timestamp(m.at),
        "EventOutcomeIndicator": m.outcome,
    }
    if m.event_type is not None:
        event["EventTypeCode"] = [_code(m.event_type)]
    if m.outcome_text:
        event["EventOutcomeDescription"] = m.outcome_text
    requestor: dict[str, object] = {"UserID": m.requestor, "UserIsRequestor": True}
    if m.client:
        requestor |= {"NetworkAccessPointID": m.client, "NetworkAccessPointTypeCode": "2"}
    archive: dict[str, object] = {"UserID": m.destination or m.source, "UserIsRequestor": False}
    if m.event is INSTANCES_TRANSFERRED:
        # A.5.3.7: the sender has the Source role, the receiver the Destination role.
        stored = m.action == "C"
        requestor["RoleIDCode"] = _code(SOURCE_ROLE if stored else DESTINATION_ROLE)
        archive["RoleIDCode"] = _code(DESTINATION_ROLE if stored else SOURCE_ROLE)
    objects: list[dict[str, object]] = [
        {
            "ParticipantObjectID": study,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3",
            "ParticipantObjectIDTypeCode": _code(STUDY_INSTANCE_UID),
        }
        for study in m.studies
    ]
    if m.query is not None:
        objects.append(
            {
                "ParticipantObjectID": STUDY_ROOT_FIND,
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3",
                "ParticipantObjectIDTypeCode": _code(SOP_CLASS_UID),
                "ParticipantObjectQuery": base64.b64encode(m.query.encode()).decode(),
            }
        )
    if m.object_id is not None:
        objects.append(
            {
                "ParticipantObjectID": m.object_id,
                "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "13",  # Security Resource
                "ParticipantObjectIDTypeCode": {"csd-code": "12", "originalText": "URI"},
                "ParticipantObjectName": m.object_name or m.object_id,
            }
        )
    message: dict[str, object] = {
        "EventIdentification": event,
        "ActiveParticipant": [requestor, archive],
        "AuditSourceIdentification": {"AuditSourceID": m.source},
    }
    if objects:
        message["ParticipantObjectIdentification"] = objects
    return message


def as_xml(m: AuditMessage) -> str:
    """The message as the XML AuditMessage of PS3.15 A.5.1."""
    d = as_dict(m)

    def attrs(values: dict[str, object], skip: tuple[str, ...] = ()) -> str:
        return "".join(
            f" {k}={quoteattr(str(v).lower() if isinstance(v, bool) else str(v))}"
            for k, v in values.items()
            if k not in skip and not isinstance(v, dict | list)
        )

    def coded(name: str, value: object) -> str:
        assert isinstance(value, dict)
        return f"<{name}{attrs(value)}/>"

    event = d["EventIdentification"]
    assert isinstance(event, dict)
    parts = [f"<EventIdentification{attrs(event, ('EventOutcomeDescription',))}>"]
    parts.append(coded("EventID", event["EventID"]))
    for type_code in event.get("EventTypeCode", []):
        parts.append(coded("EventTypeCode", type_code))
    if "EventOutcomeDescription" in event:
        parts.append(
            f"<EventOutcomeDescription>{escape(str(event['EventOutcomeDescription']))}"
            "</EventOutcomeDescription>"
        )
    parts.append("</EventIdentification>")
    for participant in d["ActiveParticipant"]:  # type: ignore[attr-defined]
        inner = (
            coded("RoleIDCode", participant["RoleIDCode"]) if "RoleIDCode" in participant else ""
        )
        parts.append(f"<ActiveParticipant{attrs(participant)}>{inner}</ActiveParticipant>")
    source = d["AuditSourceIdentification"]
    assert isinstance(source, dict)
    parts.append(f"<AuditSourceIdentification{attrs(source)}/>")
    for obj in d.get("ParticipantObjectIdentification", []):  # type: ignore[attr-defined]
        inner = coded("ParticipantObjectIDTypeCode", obj["ParticipantObjectIDTypeCode"])
        if "ParticipantObjectName" in obj:
            inner += (
                f"<ParticipantObjectName>{escape(obj['ParticipantObjectName'])}"
                "</ParticipantObjectName>"
            )
        if "ParticipantObjectQuery" in obj:
            inner += (
                f"<ParticipantObjectQuery>{obj['ParticipantObjectQuery']}</ParticipantObjectQuery>"
            )
        shown = attrs(obj, ("ParticipantObjectName", "ParticipantObjectQuery"))
        parts.append(
            f"<ParticipantObjectIdentification{shown}>{inner}</ParticipantObjectIdentification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><AuditMessage>' + "".join(parts) + "</AuditMessage>"
    )


class AuditSink(Protocol):
    name: str

    def write(self, messages: list[AuditMessage]) -> None:
        """Keep these messages; raise on failure (the trail counts and logs it)."""

    def close(self) -> None: ...


# How long the writer waits for more messages to write with the first of a batch.
BATCH_SECONDS = 0.05


@dataclass
class AuditTrail:
    """The messages of this process, queued for the sinks. `record` never blocks."""

    sinks: list[AuditSink]
    source: str = "dicomweb-server"
    capacity: int = 10_000
    failures: dict[str, int] = field(default_factory=dict)
    dropped: int = 0
    # The sink that can be read back (the audit table), when one is configured.
    log: AuditLog | None = None

    def __post_init__(self) -> None:
        # Messages waiting for the writer, oldest first. A deque under the trail's lock
        # rather than a queue.Queue: a request appends without waking anyone unless the
        # writer is idle (a Queue's put notifies its condition every time).
        self._waiting: collections.deque[AuditMessage] = collections.deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._arrived = threading.Condition(self._lock)
        self._writer_idle = False
        self._closing = False
        self._pending = 0
        self._thread: threading.Thread | None = None
        if self.sinks:
            self._thread = threading.Thread(target=self._run, name="audit", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return bool(self.sinks)

    def record(self, message: AuditMessage) -> None:
        if not self.sinks:
            return
        if message.source != self.source:
            message = replace(message, source=self.source)
        with self._lock:
            full = len(self._waiting) >= self.capacity
            if full:
                self.dropped += 1
                dropped = self.dropped
            else:
                self._waiting.append(message)
                self._pending += 1
                if self._writer_idle:
                    self._writer_idle = False
                    self._arrived.notify()
        if full and (dropped == 1 or dropped % 1000 == 0):
            log.error("audit queue full: %d audit message(s) dropped so far", dropped)

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._waiting and not self._closing:
                    self._writer_idle = True
                    self._arrived.wait()
                if not self._waiting:
                    return  # closing, and everything written
            # Messages that come within BATCH_SECONDS of the first share its write (one
            # transaction, one flush to disk, instead of one per request under load). The
            # writer sleeps meanwhile: waiting for each message would wake it for every one.
            time.sleep(BATCH_SECONDS)
            with self._lock:
                batch = [self._waiting.popleft() for _ in range(min(500, len(self._waiting)))]
            self._write(batch)

    def _write(self, batch: list[AuditMessage]) -> None:
        for sink in self.sinks:
            try:
                sink.write(batch)
            except Exception as exc:  # noqa: BLE001 - any sink failure is counted, not raised
                with self._lock:
                    self.failures[sink.name] = self.failures.get(sink.name, 0) + len(batch)
                    count = self.failures[sink.name]
                log.error(
                    "audit sink %s failed (%s); %d message(s) not written to it so far",
                    sink.name,
                    type(exc).__name__,
                    count,
                )
        with self._lock:
            self._pending -= len(batch)
            self._idle.notify_all()

    def read(
        self,
        caller: Caller,
        after: int,
        since: float | None,
        study: str | None,
        limit: int,
        where: str,
    ) -> list[KeptAuditMessage]:
        """Kept messages (admin), oldest first; the reading is audited (PS3.15 A.5.3.2)."""
        caller.require(ADMIN)
        if self.log is None:
            raise NotFound("the audit table is not kept (DICOMWEB_AUDIT does not name table)")
        # This process's messages recorded before the read are in the table when it is read.
        self.flush(2 * BATCH_SECONDS + 1.0)
        found = self.log.events(after, since, study, limit)
        self.record(audit_log_used(caller, where))
        return found

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every message recorded so far went to the sinks (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        if self._thread is not None:
            self.flush()
            with self._lock:
                self._closing = True
                self._arrived.notify()
            self._thread.join(timeout=10)
            self._thread = None
        for sink in self.sinks:
            with contextlib.suppress(Exception):  # closing is best effort
                sink.close()
