"""The data-mining port (issue 18): totals, counts grouped by any attributes under QIDO-RS
keys, and what the patient model of PS3.4 forbids, computed by the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.matching import Key
from dicomweb_server.services.context import StudyScope


@dataclass(frozen=True)
class Group:
    values: tuple[str | None, ...]  # the group's value of each attribute grouped by
    studies: int
    series: int
    instances: int
    bytes: int


@dataclass(frozen=True)
class Inconsistency:
    kind: str  # patient-name, patient-birth-date, patient-sex, study-patients, series-modality
    subject: str  # the PatientID, Study Instance UID or Series Instance UID
    values: list[str]  # the values that disagree


class StatsIndex(Protocol):
    def aggregate(
        self,
        level: Level,
        group_by: Sequence[int],
        matches: Sequence[Key],
        scope: StudyScope | None,
        limit: int,
        fuzzy: bool = False,
    ) -> list[Group]:
        """The entities of `level` the keys match (within the scope), counted per distinct
        values of `group_by` (none: one group of them all), largest groups first."""

    def inconsistencies(self, limit: int) -> list[Inconsistency]:
        """One PatientID with different names, birth dates or sexes across its studies; a
        study whose instances name several PatientIDs; a series of several modalities."""
