"""UPS-RS (PS3.18 chapter 11) over a real socket, on SQLite and PostgreSQL: every
transaction, the state machine of PS3.4 Table CC.1.1-2 with its statuses and warnings, and
the event reports over a real WebSocket client (the `websockets` package)."""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, make_settings, private_server
from tests.factories import make_instance, make_workitem, performed
from tests.helpers import stow
from tests.integration.test_migrations import pg_schema

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


def test_a_conformant_client_creates_with_an_empty_transaction_uid(client: httpx.Client) -> None:
    # PS3.4 Table CC.2.5-3: Transaction UID is Type 2 on N-CREATE, "shall be empty"; clients
    # that follow the table (dcm4chee's web UI among them) send it present and empty.
    workitem = make_workitem()
    workitem[TXN] = {"vr": "UI"}
    uid = generate_uid()
    answer = _post(client, [workitem], workitem=uid)
    assert answer.status_code == 201, answer.text
    [item] = client.get(f"/workitems/{uid}").json()
    assert TXN not in item
    # and it can be claimed, which is when a Transaction UID comes
    assert change_state(client, uid, "IN PROGRESS", generate_uid()).status_code == 200
    workitem[TXN] = {"vr": "UI", "Value": [generate_uid()]}
    refused = _post(client, [workitem], workitem=generate_uid())
    assert refused.status_code == 400
    assert "must be empty" in refused.json()["error"]


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
    ("COMPLETED", "cancelrequest", None, 409, "C311", "The UPS is already COMPLETED."),
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


# -- the lock is never shown (PS3.18 11.5.2, 11.9) --------------------------------------------

_steps = st.lists(
    st.sampled_from(["claim", "update", "cancelrequest", "complete", "cancel"]), max_size=4
)
_workitems = st.builds(
    make_workitem,
    label=st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=20),
    priority=st.sampled_from(["HIGH", "MEDIUM", "LOW"]),
    patient_id=st.text("ABCDEF0123456789-", min_size=1, max_size=12),
    station=st.none() | st.sampled_from(["CT-1", "MR-2"]),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(workitem=_workitems, steps=_steps)
def test_retrieve_and_search_never_show_the_transaction_uid(
    client: httpx.Client, workitem: dict[str, Any], steps: list[str]
) -> None:
    uid = create(client, workitem)
    txn = generate_uid()
    for step in steps:
        if step == "claim":
            change_state(client, uid, "IN PROGRESS", txn)
        elif step == "update":
            client.post(
                f"/workitems/{uid}?{txn}",
                content=json.dumps([performed()]),
                headers={"Content-Type": JSON},
            )
        elif step == "cancelrequest":
            client.post(f"/workitems/{uid}/cancelrequest")
        else:
            change_state(client, uid, step.upper().replace("CANCEL", "CANCELED"), txn)
    shown = [
        *client.get(f"/workitems/{uid}").json(),
        *client.get("/workitems", params={"00080018": uid}).json(),
        *client.get("/workitems", params={"00080018": uid, "includefield": "all"}).json(),
        *client.get("/workitems", params={"00080018": uid, "includefield": "00081195"}).json(),
    ]
    assert len(shown) == 4
    assert all(TXN not in item for item in shown)
    assert txn not in json.dumps(shown)


def test_the_transaction_uid_is_no_search_key(client: httpx.Client) -> None:
    uid = create(client)
    txn = generate_uid()
    assert change_state(client, uid, "IN PROGRESS", txn).status_code == 200
    answer = client.get("/workitems", params={"TransactionUID": txn})
    assert answer.status_code == 400
    assert "Transaction UID" in answer.json()["error"]


# -- Create: the N-CREATE requirements (PS3.4 Table CC.2.5-3) ---------------------------------


