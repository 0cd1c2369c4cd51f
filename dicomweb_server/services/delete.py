"""Delete (outside PS3.18; Microsoft's DELETE of a study, series or instance): the index
first, in one transaction (so every process answers 404 at once, and the change log gets a
`delete` entry per instance), then the objects. The removed copies are retired in that
transaction: one the store could not remove now (or a crash before it could) is removed by
the sweep, never left behind."""

from __future__ import annotations

import logging
from collections.abc import Callable

from dicomweb_server.dicom.errors import backend_text
from dicomweb_server.services import audit
from dicomweb_server.services.audit import AuditTrail
from dicomweb_server.services.context import DELETE, Caller
from dicomweb_server.services.errors import NotFound, not_stored
from dicomweb_server.services.ports import BlobStore
from dicomweb_server.services.ports.consistency import ConsistencyIndex
from dicomweb_server.services.ports.delete import Deleted, DeleteIndex

log = logging.getLogger("dicomweb_server.delete")


class DeleteService:
    def __init__(
        self,
        index: DeleteIndex,
        blobs: BlobStore,
        retired: ConsistencyIndex,
        trail: AuditTrail | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self._index = index
        self._blobs = blobs
        self._retired = retired
        self._trail = trail
        self._changed = changed

    def delete(
        self,
        caller: Caller,
        study_uid: str,
        series_uid: str | None = None,
        sop_uid: str | None = None,
    ) -> Deleted:
        caller.require(DELETE)
        gone = self._index.delete(study_uid, series_uid, sop_uid, caller.studies)
        if gone is None:
            raise NotFound(not_stored(study_uid, series_uid, sop_uid))
        self._changed()
        if self._trail is not None:
            note = None if series_uid is None else f"{gone.instances} instance(s)"
            self._trail.record(audit.study_deleted(caller, study_uid, audit.SUCCESS, note))
        for key in gone.blob_keys:
            try:
                self._blobs.delete(key)
                self._retired.forget_retired(key)
            except Exception as exc:  # noqa: BLE001 - retired: the sweep removes it later
                log.warning("removing a deleted object failed: %s", backend_text(str(exc)))
        return gone
