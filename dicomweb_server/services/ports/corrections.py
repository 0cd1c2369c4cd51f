"""The corrections port: a study's instances pointed at their corrected copies in one
transaction (the originals kept), the studies of a patient, and the original versions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.store import NewInstance


@dataclass(frozen=True)
class Original:
    """The copy of an instance first stored, kept since a correction replaced it."""

    blob_key: str
    transfer_syntax_uid: str
    size: int


@dataclass(frozen=True)
class Corrected:
    instances: int
    # Corrected copies not indexed (their instance was deleted or stored again meanwhile):
    # the caller removes them.
    unused: list[str]


class CorrectionIndex(Protocol):
    def studies_of(self, patient_id: str, scope: StudyScope | None) -> list[str]:
        """The Study Instance UIDs of the patient's studies the scope lets the caller see."""

    def study_attributes(self, study_uid: str, scope: StudyScope | None) -> dict[str, Any] | None:
        """The study-level DICOM JSON of a study the scope lets the caller see."""

    def correct(self, study_uid: str, copies: list[tuple[str, NewInstance]]) -> Corrected:
        """In one transaction under the study's lock: each instance whose index row still
        points at the first key of its pair points at the corrected copy; the study's
        attributes are those of the copies; the replaced copy is kept as the original (the
        instance's first correction) or retired; an `update` entry per instance in the
        change log."""

    def originals(self, sop_uids: list[str]) -> dict[str, Original]:
        """The kept originals of those instances that have been corrected."""