def _post(client: httpx.Client, body: Any, **params: str) -> httpx.Response:
    return client.post(
        "/workitems", params=params, content=json.dumps(body), headers={"Content-Type": JSON}
    )


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"00741200": None}, "ScheduledProcedureStepPriority (0074,1200) is missing"),
        (
            {"00404005": {"vr": "DT"}},
            "ScheduledProcedureStepStartDateTime (0040,4005) has no value",
        ),
        ({"00100010": None}, "PatientName (0010,0010) is missing"),  # Type 2
        ({"00741200": {"vr": "CS", "Value": ["URGENT"]}}, "HIGH, MEDIUM or LOW"),
        ({"00741000": {"vr": "CS", "Value": ["IN PROGRESS"]}}, "must be SCHEDULED"),
        ({"00081195": {"vr": "UI", "Value": ["1.2.3"]}}, "new workitem must be empty"),
    ],
)
def test_create_refuses_what_the_table_refuses(
    client: httpx.Client, change: dict[str, Any], words: str
) -> None:
    workitem = make_workitem()
    for key, value in change.items():
        if value is None:
            del workitem[key]
        else:
            workitem[key] = value
    answer = _post(client, [workitem], workitem=generate_uid())
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]
    assert client.get("/workitems").status_code == 204  # nothing half-made


def test_create_rules_on_the_workitem_uid(client: httpx.Client) -> None:
    uid = generate_uid()
    assert _post(client, [make_workitem()], workitem=uid).status_code == 201
    again = _post(client, [make_workitem()], workitem=uid)
    assert (again.status_code, again.json()["status"]) == (409, "0111")
    # In the body instead of the query; both and differing; neither (the server makes one).
    in_body = generate_uid()
    assert _post(client, [make_workitem(in_body)]).status_code == 201
    assert client.get(f"/workitems/{in_body}").status_code == 200
    assert (
        _post(client, [make_workitem(generate_uid())], workitem=generate_uid()).status_code == 400
    )
    made = _post(client, [make_workitem()])
    assert made.status_code == 201
    assert "created with modifications" in made.headers["warning"]
    assert httpx.get(made.headers["location"]).status_code == 200
    # The bare form of PS3.18's request line, /workitems?{uid}
    bare = generate_uid()
    answer = client.post(
        f"/workitems?{bare}", content=json.dumps([make_workitem()]), headers={"Content-Type": JSON}
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["location"].endswith(bare)


def test_bad_bodies_get_a_clear_4xx(client: httpx.Client) -> None:
    uid = generate_uid()
    for body, content_type, status in [
        (b"not json", JSON, 400),
        (b"[{}, {}]", JSON, 400),
        (b'[{"00741200": {"vr": "XX"}}]', JSON, 400),
        (b"<NativeDicomModel", "application/dicom+xml", 400),
        (b"[]", "text/plain", 415),
        (b'[{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A\\u0000"}]}}]', JSON, 400),
        (b"[" * 5000, JSON, 400),
    ]:
        answer = client.post(
            f"/workitems?workitem={uid}", content=body, headers={"Content-Type": content_type}
        )
        assert answer.status_code == status, (body[:40], answer.text)
        assert "error" in answer.json()
    huge = b'[{"00100010": {"vr": "LO", "Value": ["' + b"x" * 2_000_000 + b'"]}}]'
    answer = client.post("/workitems", content=huge, headers={"Content-Type": JSON})
    assert answer.status_code == 413


def test_xml_bodies_and_answers(client: httpx.Client) -> None:
    from dicomweb_server.dicom.xml_model import json_to_native

    uid = generate_uid()
    document = json_to_native(make_workitem(label="from XML"))
    answer = client.post(
        f"/workitems?workitem={uid}",
        content=document,
        headers={"Content-Type": "application/dicom+xml"},
    )
    assert answer.status_code == 201, answer.text
    boundary = "XMLPART"
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom+xml\r\n\r\n".encode()
        + json_to_native(make_workitem(label="multipart"))
        + f"\r\n--{boundary}--\r\n".encode()
    )
    other = generate_uid()
    answer = client.post(
        f"/workitems?workitem={other}",
        content=body,
        headers={
            "Content-Type": f'multipart/related; type="application/dicom+xml"; boundary={boundary}'
        },
    )
    assert answer.status_code == 201, answer.text
    got = client.get(
        f"/workitems/{uid}", headers={"Accept": 'multipart/related; type="application/dicom+xml"'}
    )
    assert got.status_code == 200
    assert got.headers["content-type"].startswith("multipart/related")
    assert b"from XML" in got.content and b"00081195" not in got.content
    assert client.get(f"/workitems/{other}").json()[0]["00741204"]["Value"] == ["multipart"]


