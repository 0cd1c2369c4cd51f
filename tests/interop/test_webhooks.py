"""Webhooks (issue 16) against a real HTTP receiver on loopback: deliveries arrive signed
per Standard Webhooks (checked by this file's own implementation of the scheme, not the
server's), in order per study, through an outage of the receiver; a tampered body fails the
check; 410 disables the subscription; failures past the limit become dead letters that can
be re-driven; a filter narrows what is sent; payloads carry UIDs and URLs, no patient data."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from pydicom.uid import generate_uid

from tests.conftest import make_settings, private_server
from tests.factories import make_instance
from tests.helpers import stow
from tests.integration.test_migrations import pg_schema


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, written from the scheme: HMAC-SHA256 keyed with the
    base64-decoded secret (after `whsec_`) over `{id}.{timestamp}.{body}`, base64, compared
    with each `v1,` signature of the header; the timestamp within 5 minutes."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    message = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()
    if abs(time.time() - int(headers["webhook-timestamp"])) > 300:
        return False
    return any(
        hmac.compare_digest(sig.partition(",")[2], expected)
        for sig in headers["webhook-signature"].split()
        if sig.startswith("v1,")
    )


class Receiver:
    """A webhook receiver on a loopback port; `answer` decides each status."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.contacted = 0
        self.answer: Callable[[dict[str, Any]], int] = lambda _: 204
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                outer.contacted += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = outer.answer(orjson.loads(body))
                if 200 <= status < 300:
                    outer.received.append((headers, body))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict[str, Any]]:
        return [orjson.loads(body) for _, body in self.received]

    def wait_for(self, count: int, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while len({h["webhook-id"] for h, _ in self.received}) < count:
            assert time.monotonic() < deadline, f"{len(self.received)} of {count} arrived"
            time.sleep(0.05)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


@pytest.fixture(params=["sqlite", "postgresql"])
def hooks(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[httpx.Client]:
    url = None
    if request.param == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "webhooks")
    settings = make_settings(
        tmp_path,
        url,
        webhook_retry_base_seconds=0.05,
        webhook_retry_max_seconds=0.3,
        webhook_max_attempts=40,
        changes_poll_seconds=0.2,
        webhook_allow_private=True,
    )
    with private_server(settings) as (client, _):
        yield client


def _subscribe(client: httpx.Client, receiver: Receiver, **extra: Any) -> dict[str, Any]:
    made = client.post("/subscriptions", json={"url": receiver.url, **extra})
    assert made.status_code == 201, made.text
    return dict(made.json())


def test_deliveries_arrive_signed_and_in_order_per_study_through_an_outage(
    hooks: httpx.Client, receiver: Receiver
) -> None:
    sub = _subscribe(hooks, receiver)
    assert sub["secret"].startswith("whsec_") and sub["state"] == "active"
    back_at = time.monotonic() + 1.5
    receiver.answer = lambda _: 503 if time.monotonic() < back_at else 200
    studies = [generate_uid() for _ in range(3)]
    stored: dict[str, list[str]] = {s: [] for s in studies}
    for _ in range(4):
        for study in studies:
            ds = make_instance(study_uid=study, patient_name="Secret^Patient")
            assert stow(hooks, [ds]).status_code == 200
            stored[study].append(str(ds.SOPInstanceUID))
    receiver.wait_for(12, seconds=60)
    firsts: dict[str, tuple[dict[str, str], bytes]] = {}
    for headers, body in receiver.received:
        firsts.setdefault(headers["webhook-id"], (headers, body))
    for headers, body in firsts.values():
        assert headers["content-type"] == "application/cloudevents+json"
        assert verify(sub["secret"], headers, body)
        assert not verify(sub["secret"], headers, body.replace(b"created", b"deleted"))
        assert b"Secret" not in body  # no patient data unless asked for
    events = [orjson.loads(body) for _, body in firsts.values()]
    for study in studies:
        arrived = [
            e["data"]["SopInstanceUid"] for e in events if e["data"]["StudyInstanceUid"] == study
        ]
        assert arrived == stored[study]
    event = events[0]
    assert event["specversion"] == "1.0" and event["type"] == "org.dicomweb.instance.created"
    assert event["id"] == firsts[event["id"]][0]["webhook-id"]
    data = event["data"]
    assert hooks.get(data["InstanceUrl"], headers={"Accept": "application/dicom"}).status_code in (
        200,
        406,
    )
    assert data["StudyUrl"].endswith(f"/studies/{data['StudyInstanceUid']}")
    assert "Metadata" not in data


def test_a_filter_narrows_what_is_sent_and_metadata_comes_when_asked(
    hooks: httpx.Client, receiver: Receiver
) -> None:
    _subscribe(hooks, receiver, filter="modality=MR&action=create", include_metadata=True)
    assert stow(hooks, [make_instance(modality="CT")]).status_code == 200
    mr = make_instance(modality="MR")
    assert stow(hooks, [mr]).status_code == 200
    receiver.wait_for(1)
    time.sleep(1)  # nothing else comes
    (event,) = receiver.events()
    assert event["data"]["SopInstanceUid"] == str(mr.SOPInstanceUID)
    assert event["data"]["Metadata"]["00080060"]["Value"] == ["MR"]


def test_410_disables_the_subscription(hooks: httpx.Client, receiver: Receiver) -> None:
    sub = _subscribe(hooks, receiver)
    calls: list[int] = []

    def gone(_: dict[str, Any]) -> int:
        calls.append(1)
        return 410

    receiver.answer = gone
    assert stow(hooks, [make_instance()]).status_code == 200
    deadline = time.monotonic() + 30
    while hooks.get(f"/subscriptions/{sub['id']}").json()["state"] != "disabled":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert "410" in hooks.get(f"/subscriptions/{sub['id']}").json()["disabled_reason"]
    assert stow(hooks, [make_instance()]).status_code == 200
    time.sleep(1)
    assert len(calls) == 1
    # Enabled again, it delivers what waited.
    receiver.answer = lambda _: 200
    assert hooks.post(f"/subscriptions/{sub['id']}/enable").json()["state"] == "active"
    receiver.wait_for(2)


def test_failures_past_the_limit_become_dead_letters_that_can_be_redriven(
    tmp_path: Path, receiver: Receiver
) -> None:
    settings = make_settings(
        tmp_path,
        webhook_retry_base_seconds=0.02,
        webhook_retry_max_seconds=0.05,
        webhook_max_attempts=3,
        changes_poll_seconds=0.1,
        webhook_allow_private=True,
    )
    tries: list[int] = []

    def failing(_: dict[str, Any]) -> int:
        tries.append(1)
        return 500

    receiver.answer = failing
    with private_server(settings) as (client, _):
        sub = _subscribe(client, receiver)
        assert stow(client, [make_instance(), make_instance()]).status_code == 200
        deadline = time.monotonic() + 30
        while len(letters := client.get(f"/subscriptions/{sub['id']}/dead-letters").json()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert [x["attempts"] for x in letters] == [3, 3]
        assert letters[0]["last_status"] == 500
        assert len(tries) == 6
        receiver.answer = lambda _: 200
        redriven = client.post(f"/subscriptions/{sub['id']}/dead-letters/redrive")
        assert redriven.json() == {"redriven": 2}
        receiver.wait_for(2)
        assert client.get(f"/subscriptions/{sub['id']}/dead-letters").json() == []
        assert {e["id"] for e in receiver.events()} == {x["webhook_id"] for x in letters}


def test_bad_subscriptions_are_refused_with_the_reason(hooks: httpx.Client) -> None:
    for body in (
        {"url": "ftp://example.org/"},
        {"url": "http://127.0.0.1:9/", "filter": "action=explode"},
        {"url": "http://127.0.0.1:9/", "secret": "not-a-secret"},
        {"url": "http://127.0.0.1:9/", "include_metadata": "yes"},
        {"filter": "modality=CT"},
    ):
        answer = hooks.post("/subscriptions", json=body)
        assert answer.status_code == 400, (body, answer.text)
    assert hooks.get("/subscriptions/nope").status_code == 404
    assert hooks.delete("/subscriptions/nope").status_code == 404


def test_a_restart_loses_no_delivery(tmp_path: Path, receiver: Receiver) -> None:
    """Deliveries are rows: made while the receiver is down, still sent by the next
    process once it is back."""
    settings = make_settings(
        tmp_path,
        webhook_retry_base_seconds=0.05,
        webhook_retry_max_seconds=0.2,
        changes_poll_seconds=0.1,
        webhook_allow_private=True,
    )
    receiver.answer = lambda _: 503
    with private_server(settings) as (client, _):
        _subscribe(client, receiver)
        stored = [make_instance() for _ in range(3)]
        assert stow(client, stored).status_code == 200
        time.sleep(0.5)
    assert receiver.received == []
    receiver.answer = lambda _: 200
    with private_server(settings, upgrade=False) as (client, _):
        receiver.wait_for(3)
    assert sorted(e["data"]["SopInstanceUid"] for e in receiver.events()) == sorted(
        str(ds.SOPInstanceUID) for ds in stored
    )


# -- receivers inside the network (SSRF) and secrets at rest ----------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8080/hook", "loopback"),
        ("http://localhost/hook", "loopback"),
        ("http://[::1]/hook", "loopback"),
        ("http://[::ffff:127.0.0.1]/hook", "loopback"),
        ("http://10.1.2.3/hook", "private"),
        ("http://172.16.0.9/hook", "private"),
        ("https://192.168.1.1/hook", "private"),
        ("http://[fd00::1]/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://[fe80::1]/hook", "link-local"),
        ("http://0.0.0.0/hook", "unspecified"),
        ("http://224.0.0.1/hook", "multicast"),
        ("http://100.64.0.1/hook", "not globally reachable"),
        ("http://no-such-host.invalid/hook", "does not resolve"),
    ],
)
def test_receivers_inside_the_network_are_refused(tmp_path: Path, url: str, reason: str) -> None:
    with private_server(make_settings(tmp_path)) as (client, _):
        answer = client.post("/subscriptions", json={"url": url})
        assert answer.status_code == 400, answer.text
        assert reason in answer.json()["error"]
        assert client.get("/subscriptions").json() == []


