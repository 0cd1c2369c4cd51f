"""The change log read three ways: the feed (pages by sequence), the live streams of this
process (one reader of the log, many subscribers) and, through the same filters, webhooks.

The log is the one source: every entry was written in the transaction of its change, and its
sequences become visible in order (index/sql/store.py), so a reader that resumes after the
last sequence it saw misses nothing, whichever process it reads through.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dicomweb_server.dicom.errors import InvalidQuery
from dicomweb_server.dicom.matching import SearchRequest, parse_match, parse_search
from dicomweb_server.services.context import READ, Caller
from dicomweb_server.services.errors import Busy, TooManyRequests
from dicomweb_server.services.ports.changes import EVERY_ACTION, Change, ChangeLog, ChangeSignal
from dicomweb_server.services.search import SearchService

log = logging.getLogger("dicomweb_server.changes")

DEFAULT_FEED_LIMIT = 100
# The hub's window floor before its reader has found the end of the log.
_NOT_YET = 2**63
MAX_FEED_LIMIT = 1000


@dataclass(frozen=True)
class ChangeFilter:
    """What a subscriber wants: some actions (None: all), some studies (None: all), and
    QIDO keys on the study (PS3.18 10.6.1.2) that its study must match."""

    actions: frozenset[str] | None = None
    study_uids: frozenset[str] | None = None
    study_keys: SearchRequest | None = None

    def __post_init__(self) -> None:
        if self.actions is not None and not self.actions <= EVERY_ACTION:
            unknown = ", ".join(sorted(self.actions - EVERY_ACTION))
            known = ", ".join(sorted(EVERY_ACTION))
            raise InvalidQuery(f"unknown action(s) {unknown}; known: {known}")

    def quick(self, change: Change) -> bool:
        """Whether the entry passes the checks that need no index."""
        return (self.actions is None or change.action in self.actions) and (
            self.study_uids is None or change.study_uid in self.study_uids
        )


def entry_fields(change: Change) -> dict[str, Any]:
    """An entry as Microsoft's change feed writes it (its field names, `Uid` and all),
    without the metadata."""
    stamp = datetime.fromtimestamp(change.timestamp, UTC).isoformat(timespec="milliseconds")
    return {
        "Sequence": change.sequence,
        "StudyInstanceUid": change.study_uid,
        "SeriesInstanceUid": change.series_uid,
        "SopInstanceUid": change.sop_uid,
        "Action": change.action,
        "Timestamp": stamp.replace("+00:00", "Z"),
        "State": change.state,
    }


# Short names a subscriber may use for the study keys most filters need.
_ALIASES = {"study": "StudyInstanceUID", "patient": "PatientID", "modality": "ModalitiesInStudy"}


def parse_filter(params: Iterable[tuple[str, str]]) -> ChangeFilter:
    """A subscriber's filter from its query parameters: `action` (create, update, delete;
    comma-separated or repeated), `StudyInstanceUID` (or `study`; a list), and any QIDO key
    on the study (PS3.18 10.6.1.2), `patient` and `modality` short for PatientID and
    ModalitiesInStudy."""
    actions: set[str] | None = None
    studies: set[str] | None = None
    keys: list[tuple[str, str]] = []
    for name, value in params:
        name = _ALIASES.get(name.lower(), name)
        if name.lower() == "action":
            actions = (actions or set()) | {v.strip().lower() for v in value.split(",") if v}
        elif name in ("StudyInstanceUID", "0020000D", "0020000d"):
            match = parse_match("StudyInstanceUID", value)
            studies = (studies or set()) | set(match.values)
        elif name.lower() in ("limit", "offset", "includefield"):
            raise InvalidQuery(f"{name} does not apply to a change filter")
        else:
            keys.append((name, value))
    request = parse_search(keys) if keys else None
    if request is not None and not request.matches:
        request = None
    return ChangeFilter(
        None if actions is None else frozenset(actions),
        None if studies is None else frozenset(studies),
        request,
    )


class ChangeFeed:
    def __init__(self, log: ChangeLog, search: SearchService) -> None:
        self.log = log
        self._search = search

    def read(
        self,
        caller: Caller,
        after: int,
        limit: int | None,
        with_metadata: bool = False,
        with_stable: bool = False,
    ) -> list[Change]:
        """The entries after sequence `after` the caller may see, at most `limit`; the
        stable-study events only when asked (the feed of instances is Microsoft's)."""
        caller.require(READ)
        if limit is None:
            limit = DEFAULT_FEED_LIMIT
        if not 1 <= limit <= MAX_FEED_LIMIT:
            raise InvalidQuery(f"limit must be from 1 to {MAX_FEED_LIMIT}")
        return self.log.read(
            max(after, 0), limit, caller.studies, with_metadata, instances_only=not with_stable
        )

    def latest(self, caller: Caller, with_stable: bool = False) -> Change | None:
        caller.require(READ)
        return self.log.latest(caller.studies, instances_only=not with_stable)

    def select(self, caller: Caller, wanted: ChangeFilter, batch: list[Change]) -> list[Change]:
        """The entries of `batch` that `wanted` takes and the caller may see; the index is
        asked only when the caller's scope or study keys need it (one query for the batch)."""
        kept = [c for c in batch if wanted.quick(c)]
        if not kept or (caller.studies is None and wanted.study_keys is None):
            return kept
        request = wanted.study_keys or SearchRequest()
        visible = self._search.matching_studies(caller, request, [c.study_uid for c in kept])
        return [c for c in kept if c.study_uid in visible]


class Alarm:
    """A wake-up for a task on an event loop that any thread may give (a store's commit, a
    LISTEN thread); bound to the loop of the task that waits on it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()

    def __call__(self) -> None:
        loop, event = self._loop, self._event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(event.set)

    async def wait(self, timeout: float) -> bool:
        """Whether a wake-up came within `timeout` seconds (it is then taken)."""
        assert self._event is not None, "bind() first"
        try:
            async with asyncio.timeout(timeout):
                await self._event.wait()
        except TimeoutError:
            return False
        finally:
            self._event.clear()
        return True


def stream_holder(caller: Caller) -> str:
    """Whose share of the live streams a stream counts against: the credential's principal,
    else (no access control) the client's address."""
    return caller.principal or f"address:{caller.client or '-'}"


class ChangeHub:
    """This process's live subscribers, fed by one reader of the log.

    The reader wakes when the signal says another process committed entries (PostgreSQL
    LISTEN/NOTIFY), when this process stored some (`wake`), and every `poll_seconds` in any
    case (a notification lost with a dropped connection delays an event, never loses it).
    It keeps the newest entries in memory; each subscriber has its own cursor and reads from
    there, or from the log itself when it is further behind (a resumed stream), so a slow
    subscriber costs no memory and misses nothing.
    """

    def __init__(
        self,
        feed: ChangeFeed,
        signal: ChangeSignal | None,
        poll_seconds: float = 1.0,
        max_subscribers: int = 1000,
        kept: int = 2000,
        max_per_caller: int | None = None,
    ) -> None:
        self._feed = feed
        self._signal = signal
        self._poll = poll_seconds
        self._max = max_subscribers
        # One caller's share of the streams (a tenth by default): one key or share session
        # cannot take every slot from everyone else.
        self._max_per_caller = max_per_caller or max(1, max_subscribers // 10)
        self._per_caller: collections.Counter[str] = collections.Counter()
        self._recent: collections.deque[Change] = collections.deque(maxlen=kept)
        # The recent entries are every entry above this sequence (up to `cursor`).
        self._floor = 0
        self.cursor = 0
        # New entries may be in the log (callable from any thread).
        self.wake = Alarm()
        self._task: asyncio.Task[None] | None = None
        self._subscribers: set[asyncio.Event] = set()

    async def _start(self) -> None:
        # No await before the task exists: two streams opening at once start one reader.
        if self._task is not None and not self._task.done():
            return
        self.wake.bind()
        # Until the reader knows where the log ends, subscribers read the log themselves.
        self._floor, self.cursor = _NOT_YET, 0
        self._recent.clear()
        self._task = asyncio.create_task(self._follow())
        if self._signal is not None:
            self._signal.start(self.wake)

    async def _follow(self) -> None:
        while self._floor == _NOT_YET:
            try:
                self.cursor = self._floor = await asyncio.to_thread(self._feed.log.newest)
            except Exception as exc:  # noqa: BLE001 - tried again after the poll interval
                log.warning("reading the change log failed: %s", type(exc).__name__)
                await asyncio.sleep(self._poll)
        while True:
            await self.wake.wait(self._poll)
            try:
                await self._read_new()
            except Exception as exc:  # noqa: BLE001 - the next wake or poll tries again
                log.warning("reading the change log failed: %s", type(exc).__name__)

    async def _read_new(self) -> None:
        while True:
            batch = await asyncio.to_thread(self._feed.log.read, self.cursor, 500, None)
            if not batch:
                return
            overflows = len(self._recent) + len(batch) > (self._recent.maxlen or 0)
            self._recent.extend(batch)  # the deque drops its oldest entries itself
            if overflows:
                # The window now holds every entry from its first on (none lies between
                # what it dropped and its first).
                self._floor = self._recent[0].sequence - 1
            self.cursor = batch[-1].sequence
            for more in self._subscribers:
                more.set()
            if len(batch) < 500:
                return

    def _kept_after(self, position: int) -> list[Change] | None:
        """The kept entries above `position`, or None when it is behind the window."""
        if position < self._floor:
            return None
        sequences = [c.sequence for c in self._recent]
        return list(self._recent)[bisect.bisect_right(sequences, position) :]

    async def open(self, caller: Caller, wanted: ChangeFilter, after: int | None) -> Subscription:
        """A subscription to the entries after `after` (None: those committed from now on)
        that `wanted` takes and the caller may see; its place in the log is fixed here, so
        nothing committed once this returns is missed."""
        caller.require(READ)
        if len(self._subscribers) >= self._max:
            raise Busy("this server process has as many live streams as it takes")
        holder = stream_holder(caller)
        if self._per_caller[holder] >= self._max_per_caller:
            raise TooManyRequests(
                f"this caller has {self._max_per_caller} live streams open, as many as one "
                "caller may; close one first",
                retry_after=5,
            )
        await self._start()
        if after is None:
            after = await asyncio.to_thread(self._feed.log.newest)
        subscription = Subscription(self, caller, wanted, max(after, 0))
        self._subscribers.add(subscription.more)
        self._per_caller[holder] += 1
        return subscription

    def _leave(self, subscription: Subscription) -> None:
        if subscription.more in self._subscribers:
            self._subscribers.discard(subscription.more)
            holder = stream_holder(subscription._caller)
            self._per_caller[holder] -= 1
            if self._per_caller[holder] <= 0:
                del self._per_caller[holder]

    def close_signal(self) -> None:
        """Stop listening (at shutdown; the reader's task ends with its event loop)."""
        if self._signal is not None:
            self._signal.close()


class Subscription:
    """One live subscriber's cursor in the log (made by `ChangeHub.open`)."""

    def __init__(self, hub: ChangeHub, caller: Caller, wanted: ChangeFilter, after: int) -> None:
        self._hub = hub
        self._caller = caller
        self._wanted = wanted
        self.position = after
        self.more = asyncio.Event()

    async def batches(self, keepalive: float = 15.0) -> AsyncIterator[list[Change]]:
        """The subscriber's entries in order, batch by batch; an empty batch every
        `keepalive` seconds of quiet (for the stream's keep-alive). Ends the subscription
        when the iteration ends."""
        hub = self._hub
        try:
            while True:
                found = hub._kept_after(self.position)
                if found is None:
                    found = await asyncio.to_thread(hub._feed.log.read, self.position, 500, None)
                if found:
                    self.position = found[-1].sequence
                    chosen = await asyncio.to_thread(
                        hub._feed.select, self._caller, self._wanted, found
                    )
                    if chosen:
                        yield chosen
                    continue
                self.more.clear()
                if self.position < hub.cursor:
                    continue
                try:
                    async with asyncio.timeout(keepalive):
                        await self.more.wait()
                except TimeoutError:
                    yield []
        finally:
            self.close()

    def close(self) -> None:
        self._hub._leave(self)


async def announce_stable_periodically(
    changes: ChangeLog, quiet_seconds: float, announced: Callable[[], None]
) -> None:
    """Every few seconds, log the series and studies quiet for `quiet_seconds` (Orthanc's
    StableAge); any number of processes may run this, each arrival is announced once."""
    interval = min(max(quiet_seconds / 4, 0.1), 5.0)
    while True:
        await asyncio.sleep(interval)
        now = time.time()
        try:
            made = await asyncio.to_thread(changes.announce_stable, now - quiet_seconds, now)
        except Exception as exc:  # noqa: BLE001 - the next round tries again
            log.warning("announcing stable studies failed: %s", type(exc).__name__)
            continue
        if made:
            announced()