# -- Search (PS3.18 11.9): the QIDO matching engine on workitems ------------------------------


def test_search_matches_like_qido(client: httpx.Client) -> None:
    early = create(client, make_workitem(patient_name="Smith^Anna", start="20261201080000"))
    late = create(
        client, make_workitem(patient_name="Smyth^Bob", start="20261203080000", priority="HIGH")
    )
    other = create(client, make_workitem(patient_name="Jones^Carl", start="20261202080000"))

    def found(**params: str) -> list[str]:
        answer = client.get("/workitems", params=params)
        if answer.status_code == 204:
            return []
        assert answer.status_code == 200, answer.text
        return sorted(item["00080018"]["Value"][0] for item in answer.json())

    assert found(PatientName="Sm*") == sorted([early, late])
    assert found(PatientName="smith^anna") == [early]
    assert found(ScheduledProcedureStepPriority="HIGH") == [late]
    assert found(ScheduledProcedureStepStartDateTime="20261202000000-") == sorted([late, other])
    assert found(ProcedureStepState="SCHEDULED") == sorted([early, late, other])
    assert found(**{"ScheduledWorkitemCodeSequence.CodeValue": "AI-1"}) == sorted(
        [early, late, other]
    )
    assert found(**{"ReferencedRequestSequence.AccessionNumber": "NOPE"}) == []
    assert change_state(client, other, "IN PROGRESS", generate_uid()).status_code == 200
    assert found(ProcedureStepState="IN PROGRESS") == [other]
    # Paging: limit and offset, with Link rel=next while more match.
    page = client.get("/workitems", params={"limit": "2"})
    assert page.status_code == 200 and len(page.json()) == 2
    assert 'rel="next"' in page.headers["link"]
    rest = client.get("/workitems", params={"limit": "2", "offset": "2"})
    assert len(rest.json()) == 1 and "link" not in rest.headers
    assert client.get("/workitems", params={"PatientName": "Nobody"}).status_code == 204
    assert client.get("/workitems", params={"limit": "x"}).status_code == 400
    # A date that does not exist is a mistake of the query, not a match of nothing.
    for start in ("20231399", "20230230-20230301"):
        bad = client.get("/workitems", params={"ScheduledProcedureStepStartDateTime": start})
        assert bad.status_code == 400, bad.text
        assert "not a valid DT value" in bad.json()["error"]


# -- Scopes: workitems to create and change, read to search and subscribe ---------------------


