"""UPS-RS (PS3.18 chapter 11) over a real socket, on SQLite and PostgreSQL: every
transaction, the state machine of PS3.4 Table CC.1.1-2 with its statuses and warnings, and
the event reports over a real WebSocket client (the `websockets` package)."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
from typing import Any

import httpx
import pytest
import websockets
from pydicom.uid import generate_uid

from tests.factories import make_workitem, performed

pytestmark = pytest.mark.parametrize("server", ["sqlite", "postgresql"], indirect=True)

JSON = "application/dicom+json"
STATE, TXN = "00741000", "00081195"


def create(
    client: httpx.Client, workitem: dict[str, Any] | None = None, uid: str | None = None
) -> str:
    uid = uid or generate_uid()
    answer = client.post(
        "/workitems",
        params={"workitem": uid},
        content=json.dumps([workitem or make_workitem()]),
        headers={"Content-Type": JSON},
    )
    assert answer.status_code == 201, answer.text
    return uid


def change_state(client: httpx.Client, uid: str, state: str, txn: str | None) -> httpx.Response:
    body: dict[str, Any] = {STATE: {"vr": "CS", "Value": [state]}}
    if txn is not None:
        body[TXN] = {"vr": "UI", "Value": [txn]}
    return client.put(
        f"/workitems/{uid}/state", content=json.dumps([body]), headers={"Content-Type": JSON}
    )


def test_create_then_retrieve(client: httpx.Client) -> None:
    uid = generate_uid()
    answer = client.post(
        "/workitems",
        params={"workitem": uid},
        content=json.dumps([make_workitem()]),
        headers={"Content-Type": JSON},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"].endswith(f"/workitems/{uid}")
    got = client.get(f"/workitems/{uid}", headers={"Accept": JSON})
    assert got.status_code == 200, got.text
    [item] = got.json()
    assert item["00080018"]["Value"] == [uid]
    assert item[STATE]["Value"] == ["SCHEDULED"]
    assert item["00080016"]["Value"] == ["1.2.840.10008.5.1.4.34.6.1"]
    assert TXN not in item


def test_claim_complete_and_the_lock_is_never_shown(client: httpx.Client) -> None:
    uid = create(client)
    txn = generate_uid()
    assert change_state(client, uid, "IN PROGRESS", txn).status_code == 200
    for shown in (client.get(f"/workitems/{uid}").json(), client.get("/workitems").json()):
        assert all(TXN not in item for item in shown)
    refused = change_state(client, uid, "COMPLETED", txn)
    assert refused.status_code == 409, refused.text
    assert refused.json()["status"] == "C304"
    update = client.post(
        f"/workitems/{uid}",
        params={"transaction": txn},
        content=json.dumps([performed()]),
        headers={"Content-Type": JSON},
    )
    assert update.status_code == 200, update.text
    done = change_state(client, uid, "COMPLETED", txn)
    assert done.status_code == 200, done.text
    again = change_state(client, uid, "COMPLETED", txn)
    assert again.status_code == 200
    assert "already in the requested state of COMPLETED" in again.headers["warning"]


# -- the state machine: every (state x request) pair ------------------------------------------

UNCLAIMED = "The target URI did not reference a claimed Workitem."
INCONSISTENT = "The submitted request is inconsistent with the state of the UPS Instance."
UPDATE_INCONSISTENT = (
    "The submitted request is inconsistent with the current state of the Workitem."
)
MISSING = "The Transaction UID is missing."
INCORRECT = "The Transaction UID is incorrect."


def in_state(client: httpx.Client, state: str) -> tuple[str, str | None]:
    """A workitem in `state`, and the Transaction UID it holds."""
    uid = create(client)
    if state == "SCHEDULED":
        return uid, None
    if state == "CANCELED (requested)":
        assert client.post(f"/workitems/{uid}/cancelrequest").status_code == 202
        return uid, None
    txn = generate_uid()
    assert change_state(client, uid, "IN PROGRESS", txn).status_code == 200
    if state == "COMPLETED":
        update = client.post(
            f"/workitems/{uid}?{txn}",
            content=json.dumps([performed()]),
            headers={"Content-Type": JSON},
        )
        assert update.status_code == 200, update.text
        assert change_state(client, uid, "COMPLETED", txn).status_code == 200
    elif state == "CANCELED":
        assert change_state(client, uid, "CANCELED", txn).status_code == 200
    return uid, txn


# (state, request, the Transaction UID sent: "held", "other" or None) -> (HTTP status, DICOM
# status, Warning text). PS3.4 Table CC.1.1-2 (the state table) with the statuses of
# CC.2.1.3 (Change State), CC.2.6 (N-SET) and CC.2.4.3 (Request Cancel); the HTTP answers
# and Warning texts of PS3.18 11.6.3, 11.7.3 and 11.8.3.
STATE_TABLE = [
    # SCHEDULED: no Transaction UID is held; a claim brings one.
    ("SCHEDULED", "IN PROGRESS", "other", 200, None, None),
    ("SCHEDULED", "IN PROGRESS", None, 400, "C301", MISSING),
    ("SCHEDULED", "COMPLETED", "other", 409, "C310", INCONSISTENT),
    ("SCHEDULED", "COMPLETED", None, 400, "C301", MISSING),
    ("SCHEDULED", "CANCELED", "other", 409, "C310", INCONSISTENT),
    ("SCHEDULED", "CANCELED", None, 400, "C301", MISSING),
    ("SCHEDULED", "SCHEDULED", "other", 409, "C303", INCONSISTENT),
    ("SCHEDULED", "update", None, 200, None, None),
    ("SCHEDULED", "update", "other", 409, "C310", UPDATE_INCONSISTENT),
    ("SCHEDULED", "cancelrequest", None, 202, None, None),
    # IN PROGRESS: the claim's Transaction UID is needed.
    ("IN PROGRESS", "IN PROGRESS", "held", 409, "C302", INCONSISTENT),
    ("IN PROGRESS", "IN PROGRESS", "other", 409, "C302", INCONSISTENT),
    ("IN PROGRESS", "IN PROGRESS", None, 400, "C301", MISSING),
    ("IN PROGRESS", "COMPLETED", "held", 409, "C304", INCONSISTENT),  # final state unmet
    ("IN PROGRESS", "COMPLETED", "other", 400, "C301", INCORRECT),
    ("IN PROGRESS", "COMPLETED", None, 400, "C301", MISSING),
    ("IN PROGRESS", "CANCELED", "held", 200, None, None),
    ("IN PROGRESS", "CANCELED", "other", 400, "C301", INCORRECT),
    ("IN PROGRESS", "CANCELED", None, 400, "C301", MISSING),
    ("IN PROGRESS", "SCHEDULED", "held", 409, "C303", INCONSISTENT),
    ("IN PROGRESS", "update", "held", 200, None, None),
    ("IN PROGRESS", "update", "other", 400, "C301", UNCLAIMED),
    ("IN PROGRESS", "update", None, 400, "C301", UNCLAIMED),
    ("IN PROGRESS", "cancelrequest", None, 202, None, None),
    # COMPLETED
    ("COMPLETED", "IN PROGRESS", "other", 409, "C300", INCONSISTENT),
    ("COMPLETED", "IN PROGRESS", None, 400, "C301", MISSING),
    (
        "COMPLETED",
        "COMPLETED",
        "held",
        200,
        "B306",
        "The UPS is already in the requested state of COMPLETED.",
    ),
    ("COMPLETED", "COMPLETED", "other", 400, "C301", INCORRECT),
    ("COMPLETED", "CANCELED", "held", 409, "C300", INCONSISTENT),
    ("COMPLETED", "CANCELED", "other", 400, "C301", INCORRECT),
    ("COMPLETED", "SCHEDULED", "held", 409, "C303", INCONSISTENT),
    ("COMPLETED", "update", "held", 400, "C300", UPDATE_INCONSISTENT),
    ("COMPLETED", "cancelrequest", None, 409, "C311", UPDATE_INCONSISTENT),
    # CANCELED
    ("CANCELED", "IN PROGRESS", "other", 409, "C300", INCONSISTENT),
    ("CANCELED", "COMPLETED", "held", 409, "C300", INCONSISTENT),
    ("CANCELED", "COMPLETED", "other", 400, "C301", INCORRECT),
    (
        "CANCELED",
        "CANCELED",
        "held",
        200,
        "B304",
        "The UPS is already in the requested state of CANCELED.",
    ),
    ("CANCELED", "CANCELED", "other", 400, "C301", INCORRECT),
    ("CANCELED", "SCHEDULED", "held", 409, "C303", INCONSISTENT),
    ("CANCELED", "update", "held", 400, "C300", UPDATE_INCONSISTENT),
    (
        "CANCELED",
        "cancelrequest",
        None,
        202,
        "B304",
        "The UPS is already in the requested state of CANCELED.",
    ),
    # CANCELED by a cancellation request while SCHEDULED: it holds no Transaction UID.
    ("CANCELED (requested)", "CANCELED", "other", 400, "C301", INCORRECT),
    (
        "CANCELED (requested)",
        "cancelrequest",
        None,
        202,
        "B304",
        "The UPS is already in the requested state of CANCELED.",
    ),
]


@pytest.mark.parametrize(
    ("state", "request_", "sent", "http", "dicom", "warning"),
    STATE_TABLE,
    ids=[f"{r[0]}-{r[1]}-{r[2]}" for r in STATE_TABLE],
)
def test_state_table(
    client: httpx.Client,
    state: str,
    request_: str,
    sent: str | None,
    http: int,
    dicom: str | None,
    warning: str | None,
) -> None:
    uid, held = in_state(client, state)
    txn = {"held": held, "other": generate_uid(), None: None}[sent]
    if request_ == "update":
        url = f"/workitems/{uid}" + (f"?transaction={txn}" if txn else "")
        body = {"00741204": {"vr": "LO", "Value": ["relabelled"]}}
        answer = client.post(url, content=json.dumps([body]), headers={"Content-Type": JSON})
    elif request_ == "cancelrequest":
        answer = client.post(f"/workitems/{uid}/cancelrequest")
    else:
        answer = change_state(client, uid, request_, txn)
    assert answer.status_code == http, answer.text
    if answer.status_code >= 400:
        assert answer.json()["status"] == dicom
    if warning is None:
        assert "warning" not in answer.headers
    else:
        assert answer.headers["warning"] == f'299 dicomweb-server "{warning}"'
    shown = client.get(f"/workitems/{uid}").json()[0]
    assert "00081195" not in shown


# -- subscriptions and event reports over a real WebSocket ------------------------------------

GLOBAL, FILTERED = "1.2.840.10008.5.1.4.34.5", "1.2.840.10008.5.1.4.34.5.1"
EVENT_TYPE, AFFECTED = "00001002", "00001000"


class Channel:
    """A subscriber's event channel (the `websockets` client), read in a thread of its own."""

    def __init__(self, url: str) -> None:
        self.messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._opened = threading.Event()
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed: websockets.ConnectionClosed | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run(url)), daemon=True)
        self._thread.start()
        assert self._opened.wait(10), "the channel did not open"

    async def _run(self, url: str) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with websockets.connect(url) as socket:
            self._opened.set()

            async def read() -> None:
                try:
                    async for text in socket:
                        self.messages.put(json.loads(text))
                except websockets.ConnectionClosed as closed:
                    self.closed = closed

            reader = asyncio.create_task(read())
            stopper = asyncio.create_task(self._stop.wait())
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            reader.cancel()
            stopper.cancel()

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.messages.get(timeout=timeout)

    def quiet(self, seconds: float = 1.0) -> bool:
        try:
            self.messages.get(timeout=seconds)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)


