"""The worklist (UPS-RS, PS3.18 chapter 11; the UPS SOP Classes of PS3.4 Annex CC).

Each transaction reads the workitem, decides with the pure rules of `dicom/ups.py`, and
makes its change only from the version it read: two processes claiming one workitem at once
cannot both win, the second decides again and is refused (C302). The event reports of a
change are written with it, for every subscriber; each subscriber's event channel
(`EventChannels`) sends them in order, resuming where the last channel of its AE title
stopped, and wakes when any process commits some.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from dicomweb_server.dicom import uids, ups
from dicomweb_server.dicom.matching import Key, SearchRequest
from dicomweb_server.services.changes import Alarm
from dicomweb_server.services.context import ADMIN, READ, WORKITEMS, Caller
from dicomweb_server.services.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    TooManyRequests,
    Unavailable,
    WorkitemRefused,
)
from dicomweb_server.services.ports.changes import ChangeSignal
from dicomweb_server.services.ports.workitems import (
    JsonDict,
    Report,
    WorkitemChange,
    WorkitemIndex,
    WorkitemSearch,
)
from dicomweb_server.services.search import Page

log = logging.getLogger("dicomweb_server.workitems")

# A change is decided again this many times when other changes keep coming first.
_ATTEMPTS = 20


@dataclass(frozen=True)
class Answer:
    """A transaction that succeeded, with the Warning text it carries (if any)."""

    uid: str
    warning: str | None = None
    dicom_status: int = ups.SUCCESS


@dataclass
class WorkitemResults:
    results: list[JsonDict]
    warnings: list[str] = field(default_factory=list)
    next_offset: int | None = None


def _refuse(outcome: ups.Outcome) -> WorkitemRefused:
    return WorkitemRefused(
        outcome.reason or "refused", outcome.http_status, outcome.dicom_status, outcome.warning
    )


def _missing(faults: list[str], status: int = ups.MISSING_ATTRIBUTE) -> WorkitemRefused:
    return WorkitemRefused("; ".join(faults[:20]), 400, status)


def check_aetitle(aetitle: str) -> str:
    """An AE title (PS3.5 Table 6.2-1: up to 16 characters, no backslash or control
    characters, not only spaces)."""
    if not 0 < len(aetitle) <= 16 or not aetitle.strip():
        raise InvalidRequest("an AE title has 1 to 16 characters")
    if any(c == "\\" or not (" " <= c <= "~") for c in aetitle):
        raise InvalidRequest("an AE title holds printable ASCII characters, no backslash")
    return aetitle.strip()


class WorkitemService:
    def __init__(
        self,
        index: WorkitemIndex,
        max_limit: int,
        uid_root: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self.max_limit = max_limit
        self._uid_root = uid_root
        self._clock = clock
        # Subscriptions one caller may hold (each makes an event row per change it covers).
        self.max_subscriptions_per_caller = 50
        # Woken after each change this process commits (other processes: the signal).
        self.committed: Callable[[], None] = lambda: None

    @staticmethod
    def _allow(caller: Caller, scope: str) -> None:
        caller.require(scope)
        if caller.studies is not None:
            # A caller limited to some studies (labels, a share link) sees no worklist: a
            # workitem is no study, and names patients of any.
            raise Forbidden("the worklist is open to callers who may see every study")

    # -- Create (PS3.18 11.4, N-CREATE) --

    def create(self, caller: Caller, workitem: JsonDict, uid: str | None) -> Answer:
        self._allow(caller, WORKITEMS)
        in_body = ups.first(workitem, ups.SOP_INSTANCE_UID)
        if uid is not None and in_body is not None and in_body != uid:
            raise InvalidRequest(
                "the workitem query parameter and SOP Instance UID (0008,0018) differ"
            )
        warning = None
        uid = uid or in_body
        if uid is None:
            # PS3.18 11.4.1.1: the Workitem UID comes from the request; a client that sends
            # none gets one made here (Location names it), a modification it is told of.
            uid = uids.new_uid(self._uid_root)
            warning = ups.CREATED_MODIFIED_TEXT
        uids.require_uid(uid, "the Workitem UID")
        if uid in (ups.GLOBAL_SUBSCRIPTION, ups.FILTERED_SUBSCRIPTION):
            raise InvalidRequest("that UID names the global subscriptions, not a workitem")
        faults = ups.missing_for_create(workitem)
        if faults:
            raise _missing(faults)
        now = self._clock()
        kept = ups.created(workitem, uid, now)
        reports = ups.events_of_change(None, kept)
        if not self._index.create(uid, kept, _reports(reports), now):
            raise WorkitemRefused(f"a workitem {uid} exists already", 409, ups.DUPLICATE_INSTANCE)
        self.committed()
        return Answer(uid, warning)

    # -- Retrieve (11.5, N-GET) and Search (11.9, C-FIND) --

    def watch(self, caller: Caller) -> None:
        """Whether the caller may follow the worklist live (as it may search it)."""
        self._allow(caller, READ)

    def retrieve(self, caller: Caller, uid: str) -> JsonDict:
        self._allow(caller, READ)
        found = self._index.get(uid)
        if found is None:
            raise NotFound(f"no workitem {uid}")
        return ups.without_lock(found.attributes)

    def search(self, caller: Caller, request: SearchRequest) -> WorkitemResults:
        self._allow(caller, READ)
        keys: list[Key] = request.matching_keys()
        if any(_names_lock(k) for k in keys):
            # The lock is no search key: matching on it would tell who holds it.
            raise InvalidRequest("Transaction UID (0008,1195) is not a search key")
        warnings = list(request.warnings)
        if request.order:
            warnings.append("orderby is not supported for workitems; the key was ignored")
        page = Page.of(request, self.max_limit)
        found = self._index.search(
            WorkitemSearch(keys, page.fetch, page.offset, request.fuzzy, request.timezone_offset)
        )
        found, next_offset = page.cut(found, warnings)
        # PS3.18 11.9.2: every attribute of the workitem (its Return Key Type 1 and 2
        # attributes among them) but the lock.
        return WorkitemResults([ups.without_lock(w) for w in found], warnings, next_offset)

    # -- Update (11.6, N-SET) --

    def update(
        self, caller: Caller, uid: str, changes: JsonDict, transaction_uid: str | None
    ) -> Answer:
        self._allow(caller, WORKITEMS)
        in_body = ups.first(changes, ups.TRANSACTION_UID)
        if in_body is not None:
            # dcm4chee's clients send the lock in the data set: taken, never stored.
            if transaction_uid is not None and transaction_uid != in_body:
                raise InvalidRequest("the transaction query parameter and (0008,1195) differ")
            transaction_uid = in_body
            changes = {k: v for k, v in changes.items() if k != ups.TRANSACTION_UID}
        faults = ups.check_update(changes)
        if faults:
            raise _missing(faults, ups.INVALID_ATTRIBUTE_VALUE)
        for _ in range(_ATTEMPTS):
            found = self._index.get(uid)
            if found is None:
                raise NotFound(f"no workitem {uid}")
            outcome = ups.update_outcome(found.state, transaction_uid, found.transaction_uid)
            if outcome.refused:
                raise _refuse(outcome)
            now = self._clock()
            after = ups.updated(found.attributes, changes, now)
            change = WorkitemChange(
                uid,
                found.version,
                found.state,
                found.transaction_uid,
                after,
                _reports(ups.events_of_change(found.attributes, after)),
            )
            if self._index.change(change, now):
                self.committed()
                return Answer(uid)
        raise Conflict("the workitem kept changing; try again")

    # -- Change State (11.7, N-ACTION Change UPS State) --

    def change_state(
        self, caller: Caller, uid: str, requested: str | None, transaction_uid: str | None
    ) -> Answer:
        self._allow(caller, WORKITEMS)
        if not requested:
            raise WorkitemRefused(
                "the body must hold Procedure Step State (0074,1000)",
                400,
                ups.MISSING_ATTRIBUTE,
            )
        for _ in range(_ATTEMPTS):
            found = self._index.get(uid)
            if found is None:
                raise NotFound(f"no workitem {uid}")
            outcome = ups.change_state(
                found.state, requested, transaction_uid, found.transaction_uid
            )
            if outcome.refused:
                raise _refuse(outcome)
            if outcome.next_state is None:
                return Answer(uid, outcome.warning, outcome.dicom_status)
            now = self._clock()
            held = found.transaction_uid
            if outcome.next_state == ups.IN_PROGRESS:
                after = ups.in_state(found.attributes, ups.IN_PROGRESS)
                held = transaction_uid
            elif outcome.next_state == ups.CANCELED:
                after = ups.canceled(found.attributes, now)
            else:
                faults = ups.missing_for_final(found.attributes, ups.COMPLETED)
                if faults:
                    raise WorkitemRefused(
                        "the workitem does not meet the final state requirements of "
                        "COMPLETED (PS3.4 Table CC.2.5-3): " + "; ".join(faults[:20]),
                        409,
                        ups.FINAL_STATE_NOT_MET,
                        ups.INCONSISTENT_STATE_TEXT,
                    )
                after = ups.in_state(found.attributes, ups.COMPLETED)
            change = WorkitemChange(
                uid,
                found.version,
                outcome.next_state,
                held,
                after,
                _reports(ups.events_of_change(found.attributes, after)),
                finished=outcome.next_state in ups.FINAL_STATES,
            )
            if self._index.change(change, now):
                self.committed()
                return Answer(uid, outcome.warning, outcome.dicom_status)
        raise Conflict("the workitem kept changing; try again")

    # -- Request Cancellation (11.8, N-ACTION Request UPS Cancel) --

    def request_cancel(self, caller: Caller, uid: str, request: JsonDict) -> Answer:
        self._allow(caller, WORKITEMS)
        for _ in range(_ATTEMPTS):
            found = self._index.get(uid)
            if found is None:
                raise NotFound(f"no workitem {uid}")
            outcome = ups.cancel_request_outcome(found.state)
            if outcome.refused:
                raise _refuse(outcome)
            now = self._clock()
            requesting = ups.first(request, ups.REQUESTING_AE)
            if outcome.next_state is None:
                if found.state == ups.IN_PROGRESS:
                    # The performer decides (PS3.4 CC.2.4.3.1): it is told, nothing changes.
                    info = ups.cancel_requested_report(request, requesting)
                    self._index.report(uid, [(int(ups.EventType.CANCEL_REQUESTED), info)], now)
                    self.committed()
                return Answer(uid, outcome.warning, outcome.dicom_status)
            # SCHEDULED: nobody performs it, the server cancels it itself; its subscribers see
            # it pass through IN PROGRESS to CANCELED, as the state diagram has it.
            after = ups.canceled(found.attributes, now, request)
            passing = ups.state_report(ups.in_state(found.attributes, ups.IN_PROGRESS))
            reports: list[Report] = [
                (int(ups.EventType.STATE_REPORT), passing),
                (int(ups.EventType.STATE_REPORT), ups.state_report(after)),
            ]
            change = WorkitemChange(
                uid, found.version, ups.CANCELED, None, after, reports, finished=True
            )
            if self._index.change(change, now):
                self.committed()
                return Answer(uid, outcome.warning, outcome.dicom_status)
        raise Conflict("the workitem kept changing; try again")

    # -- Subscribe (11.10), Unsubscribe (11.11), Suspend (11.12) --

    def _own(self, caller: Caller, aetitle: str) -> str:
        owner = caller.principal or "anonymous"
        held = self._index.receiver_owner(aetitle)
        if held is not None and held != owner and ADMIN not in caller.scopes:
            raise Forbidden(
                f"the AE title {aetitle} is another caller's subscriber (an admin says whose "
                "an AE title is)"
            )
        return owner

    def assign_receiver(self, caller: Caller, aetitle: str, owner: str) -> None:
        """An admin says whose an AE title is (a key `key:<id>`, a token `oidc:<subject>`):
        from then on only that caller subscribes, unsubscribes and opens its channel under
        it, whoever claimed it first."""
        caller.require(ADMIN)
        aetitle = check_aetitle(aetitle)
        if not owner or len(owner) > 300 or not owner.isprintable():
            raise InvalidRequest('the owner is a caller\'s principal, e.g. "key:0123abcd..."')
        self._index.assign_receiver(aetitle, owner)

    def subscribe(
        self,
        caller: Caller,
        target: str,
        aetitle: str,
        deletion_lock: bool,
        filter_text: str | None,
    ) -> list[str]:
        self._allow(caller, WORKITEMS)
        aetitle = check_aetitle(aetitle)
        keys: list[Key] = []
        if target == ups.FILTERED_SUBSCRIPTION:
            if not filter_text:
                raise InvalidRequest("a filtered worklist subscription needs filter=...")
            keys = ups.parse_filter(filter_text)
        elif filter_text:
            raise InvalidRequest("filter is for the filtered worklist subscription only")
        owner = self._own(caller, aetitle)
        if (
            ADMIN not in caller.scopes
            and self._index.subscriptions_of(owner) >= self.max_subscriptions_per_caller
        ):
            raise TooManyRequests(
                f"this caller holds {self.max_subscriptions_per_caller} subscriptions, as many "
                "as one may; unsubscribe one first",
                retry_after=60,
            )
        subscribed = self._index.subscribe(
            aetitle, owner, target, deletion_lock, filter_text, keys, self._clock()
        )
        if subscribed is None:
            raise NotFound(f"no workitem {target}")
        self.committed()
        return subscribed

    def unsubscribe(self, caller: Caller, target: str, aetitle: str) -> None:
        self._allow(caller, WORKITEMS)
        aetitle = check_aetitle(aetitle)
        self._own(caller, aetitle)
        if not self._index.unsubscribe(aetitle, target):
            raise NotFound(f"{aetitle} has no subscription to {target}")

    def suspend(self, caller: Caller, target: str, aetitle: str) -> None:
        self._allow(caller, WORKITEMS)
        aetitle = check_aetitle(aetitle)
        if target not in (ups.GLOBAL_SUBSCRIPTION, ups.FILTERED_SUBSCRIPTION):
            raise InvalidRequest("only a worklist subscription is suspended")
        self._own(caller, aetitle)
        if not self._index.suspend(aetitle, target):
            raise NotFound(f"{aetitle} has no subscription to {target}")

    # -- outside PS3.18: removal --

    def delete(self, caller: Caller, uid: str) -> None:
        """The administrative DELETE (an extension: UPS-RS has none): a COMPLETED or
        CANCELED workitem no deletion lock holds."""
        caller.require(ADMIN)
        found = self._index.get(uid)
        if found is None:
            raise NotFound(f"no workitem {uid}")
        if found.state not in ups.FINAL_STATES:
            raise Conflict(f"the workitem is {found.state}: only a COMPLETED or CANCELED one goes")
        if self._index.locked(uid):
            raise Conflict("a subscriber holds a deletion lock on the workitem")
        if not self._index.delete(uid):
            raise NotFound(f"no workitem {uid}")

    def purge(self, retention_seconds: float) -> int:
        """Remove the workitems finished `retention_seconds` ago that no lock holds."""
        return self._index.purge(self._clock() - retention_seconds, 500)

    def channel_owner_check(self, caller: Caller, aetitle: str) -> str:
        """The AE title whose event channel the caller may open (its own, or any for an
        admin)."""
        self._allow(caller, READ)
        aetitle = check_aetitle(aetitle)
        self._own(caller, aetitle)
        return aetitle


def _names_lock(key: Key) -> bool:
    return getattr(key, "tag", None) == int(ups.TRANSACTION_UID, 16)


def _reports(found: list[tuple[ups.EventType, JsonDict]]) -> list[Report]:
    return [(int(event), info) for event, info in found]


@dataclass(frozen=True)
class Reports:
    """A batch of event reports for one channel, and the last report row it holds (None:
    nothing to record as sent)."""

    reports: list[JsonDict]
    last: int | None


class EventChannels:
    """This process's open event channels (PS3.18 8.10.4 WebSocket connections). One
    listener wakes them all when any process commits reports (PostgreSQL LISTEN/NOTIFY, or
    `wake` from this process); each then reads its own AE title's reports from the
    database, from where the last channel of that AE title stopped, and also every
    `poll_seconds` in case a notification was lost."""

    def __init__(
        self, index: WorkitemIndex, signal: ChangeSignal | None, poll_seconds: float = 1.0
    ) -> None:
        self._index = index
        self._signal = signal
        self._poll = poll_seconds
        self.wake = Alarm()
        self._open: set[asyncio.Event] = set()
        self._task: asyncio.Task[None] | None = None
        self.started_at = time.time()
        # What each AE title has been sent and not yet recorded, and the recorders running.
        self._unrecorded: dict[str, int] = {}
        self._recording: dict[str, asyncio.Task[None]] = {}
        # The live worklist views (the web app's) open in this process, and their bound.
        self._watchers: set[asyncio.Event] = set()
        self.max_watchers = 1000

    async def _start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self.wake.bind()
        self._task = asyncio.create_task(self._relay())
        if self._signal is not None:
            self._signal.start(self.wake)

    async def _relay(self) -> None:
        while True:
            await self.wake.wait(self._poll)
            for each in self._open:
                each.set()

    async def reports(self, aetitle: str, keepalive: float = 15.0) -> AsyncIterator[Reports]:
        """The AE title's event reports, batch by batch, from the first not yet sent (the
        consumer tells which it sent: `sent`). An empty batch every `keepalive` seconds of
        quiet."""
        await self._start()
        more = asyncio.Event()
        self._open.add(more)
        try:
            cursor = await asyncio.to_thread(self._index.delivered, aetitle)
            before = await asyncio.to_thread(self._index.connected, aetitle, time.time())
            if before is not None and before < self.started_at:
                # PS3.4 CC.2.4.2: this server started since the subscriber's last channel;
                # its subscriptions are kept in the database (a warm start).
                status = ups.event_report(
                    ups.GLOBAL_SUBSCRIPTION,
                    ups.EventType.SCP_STATUS_CHANGE,
                    ups.scp_status_report("RESTARTED"),
                    0,
                )
                yield Reports([status], None)
            quiet = 0.0
            while True:
                found = await asyncio.to_thread(self._index.events, aetitle, cursor, 100)
                if found:
                    cursor = found[-1].seq
                    yield Reports(
                        [
                            ups.event_report(
                                e.workitem_uid, ups.EventType(e.event_type), e.info, e.seq
                            )
                            for e in found
                        ],
                        cursor,
                    )
                    quiet = 0.0
                    continue
                more.clear()
                try:
                    async with asyncio.timeout(self._poll):
                        await more.wait()
                except TimeoutError:
                    quiet += self._poll
                    if quiet >= keepalive:
                        quiet = 0.0
                        yield Reports([], None)
        finally:
            self._open.discard(more)

    async def worklist_changes(self, keepalive: float = 15.0) -> AsyncIterator[bool]:
        """True each time the worklist changed (any workitem made, changed or removed, by
        any process), False after `keepalive` seconds of quiet: a live view's cue to read it
        again. Woken as the event channels are (a commit here, PostgreSQL's notification,
        else every poll interval), each wake one cheap look at the worklist's marker."""
        if len(self._watchers) >= self.max_watchers:
            raise Unavailable("too many live worklist views are open; try again later")
        await self._start()
        more = asyncio.Event()
        self._open.add(more)
        self._watchers.add(more)
        try:
            seen = await asyncio.to_thread(self._index.marker)
            quiet = 0.0
            while True:
                more.clear()
                try:
                    async with asyncio.timeout(self._poll):
                        await more.wait()
                except TimeoutError:
                    quiet += self._poll
                try:
                    now = await asyncio.to_thread(self._index.marker)
                except Unavailable:
                    continue  # the database is back soon: the next wake looks again
                if now != seen:
                    seen = now
                    quiet = 0.0
                    yield True
                elif quiet >= keepalive:
                    quiet = 0.0
                    yield False
        finally:
            self._open.discard(more)
            self._watchers.discard(more)

    def sent(self, aetitle: str, batch: Reports) -> None:
        """The batch reached the subscriber: a later channel starts after it. Recorded in
        the background, newest first (a write that waits for the database's writers must
        not hold the channel back), and whether or not the channel closes meanwhile."""
        if batch.last is None:
            return
        self._unrecorded[aetitle] = max(batch.last, self._unrecorded.get(aetitle, 0))
        if aetitle not in self._recording:
            self._recording[aetitle] = asyncio.create_task(self._record(aetitle))

    async def _record(self, aetitle: str) -> None:
        try:
            while aetitle in self._unrecorded:
                seq = self._unrecorded.pop(aetitle)
                await asyncio.to_thread(self._index.mark_delivered, aetitle, seq)
        except Exception as exc:  # noqa: BLE001 - a later channel resends; at least once
            log.warning("recording sent event reports failed: %s", type(exc).__name__)
        finally:
            self._recording.pop(aetitle, None)

    def close_signal(self) -> None:
        if self._signal is not None:
            self._signal.close()