def test_scopes(tmp_path: Path, archive: RunningServer) -> None:
    if archive.database != "sqlite":
        pytest.skip("access control does not depend on the database")
    settings = make_settings(tmp_path, auth="api-key")
    with private_server(settings) as (client, container):
        reader = container.access.create_key("reader", {"read"}).secret
        worker = container.access.create_key("worker", {"read", "workitems"}).secret
        admin = container.access.create_key("admin", {"admin", "read", "workitems"}).secret

        def as_(key: str | None) -> dict[str, str]:
            return {"X-API-Key": key} if key else {}

        uid = generate_uid()
        body = json.dumps([make_workitem()])
        headers = {"Content-Type": JSON}
        assert client.post(f"/workitems?{uid}", content=body, headers=headers).status_code == 401
        assert (
            client.post(
                f"/workitems?{uid}", content=body, headers={**headers, **as_(reader)}
            ).status_code
            == 403
        )
        assert (
            client.post(
                f"/workitems?{uid}", content=body, headers={**headers, **as_(worker)}
            ).status_code
            == 201
        )
        assert client.get("/workitems", headers=as_(reader)).status_code == 200
        # Subscribing takes scope workitems: a read-only key cannot squat an AE title.
        assert (
            client.post(f"/workitems/{uid}/subscribers/AI_TRIAGE", headers=as_(reader)).status_code
            == 403
        )
        other = container.access.create_key("other", {"read", "workitems"}).secret
        assert (
            client.post(f"/workitems/{uid}/subscribers/WORKER", headers=as_(worker)).status_code
            == 201
        )
        # An AE title is its subscriber's: another caller may not take it over ...
        assert (
            client.delete(f"/workitems/{uid}/subscribers/WORKER", headers=as_(other)).status_code
            == 403
        )
        # ... unless an admin says it is that caller's (a squatter loses it).
        squatted = client.post(f"/workitems/{uid}/subscribers/AI_TRIAGE", headers=as_(other))
        assert squatted.status_code == 201
        worker_id = "key:" + worker.split("_")[1]
        given = client.put(
            "/subscribers/AI_TRIAGE/owner", json={"owner": worker_id}, headers=as_(admin)
        )
        assert given.status_code == 204, given.text
        assert (
            client.put(
                "/subscribers/AI_TRIAGE/owner", json={"owner": worker_id}, headers=as_(worker)
            ).status_code
            == 403
        )
        assert (
            client.delete(f"/workitems/{uid}/subscribers/AI_TRIAGE", headers=as_(other)).status_code
            == 403
        )
        assert (
            client.delete(
                f"/workitems/{uid}/subscribers/AI_TRIAGE", headers=as_(worker)
            ).status_code
            == 200
        )
        state = json.dumps(
            [{STATE: {"vr": "CS", "Value": ["IN PROGRESS"]}, TXN: {"vr": "UI", "Value": [uid]}}]
        )
        assert (
            client.put(
                f"/workitems/{uid}/state", content=state, headers={**headers, **as_(reader)}
            ).status_code
            == 403
        )
        assert (
            client.put(
                f"/workitems/{uid}/state", content=state, headers={**headers, **as_(worker)}
            ).status_code
            == 200
        )
        # Removal is an administrator's, and of finished workitems only.
        assert client.delete(f"/workitems/{uid}", headers=as_(worker)).status_code == 403
        assert client.delete(f"/workitems/{uid}", headers=as_(admin)).status_code == 409


def test_a_browser_authenticates_its_event_channel_in_the_first_message(
    tmp_path: Path, archive: RunningServer
) -> None:
    """A browser cannot set headers on a WebSocket, and no credential goes into a URL: the
    channel opened without one takes `{"authorization": "Bearer <key>"}` as its first
    message; anything else closes it with the reason (1008)."""
    if archive.database != "sqlite":
        pytest.skip("access control does not depend on the database")
    settings = make_settings(tmp_path, auth="api-key")
    with private_server(settings) as (client, container):
        reader = container.access.create_key("reader", {"read", "workitems"}).secret
        worker = container.access.create_key("worker", {"read", "workitems"}).secret
        as_reader = {"Authorization": f"Bearer {reader}"}
        made = client.post(f"/workitems/{GLOBAL}/subscribers/BROWSER", headers=as_reader)
        assert made.status_code == 201, made.text
        url = str(client.base_url).replace("http", "ws", 1).rstrip("/") + "/subscribers/BROWSER"

        async def first_report(message: str) -> dict[str, Any]:
            async with websockets.connect(url) as socket:
                await socket.send(message)
                uid = generate_uid()
                created = client.post(
                    f"/workitems?{uid}",
                    content=json.dumps([make_workitem()]),
                    headers={"Content-Type": JSON, "X-API-Key": worker},
                )
                assert created.status_code == 201
                return dict(json.loads(await asyncio.wait_for(socket.recv(), 10)))

        report = asyncio.run(first_report(json.dumps({"authorization": f"Bearer {reader}"})))
        assert report[EVENT_TYPE]["Value"] == [1]

        async def refused(message: str) -> websockets.ConnectionClosed:
            async with websockets.connect(url) as socket:
                await socket.send(message)
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 10)
                return closed.value

        for bad in ("hello", json.dumps({"authorization": "Bearer dwk_0_x"})):
            closed = asyncio.run(refused(bad))
            assert closed.rcvd is not None and closed.rcvd.code == 1008, bad
        # The worker is not the AE title's subscriber: its credential opens no channel of it.
        closed = asyncio.run(refused(json.dumps({"authorization": f"Bearer {worker}"})))
        assert closed.rcvd is not None and closed.rcvd.code == 1008