def subscribe(client: httpx.Client, target: str, aetitle: str, **params: str) -> str:
    answer = client.post(f"/workitems/{target}/subscribers/{aetitle}", params=params)
    assert answer.status_code == 201, answer.text
    location = answer.headers["content-location"]
    assert location.startswith("ws://") and location.endswith(f"/subscribers/{aetitle}")
    return location


def kind(report: dict[str, Any]) -> tuple[str, int, str | None]:
    state = report.get(STATE, {}).get("Value", [None])[0]
    return report[AFFECTED]["Value"][0], report[EVENT_TYPE]["Value"][0], state


def test_global_subscriber_is_told_of_each_change(client: httpx.Client) -> None:
    existing = create(client)
    channel = Channel(subscribe(client, GLOBAL, "WATCHER"))
    try:
        # A new subscription: the current State Report of each workitem, at once.
        first = channel.next()
        assert kind(first) == (existing, 1, "SCHEDULED")
        assert first["00000002"]["Value"] == ["1.2.840.10008.5.1.4.34.6.4"]
        assert first["00404041"]["Value"] == ["READY"]
        uid = create(client, make_workitem(station="CT-3"))
        assert kind(channel.next()) == (uid, 1, "SCHEDULED")
        assigned = channel.next()
        assert kind(assigned)[:2] == (uid, 5)  # UPS Assigned: a station is scheduled
        assert assigned["00404025"]["Value"][0]["00080100"]["Value"] == ["CT-3"]
        txn = generate_uid()
        assert change_state(client, uid, "IN PROGRESS", txn).status_code == 200
        assert kind(channel.next()) == (uid, 1, "IN PROGRESS")
        progress = {
            "00741002": {
                "vr": "SQ",
                "Value": [{"00741004": {"vr": "DS", "Value": [40]}}],
            }
        }
        answer = client.post(
            f"/workitems/{uid}?transaction={txn}",
            content=json.dumps([progress]),
            headers={"Content-Type": JSON},
        )
        assert answer.status_code == 200, answer.text
        report = channel.next()
        assert kind(report)[:2] == (uid, 3)
        assert report["00741002"]["Value"][0]["00741004"]["Value"] == [40]
        reason = {"00741238": {"vr": "LT", "Value": ["wrong patient"]}}
        answer = client.post(
            f"/workitems/{uid}/cancelrequest",
            content=json.dumps([reason]),
            headers={"Content-Type": JSON},
        )
        assert answer.status_code == 202
        asked = channel.next()
        assert kind(asked)[:2] == (uid, 2)
        assert asked["00741238"]["Value"] == ["wrong patient"]
        assert change_state(client, uid, "CANCELED", txn).status_code == 200
        canceled = channel.next()
        assert kind(canceled) == (uid, 1, "CANCELED")
        assert canceled["0074100E"]["Value"][0]["00080100"]["Value"] == ["110513"]
    finally:
        channel.close()


