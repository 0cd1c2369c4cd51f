"""Corrections (outside PS3.18, as Microsoft's bulk update): patient and study attributes of
studies, or of all studies of a patient, changed in the stored objects themselves. Each
instance gets a new copy with the new values (its SOP Instance UID unchanged), a study's
copies are indexed in one transaction, the first copy is kept as the original (retrievable
on request) and the change feed gets an `update` entry per instance. A merge moves a
patient's studies to another PatientID, taking that patient's identity attributes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from pydicom.datadict import keyword_for_tag
from pydicom.dataset import Dataset

from dicomweb_server.dicom.corrections import apply_changes, merged_identity, parse_changes
from dicomweb_server.dicom.errors import backend_text
from dicomweb_server.dicom.uids import require_uid
from dicomweb_server.services import audit
from dicomweb_server.services.audit import AuditTrail
from dicomweb_server.services.context import DOWNLOAD, UPDATE, Caller
from dicomweb_server.services.errors import Conflict, InvalidRequest, NotFound, not_stored
from dicomweb_server.services.ports.corrections import CorrectionIndex
from dicomweb_server.services.ports.retrieve import RetrieveIndex
from dicomweb_server.services.ports.store import NewInstance, StoredInstance

log = logging.getLogger("dicomweb_server.corrections")


class Rewriter(Protocol):
    """Makes corrected copies of stored objects (StoreService)."""

    def rewritten(self, key: str, change: Callable[[Dataset], None]) -> NewInstance: ...

    def sync(self, keys: list[str]) -> None: ...


class Objects(Protocol):
    def delete(self, key: str) -> None: ...


@dataclass(frozen=True)
class Updated:
    studies: int
    instances: int


class CorrectionService:
    def __init__(
        self,
        index: CorrectionIndex,
        instances: RetrieveIndex,
        rewriter: Rewriter,
        blobs: Objects,
        max_instances: int,
        trail: AuditTrail | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._index = index
        self._instances = instances
        self._rewriter = rewriter
        self._blobs = blobs
        # The most instances one request rewrites (each is read and written again).
        self.max_instances = max_instances
        self._trail = trail
        self._changed = changed

    def update(
        self,
        caller: Caller,
        change_dataset: object,
        study_uids: Sequence[object] | None = None,
        patient_id: object = None,
    ) -> Updated:
        """Apply the DICOM JSON `change_dataset` to the studies named, or to every study of
        the patient `patient_id` (exactly one of the two)."""
        caller.require(UPDATE)
        changes = parse_changes(change_dataset)
        if (study_uids is None) == (patient_id is None):
            raise InvalidRequest("name the studies (studyInstanceUids) or the patient (patientId)")
        if patient_id is not None:
            if not isinstance(patient_id, str) or not patient_id:
                raise InvalidRequest("patientId must be a non-empty string")
            targets = self._index.studies_of(patient_id, caller.studies)
            if not targets:
                raise NotFound("no study of that patient is stored")
        else:
            assert study_uids is not None
            if not isinstance(study_uids, list) or not study_uids:
                raise InvalidRequest("studyInstanceUids must be a non-empty array of UIDs")
            targets = list(dict.fromkeys(_uid(u) for u in study_uids))
        return self._correct(caller, targets, changes)

    def merge(self, caller: Caller, source: str, target: str) -> Updated:
        """Move every study of the patient `source` to the patient `target`: its studies
        get the target's PatientID, name, issuer, birth date and sex (as one of the target's
        studies has them)."""
        caller.require(UPDATE)
        if source == target:
            raise Conflict("a patient cannot be merged into itself")
        into = self._index.studies_of(target, caller.studies)
        if not into:
            raise NotFound("no study of the target patient is stored")
        attributes = self._index.study_attributes(into[0], caller.studies)
        moved = self._index.studies_of(source, caller.studies)
        if attributes is None or not moved:
            raise NotFound("no study of the patient to merge is stored")
        return self._correct(caller, moved, parse_changes(merged_identity(attributes)))

    def originals(
        self,
        caller: Caller,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> list[StoredInstance]:
        """The instances as first stored (Microsoft's `msdicom-request-original`): the kept
        original of each corrected one, the others as they are."""
        caller.require(DOWNLOAD)
        found = self._instances.instances(study_uid, series_uid, sop_uid, scope=caller.studies)
        if not found:
            raise NotFound(not_stored(study_uid, series_uid, sop_uid))
        kept = self._index.originals([i.sop_instance_uid for i in found])
        return [
            replace(
                i,
                blob_key=o.blob_key,
                transfer_syntax_uid=o.transfer_syntax_uid,
                size=o.size,
            )
            if (o := kept.get(i.sop_instance_uid)) is not None
            else i
            for i in found
        ]

    def _correct(self, caller: Caller, targets: list[str], changes: Dataset) -> Updated:
        found = {study: self._instances.instances(study, scope=caller.studies) for study in targets}
        missing = [s for s, items in found.items() if not items]
        if missing:
            raise NotFound(not_stored(missing[0]))
        total = sum(len(items) for items in found.values())
        if total > self.max_instances:
            raise InvalidRequest(
                f"the correction would rewrite {total} instances; this server rewrites at most "
                f"{self.max_instances} per request: correct fewer studies at once"
            )
        names = ", ".join(keyword_for_tag(e.tag) or str(e.tag) for e in changes)
        done = 0
        for study, items in found.items():
            done += self._correct_study(caller, study, items, changes, names)
        self._changed()
        return Updated(len(found), done)

    def _correct_study(
        self,
        caller: Caller,
        study: str,
        items: list[StoredInstance],
        changes: Dataset,
        names: str,
    ) -> int:
        copies: list[tuple[str, NewInstance]] = []
        try:
            for item in items:
                copy = self._rewriter.rewritten(
                    item.blob_key, lambda ds: apply_changes(ds, changes)
                )
                copies.append((item.blob_key, copy))
            self._rewriter.sync([c.instance.blob_key for _, c in copies])
            result = self._index.correct(study, copies)
        except BaseException:
            self._remove([c.instance.blob_key for _, c in copies])
            raise
        self._remove(result.unused)
        if self._trail is not None:
            note = f"corrected ({names}): {result.instances} instance(s)"
            self._trail.record(audit.instances_accessed(caller, study, "U", audit.SUCCESS, note))
        return result.instances

    def _remove(self, keys: list[str]) -> None:
        for key in keys:
            try:
                self._blobs.delete(key)
            except Exception as exc:  # noqa: BLE001 - an orphan: the sweep removes it
                log.warning("removing an unused corrected copy failed: %s", backend_text(str(exc)))


def _uid(value: object) -> str:
    if not isinstance(value, str):
        raise InvalidRequest("studyInstanceUids must be an array of UIDs")
    return require_uid(value, "Study Instance UID")