def test_the_worklist_stream_tells_a_live_view_of_every_change(client: httpx.Client) -> None:
    """`GET /workitems/stream` (Server-Sent Events, read with the credential in a header):
    `event: changed` soon after a workitem is made, changed or removed."""
    seen: queue.Queue[str] = queue.Queue()
    opened = threading.Event()

    def read() -> None:
        with client.stream("GET", "/workitems/stream", timeout=30) as answer:
            assert answer.headers["content-type"].startswith("text/event-stream")
            opened.set()
            told = 0
            for line in answer.iter_lines():
                if line.startswith("event: "):
                    seen.put(line)
                    told += 1
                    if told >= 2:
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(10)
    time.sleep(0.3)
    uid = create(client)
    started = time.monotonic()
    assert seen.get(timeout=5) == "event: changed"
    assert time.monotonic() - started < 3
    assert change_state(client, uid, "IN PROGRESS", generate_uid()).status_code == 200
    assert seen.get(timeout=5) == "event: changed"
    reader.join(timeout=10)


def test_the_worklist_stream_takes_the_credential_in_a_header(
    tmp_path: Path, archive: RunningServer
) -> None:
    if archive.database != "sqlite":
        pytest.skip("access control does not depend on the database")
    with private_server(make_settings(tmp_path, auth="api-key")) as (client, container):
        reader = container.access.create_key("reader", {"read"}).secret
        ward = container.access.create_key("ward", {"read"}, None, {"Ward 1"}).secret
        assert client.get("/workitems/stream").status_code == 401
        with client.stream(
            "GET", "/workitems/stream", headers={"Authorization": f"Bearer {reader}"}
        ) as answer:
            assert answer.status_code == 200
            assert next(answer.iter_lines()) == ": worklist"
        limited = client.get("/workitems/stream", headers={"Authorization": f"Bearer {ward}"})
        assert limited.status_code == 403


def test_subscriptions_per_caller_are_bounded(
    tmp_path: Path, archive: RunningServer, request: pytest.FixtureRequest
) -> None:
    url = None
    if archive.database == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "ups_bounded")
    with private_server(make_settings(tmp_path, url, auth="api-key")) as (client, container):
        container.workitems.max_subscriptions_per_caller = 3
        worker = container.access.create_key("w", {"read", "workitems"}).secret
        admin = container.access.create_key("a", {"admin", "read", "workitems"}).secret
        answers = [
            client.post(
                f"/workitems/{GLOBAL}/subscribers/AE{n}", headers={"X-API-Key": worker}
            ).status_code
            for n in range(4)
        ]
        assert answers == [201, 201, 201, 429]
        # An admin is not bounded (it may clean up); a freed place is taken again.
        assert (
            client.post(
                f"/workitems/{GLOBAL}/subscribers/ADMIN1", headers={"X-API-Key": admin}
            ).status_code
            == 201
        )
        gone = client.delete(f"/workitems/{GLOBAL}/subscribers/AE0", headers={"X-API-Key": worker})
        assert gone.status_code == 200
        again = client.post(f"/workitems/{GLOBAL}/subscribers/AE3", headers={"X-API-Key": worker})
        assert again.status_code == 201


# -- removal: the administrative DELETE, the retention, deletion locks -------------------------


def _finish(client: httpx.Client, uid: str) -> None:
    txn = generate_uid()
    assert change_state(client, uid, "IN PROGRESS", txn).status_code == 200
    assert change_state(client, uid, "CANCELED", txn).status_code == 200


def own_settings(
    archive: RunningServer, request: pytest.FixtureRequest, tmp_path: Path, **extra: object
) -> Any:
    """Settings for a server of the test's own, on the backend's database (a fresh schema of
    the test database on PostgreSQL)."""
    url = None
    if archive.database == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), f"ups_{request.node.name[5:20]}")
    return make_settings(tmp_path, url, **extra)


