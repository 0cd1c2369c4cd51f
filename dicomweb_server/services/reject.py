"""Reject and restore (IOCM, as dcm4chee answers OHIF's `supportsReject`; outside PS3.18):
a rejected study, series or instance is gone from every search and retrieval at once, as
for a delete, but its objects are kept for `retention_seconds`; until then a restore indexes
them again, byte-identical (the same objects), and after it the purge retires them.

The reason is a code of PS3.16 CID 7011 (Rejected Objects), sent as
`CodeValue^CodingSchemeDesignator`; dcm4chee's `REVOKE_REJECTION^99DCM4CHEE` restores."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from dicomweb_server.dicom.errors import backend_text
from dicomweb_server.services import audit
from dicomweb_server.services.audit import AuditTrail
from dicomweb_server.services.context import DELETE, Caller, StudyScope
from dicomweb_server.services.errors import InvalidRequest, NotFound, not_stored
from dicomweb_server.services.ports import BlobStore
from dicomweb_server.services.ports.consistency import ConsistencyIndex
from dicomweb_server.services.ports.delete import Deleted
from dicomweb_server.services.ports.reject import Rejected, RejectIndex
from dicomweb_server.services.ports.store import AddOutcome, AddResult

log = logging.getLogger("dicomweb_server.reject")

# PS3.16 CID 7011 Rejected Objects (the DCM scheme).
REJECTION_CODES = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
# dcm4chee's code that revokes a rejection (a restore by the reject route).
REVOKE = "REVOKE_REJECTION^99DCM4CHEE"
_PURGE_BATCH = 500


def rejection_code(text: str) -> str:
    """`CodeValue^CodingSchemeDesignator` of CID 7011 (or REVOKE) as the server keeps it;
    InvalidRequest for anything else."""
    value, sep, scheme = text.partition("^")
    if text == REVOKE:
        return REVOKE
    if not sep or scheme != "DCM" or value not in REJECTION_CODES:
        known = ", ".join(f"{v}^DCM ({m})" for v, m in REJECTION_CODES.items())
        raise InvalidRequest(
            f"the rejection reason must be a code of PS3.16 CID 7011 as "
            f"CodeValue^CodingSchemeDesignator: {known}; or {REVOKE} to restore"
        )
    return f"{value}^DCM"


@dataclass(frozen=True)
class Restored:
    restored: int
    # Instances stored again while rejected: the newer copy stays, the rejected one goes.
    superseded: int


class RejectService:
    def __init__(
        self,
        index: RejectIndex,
        reindex: Callable[[str, frozenset[str]], AddResult],
        blobs: BlobStore,
        retired: ConsistencyIndex,
        retention_seconds: float,
        trail: AuditTrail | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._index = index
        # Indexes a kept object again (StoreService.reindex).
        self._reindex = reindex
        self._blobs = blobs
        self._retired = retired
        self.retention_seconds = retention_seconds
        self._trail = trail
        self._changed = changed

    def reject(
        self,
        caller: Caller,
        code_text: str,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> Deleted | Restored:
        caller.require(DELETE)
        code = rejection_code(code_text)
        if code == REVOKE:
            return self.restore(caller, study_uid, series_uid, sop_uid)
        gone = self._index.reject(study_uid, series_uid, sop_uid, caller.studies, code)
        if gone is None:
            raise NotFound(not_stored(study_uid, series_uid, sop_uid))
        self._changed()
        if self._trail is not None:
            meaning = REJECTION_CODES[code.partition("^")[0]]
            note = f"rejected ({code}, {meaning}): {gone.instances} instance(s)"
            self._trail.record(
                audit.instances_accessed(caller, study_uid, "D", audit.SUCCESS, note)
            )
        return gone

    def restore(
        self,
        caller: Caller,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> Restored:
        """Index the rejected instances again, from their kept objects; an instance stored
        anew meanwhile keeps its new copy. NotFound when nothing such is rejected (or the
        caller may not see it)."""
        caller.require(DELETE)
        held = [
            r
            for r in self._index.rejected(study_uid, series_uid, sop_uid)
            if _sees(caller.studies, r)
        ]
        if not held:
            where = " of ".join(
                f"{kind} {uid}"
                for kind, uid in (
                    ("instance", sop_uid),
                    ("series", series_uid),
                    ("study", study_uid),
                )
                if uid
            )
            raise NotFound(f"nothing rejected is kept of {where}")
        restored, superseded = [], []
        for item in held:
            added = self._reindex(item.blob_key, item.labels)
            if added.outcome is AddOutcome.STORED:
                restored.append(item.blob_key)
            else:
                superseded.append(item.blob_key)
        self._index.forget(restored, retire=False)
        self._index.forget(superseded, retire=True)
        self._changed()
        if self._trail is not None:
            note = f"restored after rejection: {len(restored)} instance(s)"
            self._trail.record(
                audit.instances_accessed(caller, study_uid, "U", audit.SUCCESS, note)
            )
        return Restored(len(restored), len(superseded))

    def purge(self, now: float | None = None) -> int:
        """Retire and remove the objects rejected longer than the retention ago; how many
        (any number of processes may run this: each record is dropped once)."""
        before = (time.time() if now is None else now) - self.retention_seconds
        total = 0
        while keys := self._index.expired(before, _PURGE_BATCH):
            self._index.forget(keys, retire=True)
            for key in keys:
                try:
                    self._blobs.delete(key)
                    self._retired.forget_retired(key)
                except Exception as exc:  # noqa: BLE001 - retired: the sweep removes it later
                    log.warning("removing a rejected object failed: %s", backend_text(str(exc)))
            total += len(keys)
        return total


def _sees(scope: StudyScope | None, item: Rejected) -> bool:
    """Whether a caller limited to `scope` may see the rejected instance: its study named,
    or carrying one of the labels (a scope by patient cannot be told without the object, so
    it does not reach rejected instances)."""
    if scope is None:
        return True
    if scope.series_uids is not None and item.series_uid not in scope.series_uids:
        return False
    return item.study_uid in scope.study_uids or bool(item.labels & scope.labels)
