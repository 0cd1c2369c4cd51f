"""UPS-RS (PS3.18 chapter 11) over a real socket, on SQLite and PostgreSQL: every
transaction, the state machine of PS3.4 Table CC.1.1-2 with its statuses and warnings, and
the event reports over a real WebSocket client (the `websockets` package)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
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
