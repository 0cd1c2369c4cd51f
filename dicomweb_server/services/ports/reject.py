"""The reject port (IOCM): instances taken out of the index with their objects kept, put
back from those objects, and purged once the delay has passed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dicomweb_server.services.context import StudyScope
from dicomweb_server.services.ports.delete import Deleted


@dataclass(frozen=True)
class Rejected:
    """One rejected instance: its object, and the labels its study carried then."""

    blob_key: str
    study_uid: str
    series_uid: str
    sop_uid: str
    code: str
    rejected_at: float
    labels: frozenset[str]


class RejectIndex(Protocol):
    def reject(
        self,
        study_uid: str,
        series_uid: str | None,
        sop_uid: str | None,
        scope: StudyScope | None,
        code: str,
    ) -> Deleted | None:
        """As DeleteIndex.delete (one transaction, `delete` entries in the change log), but
        the objects are recorded as rejected with `code` instead of retired. None when
        nothing such is stored (or `scope` hides it)."""

    def rejected(
        self, study_uid: str, series_uid: str | None, sop_uid: str | None
    ) -> list[Rejected]:
        """The rejected instances of the study, series or instance, oldest first."""

    def forget(self, keys: list[str], retire: bool) -> None:
        """Drop the rejection records of `keys` (restored: indexed again; or with `retire`,
        their objects retired for the sweep, in the same transaction)."""

    def expired(self, before: float, limit: int) -> list[str]:
        """Blob keys of instances rejected before `before`, oldest first."""
