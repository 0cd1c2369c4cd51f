"""The change feed and its live streams (issue 16), on every backend pair: one entry per
stored instance in sequence order, resumable; Server-Sent Events (httpx streaming) and
WebSocket (the `websockets` client) over a real socket; the UID service."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from pydicom.uid import generate_uid

from dicomweb_server.dicom.uids import is_valid_uid
from tests.conftest import RunningServer, make_settings, private_server
from tests.factories import make_instance
from tests.helpers import stow

FIELDS = {
    "Sequence",
    "StudyInstanceUid",
    "SeriesInstanceUid",
    "SopInstanceUid",
    "Action",
    "Timestamp",
    "State",
}


def _store(client: httpx.Client, count: int = 1, **attributes: Any) -> list[Any]:
    study = generate_uid()
    items = [make_instance(study_uid=study, **attributes) for _ in range(count)]
    answer = stow(client, items)
    assert answer.status_code == 200, answer.text
    return items


def test_every_stored_instance_has_one_create_entry_in_order(client: httpx.Client) -> None:
    first = _store(client, 3)
    second = _store(client, 2, modality="MR")
    feed = client.get("/changefeed")
    assert feed.status_code == 200, feed.text
    entries = feed.json()
    assert [set(e) for e in entries] == [FIELDS] * 5
    sequences = [e["Sequence"] for e in entries]
    assert sequences == sorted(sequences) and len(set(sequences)) == 5
    assert {e["SopInstanceUid"] for e in entries} == {
        str(ds.SOPInstanceUID) for ds in first + second
    }
    assert {e["Action"] for e in entries} == {"create"}
    assert {e["State"] for e in entries} == {"current"}
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", e["Timestamp"]) for e in entries
    )
    # Resumed after any sequence: exactly the rest, in order; pages of `limit`.
    assert client.get("/changefeed", params={"after": sequences[1]}).json() == entries[2:]
    assert client.get("/changefeed", params={"offset": sequences[1]}).json() == entries[2:]
    assert client.get("/changefeed", params={"limit": 2}).json() == entries[:2]
    assert client.get("/changefeed", params={"after": sequences[-1]}).json() == []
    assert client.get("/changefeed/latest").json() == entries[-1]
    # A duplicate (policy: ignore) changes nothing, so it logs nothing.
    assert stow(client, first[:1]).status_code in (200, 202)
    assert client.get("/changefeed").json() == entries


def test_entries_carry_the_metadata_when_asked(client: httpx.Client) -> None:
    (ds,) = _store(client)
    (plain,) = client.get("/changefeed").json()
    assert "Metadata" not in plain
    (full,) = client.get("/changefeed", params={"includemetadata": "true"}).json()
    metadata = full["Metadata"]
    assert metadata["00080018"]["Value"] == [str(ds.SOPInstanceUID)]
    uri = metadata["7FE00010"]["BulkDataURI"]
    assert uri.startswith(str(client.base_url).rstrip("/") + "/studies/")
    assert client.get(uri).status_code == 200


def test_an_empty_feed(client: httpx.Client) -> None:
    assert client.get("/changefeed").json() == []
    latest = client.get("/changefeed/latest")
    assert latest.status_code == 200 and latest.json() is None


@pytest.mark.parametrize(
    "params",
    [
        {"after": "-1"},
        {"after": "x"},
        {"limit": "0"},
        {"limit": "100000"},
        {"includemetadata": "maybe"},
        {"since": "1"},
    ],
)
def test_bad_feed_parameters_answer_400_with_the_reason(
    client: httpx.Client, params: dict[str, str]
) -> None:
    answer = client.get("/changefeed", params=params)
    assert answer.status_code == 400, answer.text
    assert next(iter(params)) in answer.text or "limit" in answer.text


def test_replacing_an_instance_logs_an_update_and_marks_the_old_entry_replaced(
    tmp_path: Any,
) -> None:
    settings = make_settings(tmp_path, duplicate_policy="overwrite")
    with private_server(settings) as (client, _):
        (ds,) = _store(client)
        ds.StudyDescription = "AGAIN"
        assert stow(client, [ds]).status_code == 200
        created, updated = client.get("/changefeed").json()
        assert (created["Action"], created["State"]) == ("create", "replaced")
        assert (updated["Action"], updated["State"]) == ("update", "current")
        assert created["SopInstanceUid"] == updated["SopInstanceUid"]


def _events(lines: Any, count: int) -> list[dict[str, Any]]:
    """`count` Server-Sent Events from a line iterator (comments skipped)."""
    found: list[dict[str, Any]] = []
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if "data" in event:
                found.append(event)
                if len(found) == count:
                    return found
            event = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            event[name] = value
    raise AssertionError(f"the stream ended after {len(found)} events")


def test_server_sent_events_stream_new_entries_and_resume(
    archive: RunningServer, client: httpx.Client
) -> None:
    with (
        httpx.Client(base_url=archive.base_url, timeout=30) as listener,
        listener.stream("GET", "/changefeed/stream") as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = stream.iter_lines()
        assert next(lines).startswith(":")  # the stream is open before anything is stored
        stored = _store(client, 2)
        events = _events(lines, 2)
    assert [e["event"] for e in events] == ["create", "create"]
    data = [json.loads(e["data"]) for e in events]
    assert [d["SopInstanceUid"] for d in data] == [str(ds.SOPInstanceUID) for ds in stored]
    assert [int(e["id"]) for e in events] == [d["Sequence"] for d in data]
    more = _store(client, 1)
    # Resumed after the first event with Last-Event-ID: the second, then the new one.
    with httpx.Client(base_url=archive.base_url, timeout=30) as listener:
        headers = {"Last-Event-ID": events[0]["id"]}
        with listener.stream("GET", "/changefeed/stream", headers=headers) as stream:
            resumed = _events(stream.iter_lines(), 2)
    assert [json.loads(e["data"])["SopInstanceUid"] for e in resumed] == [
        str(stored[1].SOPInstanceUID),
        str(more[0].SOPInstanceUID),
    ]


def _ws_url(archive: RunningServer, query: str = "") -> str:
    return archive.base_url.replace("http://", "ws://") + "/changefeed/ws" + query


async def _receive(url: str, count: int, ready: threading.Event) -> list[dict[str, Any]]:
    async with websockets.connect(url) as socket:
        ready.set()
        return [json.loads(await asyncio.wait_for(socket.recv(), 30)) for _ in range(count)]


def test_websocket_streams_the_entries_its_filter_takes(
    archive: RunningServer, client: httpx.Client
) -> None:
    ready = threading.Event()
    received: list[dict[str, Any]] = []

    def listen() -> None:
        received.extend(asyncio.run(_receive(_ws_url(archive, "?modality=MR"), 2, ready)))

    thread = threading.Thread(target=listen)
    thread.start()
    assert ready.wait(30)
    _store(client, 1, modality="CT")  # not taken by the filter
    wanted = _store(client, 2, modality="MR")
    thread.join(60)
    assert [r["SopInstanceUid"] for r in received] == [str(ds.SOPInstanceUID) for ds in wanted]
    assert {r["Action"] for r in received} == {"create"}


def test_websocket_resumes_after_a_sequence(archive: RunningServer, client: httpx.Client) -> None:
    stored = _store(client, 3)
    first = client.get("/changefeed").json()[0]["Sequence"]
    received = asyncio.run(
        _receive(_ws_url(archive, f"?after={first}&action=create"), 2, threading.Event())
    )
    assert [r["SopInstanceUid"] for r in received] == [str(ds.SOPInstanceUID) for ds in stored[1:]]


def test_websocket_refuses_a_bad_filter_with_the_reason(archive: RunningServer) -> None:
    async def attempt() -> websockets.ConnectionClosed:
        async with websockets.connect(_ws_url(archive, "?action=explode")) as socket:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(socket.recv(), 30)
            return closed.value

    closed = asyncio.run(attempt())
    assert closed.rcvd is not None and closed.rcvd.code == 1008
    assert "explode" in closed.rcvd.reason


def test_the_uid_service_makes_fresh_valid_uids(client: httpx.Client) -> None:
    answer = client.post("/uids", params={"count": 50})
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert len(made) == len(set(made)) == 50
    assert all(u.startswith("2.25.") and is_valid_uid(u) and len(u) <= 64 for u in made)
    assert client.post("/uids").json()[0].startswith("2.25.")
    for bad in ("0", "1001", "x", "-1"):
        assert client.post("/uids", params={"count": bad}).status_code == 400


def test_the_uid_service_under_an_organisation_root(tmp_path: Any) -> None:
    root = "1.2.826.0.1.3680043.10.1543"
    with private_server(make_settings(tmp_path, uid_root=root)) as (client, _):
        made = client.post("/uids", params={"count": 20}).json()
    assert all(u.startswith(root + ".") and is_valid_uid(u) and len(u) == 64 for u in made)
    assert len(set(made)) == 20


def test_streams_opened_at_once_on_a_fresh_process_each_get_every_entry_once(
    tmp_path: Any,
) -> None:
    """The first subscribers of a process start one reader of the log between them."""
    with private_server(make_settings(tmp_path)) as (client, _):
        url = str(client.base_url).replace("http://", "ws://").rstrip("/") + "/changefeed/ws"

        async def run() -> tuple[list[list[str]], list[str]]:
            sockets = await asyncio.gather(*(websockets.connect(url) for _ in range(5)))
            stored = await asyncio.to_thread(_store, client, 3)
            got = []
            for socket in sockets:
                entries = [json.loads(await asyncio.wait_for(socket.recv(), 30)) for _ in range(3)]
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(socket.recv(), 0.5)  # nothing twice
                await socket.close()
                got.append([e["SopInstanceUid"] for e in entries])
            return got, [str(ds.SOPInstanceUID) for ds in stored]

        got, expected = asyncio.run(run())
        assert got == [expected] * 5


def test_one_caller_cannot_take_every_stream_slot(archive: RunningServer, tmp_path: Path) -> None:
    """DICOMWEB_MAX_STREAMS_PER_CALLER: past its share a caller's next stream is 429; other
    callers still get theirs (issue 31)."""
    if archive.backend != "sqlite":
        pytest.skip("the stream slots do not depend on the backends")
    settings = make_settings(tmp_path, auth="api-key", max_streams=10, max_streams_per_caller=2)
    with private_server(settings) as (client, container):
        one = {"Authorization": f"Bearer {container.access.create_key('a', {'read'}).secret}"}
        two = {"Authorization": f"Bearer {container.access.create_key('b', {'read'}).secret}"}
        with contextlib.ExitStack() as held:
            for _ in range(2):
                opened = held.enter_context(client.stream("GET", "/changefeed/stream", headers=one))
                assert opened.status_code == 200
            refused = client.get("/changefeed/stream", headers=one)
            assert refused.status_code == 429 and "close one" in refused.json()["error"]
            with client.stream("GET", "/changefeed/stream", headers=two) as other:
                assert other.status_code == 200
        # Closed streams give their slots back.
        deadline = time.monotonic() + 10
        while True:
            with client.stream("GET", "/changefeed/stream", headers=one) as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline
            time.sleep(0.2)