def test_workitem_and_filtered_subscriptions(client: httpx.Client) -> None:
    high = create(client, make_workitem(priority="HIGH"))
    low = create(client, make_workitem(priority="LOW"))
    one = Channel(subscribe(client, low, "ONE"))
    filtered = Channel(
        subscribe(client, FILTERED, "URGENT", filter="ScheduledProcedureStepPriority=HIGH")
    )
    try:
        assert kind(one.next()) == (low, 1, "SCHEDULED")
        assert kind(filtered.next()) == (high, 1, "SCHEDULED")
        later_high = create(client, make_workitem(priority="HIGH"))
        create(client, make_workitem(priority="LOW"))
        assert kind(filtered.next()) == (later_high, 1, "SCHEDULED")
        assert filtered.quiet()  # the LOW one is not theirs
        assert one.quiet()
        assert change_state(client, low, "IN PROGRESS", generate_uid()).status_code == 200
        assert kind(one.next()) == (low, 1, "IN PROGRESS")
    finally:
        one.close()
        filtered.close()


def test_a_subscriber_that_reconnects_gets_what_it_missed(client: httpx.Client) -> None:
    url = subscribe(client, GLOBAL, "AGAIN")
    first = Channel(url)
    made = [create(client)]
    assert kind(first.next())[0] == made[0]
    first.close()
    made += [create(client), create(client)]
    second = Channel(url)
    try:
        assert [kind(second.next())[0] for _ in range(2)] == made[1:]
        assert second.quiet()
    finally:
        second.close()


def test_suspend_and_unsubscribe(client: httpx.Client) -> None:
    url = subscribe(client, GLOBAL, "PAUSE")
    channel = Channel(url)
    try:
        before = create(client)
        assert kind(channel.next())[0] == before
        assert client.post(f"/workitems/{GLOBAL}/subscribers/PAUSE/suspend").status_code == 200
        create(client)
        assert channel.quiet()  # no new workitems ...
        assert change_state(client, before, "IN PROGRESS", generate_uid()).status_code == 200
        assert kind(channel.next()) == (before, 1, "IN PROGRESS")  # ... the old ones stay
        assert client.delete(f"/workitems/{GLOBAL}/subscribers/PAUSE").status_code == 200
        assert client.post(f"/workitems/{before}/cancelrequest").status_code == 202
        assert channel.quiet()
        assert client.delete(f"/workitems/{GLOBAL}/subscribers/PAUSE").status_code == 404
    finally:
        channel.close()
