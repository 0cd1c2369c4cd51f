"""The change log port: the archive's changes in sequence order, as the feed reads them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dicomweb_server.services.context import StudyScope

CREATE = "create"
UPDATE = "update"
DELETE = "delete"
ACTIONS = frozenset({CREATE, UPDATE, DELETE})
# No instance has arrived in the series or study for the quiet period (once per quiet period,
# across every process).
SERIES_STABLE = "series-stable"
STUDY_STABLE = "study-stable"
EVERY_ACTION = ACTIONS | {SERIES_STABLE, STUDY_STABLE}

# The state of an entry's instance now (Microsoft's change feed): its newest copy, replaced
# by a newer one, or deleted.
CURRENT = "current"
REPLACED = "replaced"
DELETED = "deleted"


@dataclass(frozen=True)
class Change:
    sequence: int
    timestamp: float  # seconds since the epoch
    action: str
    study_uid: str
    series_uid: str | None
    sop_uid: str | None
    state: str
    # The instance's stored DICOM JSON (BulkDataURIs root-relative), when asked for and the
    # instance is still stored.
    metadata: str | None = None


class ChangeLog(Protocol):
    def read(
        self,
        after: int,
        limit: int,
        scope: StudyScope | None,
        with_metadata: bool = False,
        instances_only: bool = False,
    ) -> list[Change]:
        """Up to `limit` entries with a sequence above `after`, in sequence order, of the
        studies `scope` lets the caller see (None: every study); with `instances_only`,
        the entries of instances alone (no stable events)."""

    def latest(self, scope: StudyScope | None, instances_only: bool = False) -> Change | None:
        """The newest entry the scope lets the caller see."""

    def announce_stable(self, cutoff: float, now: float) -> int:
        """Log a series-stable / study-stable entry for each series and study whose last
        instance arrived before `cutoff` and that has not been announced since; how many."""

    def newest(self) -> int:
        """The newest sequence written (0 when the log is empty), whoever may see it."""


class ChangeSignal(Protocol):
    """Wakes this process's readers of the log when another process (or this one) may have
    added to it."""

    def start(self, wake: WakeUp) -> None:
        """Call `wake` (from any thread) whenever new entries may have been committed."""

    def close(self) -> None: ...


class WakeUp(Protocol):
    def __call__(self) -> None: ...
