"""The delete port: instances removed from the index in one transaction, the study's and
series' aggregates made exact again, the change log told."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dicomweb_server.services.context import StudyScope


@dataclass(frozen=True)
class Deleted:
    study_uid: str
    instances: int
    # The removed copies: retired in the same transaction (the sweep removes any that the
    # deleter could not remove at once).
    blob_keys: list[str]


class DeleteIndex(Protocol):
    def delete(
        self,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        scope: StudyScope | None,
    ) -> Deleted | None:
        """Remove the study, series or instance (within what `scope` lets the caller see):
        its instance rows, the series and the study left empty, a `delete` entry per
        instance in the change log. None when nothing such is stored."""
