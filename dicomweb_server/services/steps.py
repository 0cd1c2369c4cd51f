"""Ingest steps: the de-identifier as the built-in one, and the composition of the steps a
store applies to every object (services/ports/plugins.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydicom.dataset import Dataset

from dicomweb_server.dicom.deidentify import Deidentifier
from dicomweb_server.dicom.errors import ObjectRejected
from dicomweb_server.dicom.store_status import PROCESSING_FAILURE
from dicomweb_server.services.ports.plugins import IngestStep


class DeidentifyStep:
    """PS3.15 Annex E on ingest (DICOMWEB_DEIDENTIFY)."""

    name = "deidentify"

    def __init__(self, deidentifier: Deidentifier) -> None:
        self.deidentifier = deidentifier
        # PS3.18 10.5.3: elements were changed; the originals are not kept (that is the
        # point), so the warning says what was done instead.
        profile = ", ".join(
            ["PS3.15 E.1 Basic Profile", *(o.value for o in sorted(deidentifier.options))]
        )
        uids_note = "; UIDs replaced" if deidentifier.remaps_uids else ""
        self.warning: str | None = f"de-identified on ingest ({profile}){uids_note}"

    def apply(self, ds: Dataset) -> None:
        self.deidentifier.apply(ds)

    def study_uid(self, uid: str) -> str:
        return self.deidentifier.map_uid(uid) if self.deidentifier.remaps_uids else uid


def applied(steps: Sequence[IngestStep]) -> Callable[[Dataset], None]:
    """One change applying every step in order; a step's own failure other than a refusal
    refuses the object as a processing failure naming it."""

    def change(ds: Dataset) -> None:
        for step in steps:
            try:
                step.apply(ds)
            except ObjectRejected:
                raise
            except Exception as exc:
                if isinstance(step, DeidentifyStep):
                    raise
                raise ObjectRejected(
                    PROCESSING_FAILURE, f"the ingest step {step.name} failed: {type(exc).__name__}"
                ) from exc

    return change


def failure_text(steps: Sequence[IngestStep]) -> str:
    if [s.name for s in steps] == ["deidentify"]:
        return "the object cannot be de-identified"
    return "the ingest steps (" + ", ".join(s.name for s in steps) + ") cannot change the object"