def test_the_address_is_checked_again_at_every_connection(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A subscription made while inside receivers were allowed (or a name since re-pointed
    inside) is not sent to once they are not: the delivery fails with the reason and the
    receiver is never contacted."""
    allowed = make_settings(tmp_path, webhook_allow_private=True)
    with private_server(allowed) as (client, _):
        sub = _subscribe(client, receiver)
    closed = make_settings(
        tmp_path,
        webhook_max_attempts=2,
        webhook_retry_base_seconds=0.02,
        webhook_retry_max_seconds=0.05,
        changes_poll_seconds=0.1,
    )
    with private_server(closed, upgrade=False) as (client, _):
        assert stow(client, [make_instance()]).status_code == 200
        letters = _first_dead_letters(client, sub["id"])
        assert "not contacted" in letters[0]["last_error"]
        assert "loopback" in letters[0]["last_error"]
    assert receiver.contacted == 0


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_webhook_secrets_are_encrypted_at_rest(
    tmp_path: Path, receiver: Receiver, database: str, request: pytest.FixtureRequest
) -> None:
    from sqlalchemy import text

    url = None
    if database == "postgresql":
        url = pg_schema(request.getfixturevalue("pg_url"), "webhook_secrets")
    key = base64.b64encode(b"k" * 32).decode()
    settings = make_settings(
        tmp_path,
        url,
        webhook_secret_key=key,
        webhook_allow_private=True,
        changes_poll_seconds=0.1,
    )
    with private_server(settings) as (client, container):
        sub = _subscribe(client, receiver)
        with container.engine.connect() as conn:
            [stored] = conn.execute(text("SELECT secret FROM subscriptions")).scalars()
        assert stored.startswith("sealed1:")
        assert sub["secret"] not in stored
        assert sub["secret"].removeprefix("whsec_") not in stored
        assert stow(client, [make_instance()]).status_code == 200
        receiver.wait_for(1)
        headers, body = receiver.received[0]
        assert verify(sub["secret"], headers, body)
    # Without the key the secret cannot be read: deliveries fail with the reason.
    without = make_settings(
        tmp_path,
        url,
        webhook_allow_private=True,
        webhook_max_attempts=1,
        changes_poll_seconds=0.1,
    )
    with private_server(without, upgrade=False) as (client, _):
        assert stow(client, [make_instance()]).status_code == 200
        letters = _first_dead_letters(client, sub["id"])
        assert "DICOMWEB_WEBHOOK_SECRET_KEY" in letters[0]["last_error"]


def _first_dead_letters(client: httpx.Client, subscription: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    while not (letters := client.get(f"/subscriptions/{subscription}/dead-letters").json()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return list(letters)
