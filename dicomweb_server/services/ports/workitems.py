"""The workitems port (UPS-RS, PS3.18 chapter 11): the worklist, who subscribed to what,
and each subscriber's event reports.

Every change is one transaction that also writes the event reports of every subscriber of
the workitem, so a report is never lost and none is sent for a change that did not commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from dicomweb_server.dicom.matching import Key

JsonDict = dict[str, Any]
# (Event Type ID, event information) of PS3.4 Table CC.2.4-1.
Report = tuple[int, JsonDict]


@dataclass(frozen=True)
class StoredWorkitem:
    uid: str
    state: str
    transaction_uid: str | None
    version: int
    attributes: JsonDict  # its DICOM JSON, without the Transaction UID


@dataclass(frozen=True)
class WorkitemChange:
    """A change decided on `version` of a workitem: what it becomes."""

    uid: str
    version: int
    state: str
    transaction_uid: str | None
    attributes: JsonDict
    reports: Sequence[Report]
    finished: bool = False  # it became COMPLETED or CANCELED


@dataclass(frozen=True)
class WorkitemEvent:
    seq: int
    aetitle: str
    workitem_uid: str
    event_type: int
    info: JsonDict
    at: float


@dataclass(frozen=True)
class WorkitemSearch:
    matches: Sequence[Key]
    limit: int
    offset: int = 0
    fuzzy: bool = False
    timezone_offset: int | None = None


class WorkitemIndex(Protocol):
    def create(self, uid: str, attributes: JsonDict, reports: Sequence[Report], now: float) -> bool:
        """Add a SCHEDULED workitem, subscribe the global subscribers (and the filtered ones
        whose filter it matches) to it, and write `reports` for each of its subscribers;
        False when a workitem with this UID exists."""

    def get(self, uid: str) -> StoredWorkitem | None: ...

    def change(self, change: WorkitemChange, now: float) -> bool:
        """Make the change if the workitem is still at `change.version` (False: another
        change came first; decide again), with its reports for every subscriber."""

    def report(self, uid: str, reports: Sequence[Report], now: float) -> None:
        """Write reports for every subscriber of the workitem (a change of nothing stored:
        a cancellation request)."""

    def search(self, query: WorkitemSearch) -> list[JsonDict]: ...

    def delete(self, uid: str) -> bool:
        """Remove a workitem with its subscriptions (False: none such)."""

    def locked(self, uid: str) -> bool:
        """Whether a subscriber holds a deletion lock on the workitem."""

    def purge(self, finished_before: float, limit: int) -> int:
        """Remove COMPLETED and CANCELED workitems finished before then that no deletion
        lock holds, and the event reports written before then; how many workitems."""

    def marker(self) -> tuple[float, int]:
        """What changes whenever the worklist does: the latest change's time and the number
        of workitems (a removal changes the count)."""

    # -- subscriptions (PS3.4 CC.2.3) --

    def assign_receiver(self, aetitle: str, owner: str) -> None:
        """Make `owner` (a principal) the AE title's, whoever held it."""

    def subscriptions_of(self, owner: str) -> int:
        """The subscriptions of the AE titles `owner` holds."""

    def receiver_owner(self, aetitle: str) -> str | None:
        """Who subscribed as this AE title first (None: nobody yet)."""

    def subscribe(
        self,
        aetitle: str,
        owner: str,
        target: str,
        deletion_lock: bool,
        filter_text: str | None,
        filter_keys: Sequence[Key],
        now: float,
    ) -> list[str] | None:
        """Subscribe the AE title to a workitem or to a global subscription (the well-known
        UIDs; `filter_keys` choose the workitems of a filtered one) and write the current
        State Report of each workitem it is now subscribed to; the UIDs of those. None when
        the target workitem does not exist."""

    def unsubscribe(self, aetitle: str, target: str) -> bool:
        """Remove the subscription (for a global one, every subscription of the AE title);
        False when there was none."""

    def suspend(self, aetitle: str, target: str) -> bool:
        """Stop adding new workitems to a global subscription (existing ones stay); False
        when there is none."""

    # -- the event channel of one subscriber --

    def events(self, aetitle: str, after: int, limit: int) -> list[WorkitemEvent]: ...

    def delivered(self, aetitle: str) -> int:
        """The last report sent to the AE title (0: none)."""

    def mark_delivered(self, aetitle: str, seq: int) -> None: ...

    def connected(self, aetitle: str, now: float) -> float | None:
        """Note that a channel of the AE title opens now; when the last one did (None:
        never)."""