def test_delete_and_retention_respect_deletion_locks(
    tmp_path: Path, archive: RunningServer, request: pytest.FixtureRequest
) -> None:
    settings = own_settings(archive, request, tmp_path, workitem_retention_seconds=0.5)
    with private_server(settings) as (client, _):
        gone, kept, removed = create(client), create(client), create(client)
        assert client.delete(f"/workitems/{removed}").status_code == 409  # still SCHEDULED
        for uid in (gone, kept, removed):
            _finish(client, uid)
        subscribe(client, kept, "KEEPER", deletionlock="true")
        assert client.delete(f"/workitems/{kept}").status_code == 409  # the lock holds it
        assert client.delete(f"/workitems/{removed}").status_code == 204
        assert client.get(f"/workitems/{removed}").status_code == 404
        deadline = time.monotonic() + 10
        while client.get(f"/workitems/{gone}").status_code != 404:
            assert time.monotonic() < deadline, "the finished workitem was not purged"
            time.sleep(0.2)
        assert client.get(f"/workitems/{kept}").status_code == 200
        assert client.delete(f"/workitems/{kept}/subscribers/KEEPER").status_code == 200
        while client.get(f"/workitems/{kept}").status_code != 404:
            assert time.monotonic() < deadline, "the unlocked workitem was not purged"
            time.sleep(0.2)


def test_a_restarted_server_says_so_on_the_channel(
    tmp_path: Path, archive: RunningServer, request: pytest.FixtureRequest
) -> None:
    settings = own_settings(archive, request, tmp_path)
    with private_server(settings) as (client, _):
        uid = create(client)
        channel = Channel(subscribe(client, uid, "RESTART"))
        assert kind(channel.next()) == (uid, 1, "SCHEDULED")
        channel.close()
    with private_server(settings) as (client, _):
        channel = Channel(
            client.base_url.copy_with(scheme="ws").join("subscribers/RESTART").__str__()
        )
        try:
            report = channel.next()
            assert report[EVENT_TYPE]["Value"] == [4]  # SCP Status Change
            assert report["00741242"]["Value"] == ["RESTARTED"]
            assert report["00741244"]["Value"] == ["WARM START"]
            assert change_state(client, uid, "IN PROGRESS", generate_uid()).status_code == 200
            assert kind(channel.next()) == (uid, 1, "IN PROGRESS")
        finally:
            channel.close()


# -- workitems made by ingest rules -------------------------------------------------------------

RULES = json.dumps(
    [
        {
            "name": "ct-triage",
            "filter": "modality=CT",
            "label": "AI triage",
            "worklist": "AI",
            "priority": "HIGH",
            "code": "AI-TRIAGE^99LOCAL^AI triage",
        }
    ]
)


def test_a_rule_makes_one_workitem_per_stable_study(
    tmp_path: Path, archive: RunningServer, request: pytest.FixtureRequest
) -> None:
    settings = own_settings(archive, request, tmp_path, workitem_rules=RULES, stable_seconds=0.3)
    with private_server(settings) as (client, _):
        ct_study, mr_study = generate_uid(), generate_uid()
        for study, modality in ((ct_study, "CT"), (mr_study, "MR")):
            items = [make_instance(study_uid=study, modality=modality) for _ in range(2)]
            assert stow(client, items).status_code == 200
        deadline = time.monotonic() + 15
        while (answer := client.get("/workitems")).status_code == 204:
            assert time.monotonic() < deadline, "no workitem was made"
            time.sleep(0.2)
        [made] = answer.json()
        assert made["00741204"]["Value"] == ["AI triage"]
        assert made["00741200"]["Value"] == ["HIGH"]
        assert made["00404021"]["Value"][0]["0020000D"]["Value"] == [ct_study]
        [study] = client.get("/studies", params={"StudyInstanceUID": ct_study}).json()
        assert made["00100020"] == study["00100020"]  # the study's patient
        # More instances make the study stable again: still one workitem.
        assert stow(client, [make_instance(study_uid=ct_study, modality="CT")]).status_code == 200
        time.sleep(1.5)
        assert len(client.get("/workitems").json()) == 1
