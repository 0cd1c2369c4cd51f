"""The audit trail (issue 14): every transaction emits its DICOM Audit Message (PS3.15 A.5)
with the studies it touched, to the table (GET /audit), a JSON lines file, and RFC 5424
syslog over TLS and UDP to listeners run here; a broken sink is counted and never fails a
request; a slow sink never holds one."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydicom.uid import generate_uid

from dicomweb_server.services import audit
from dicomweb_server.services.audit import AuditMessage, AuditTrail
from dicomweb_server.services.context import Caller
from tests.conftest import make_settings, private_server
from tests.factories import make_instance, to_bytes
from tests.helpers import multipart_body

STUDY_UID, SERIES_UID, INSTANCE_UID = "0020000D", "0020000E", "00080018"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _store(client: httpx.Client, key: dict[str, str], study: str) -> None:
    body, content_type = multipart_body([to_bytes(make_instance(study_uid=study))])
    answer = client.post("/studies", content=body, headers={"Content-Type": content_type, **key})
    assert answer.status_code == 200, answer.text


def _events(client: httpx.Client, admin: dict[str, str], container: Any) -> list[dict[str, Any]]:
    assert container.audit.flush()
    found = client.get("/audit", params={"limit": 1000}, headers=admin)
    assert found.status_code == 200, found.text
    return found.json()["events"]  # type: ignore[no-any-return]


def _event_id(message: dict[str, Any]) -> str:
    return message["EventIdentification"]["EventID"]["csd-code"]  # type: ignore[no-any-return]


def _studies(message: dict[str, Any]) -> list[str]:
    return [
        o["ParticipantObjectID"]
        for o in message.get("ParticipantObjectIdentification", [])
        if o["ParticipantObjectIDTypeCode"]["csd-code"] == "110180"
    ]


def test_every_transaction_emits_its_message(tmp_path: Path) -> None:
    log_file = tmp_path / "audit.jsonl"
    settings = make_settings(
        tmp_path, auth="api-key", audit="table,file", audit_file=log_file, audit_source_id="pacs-1"
    )
    with private_server(settings) as (client, container):
        admin = _bearer(container.access.create_key("admin", {"admin", "read", "write"}).secret)
        study = generate_uid()
        _store(client, admin, study)
        found = client.get(f"/studies/{study}/instances", headers=admin).json()[0]
        series, instance = found[SERIES_UID]["Value"][0], found[INSTANCE_UID]["Value"][0]
        base = f"/studies/{study}/series/{series}/instances/{instance}"
        for path in (f"/studies/{study}/metadata", f"{base}/frames/1", f"{base}/rendered"):
            assert client.get(path, headers=admin).status_code == 200
        wado = {"requestType": "WADO", "studyUID": study, "seriesUID": series}
        wado["objectUID"] = instance
        assert client.get("/wado", params=wado, headers=admin).status_code == 200
        assert (
            client.get("/studies", params={"PatientID": "PID-1"}, headers=admin).status_code == 200
        )
        missing = client.get(f"/studies/{generate_uid()}/metadata", headers=admin)
        assert missing.status_code == 404
        bad = client.get("/studies", headers=_bearer("dwk_0123456789abcdef_" + "x" * 43))
        assert bad.status_code == 401
        share = client.post("/shares", json={"study": study}, headers=admin).json()
        session = client.post("/shares/redeem", json={"token": share["token"]}).json()
        viewer = _bearer(session["access_token"])
        assert client.get(f"/studies/{study}/metadata", headers=viewer).status_code == 200

        events = _events(client, admin, container)
        ids = [_event_id(e) for e in events]
        # The key made, the store, the reads, the query, the failures, the share.
        assert ids.count("110113") >= 2  # Security Alert: key created, share created
        stores = [
            e
            for e in events
            if _event_id(e) == "110104" and e["EventIdentification"]["EventActionCode"] == "C"
        ]
        assert len(stores) == 1 and _studies(stores[0]) == [study]
        assert stores[0]["ActiveParticipant"][0]["RoleIDCode"]["csd-code"] == "110153"
        reads = [
            e
            for e in events
            if _event_id(e) == "110104" and e["EventIdentification"]["EventActionCode"] == "R"
        ]
        assert len(reads) >= 6
        assert all(_studies(r) for r in reads)
        assert {r["EventIdentification"]["EventOutcomeIndicator"] for r in reads} == {"0", "4"}
        queries = [e for e in events if _event_id(e) == "112" or _event_id(e) == "110112"]
        texts = [
            base64.b64decode(o["ParticipantObjectQuery"]).decode()
            for q in queries
            for o in q["ParticipantObjectIdentification"]
            if "ParticipantObjectQuery" in o
        ]
        assert any("PatientID=PID-1" in t for t in texts)
        logins = [e for e in events if _event_id(e) == "110114"]
        outcomes = {
            (e["ActiveParticipant"][0]["UserID"], e["EventIdentification"]["EventOutcomeIndicator"])
            for e in logins
        }
        assert ("key:0123456789abcdef", "4") in outcomes
        assert (f"share:{share['id']}", "0") in outcomes
        # The share session's reads name the share as who asked.
        by_share = [
            r for r in reads if r["ActiveParticipant"][0]["UserID"] == f"share:{share['id']}"
        ]
        assert by_share and _studies(by_share[0]) == [study]
        assert all(e["AuditSourceIdentification"]["AuditSourceID"] == "pacs-1" for e in events)
        assert all(
            e["ActiveParticipant"][0].get("NetworkAccessPointID") == "127.0.0.1" for e in reads
        )
        # Filtered by study, paged.
        only = client.get("/audit", params={"study": study, "limit": 2}, headers=admin).json()
        assert len(only["events"]) == 2 and only["next"] is not None
        more = client.get("/audit", params={"study": study, "after": only["next"]}, headers=admin)
        assert all(study in _studies(e) for e in only["events"] + more.json()["events"])
        # Reading the trail is audited, and needs admin.
        assert "110101" in [_event_id(e) for e in _events(client, admin, container)]
        assert client.get("/audit", headers=viewer).status_code == 403
    # The file holds the same messages, one JSON document a line.
    lines = [orjson.loads(line) for line in log_file.read_bytes().splitlines()]
    assert len(lines) >= len(events)
    assert any(_studies(line) == [study] for line in lines)


def test_no_credential_reaches_the_audit_trail_or_the_log(tmp_path: Path) -> None:
    """A key sent in the query string is refused (401) and its value never kept: the Query
    message has the rest of the query as sent, the credential as `*`; so has the access log
    even with DICOMWEB_LOG_QUERY_VALUES=true."""
    import logging

    settings = make_settings(tmp_path, auth="api-key", audit="table", log_query_values=True)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keeper = Keep()
    access_log = logging.getLogger("dicomweb_server.access")
    level = access_log.level
    access_log.setLevel(logging.INFO)
    access_log.addHandler(keeper)
    try:
        with private_server(settings) as (client, container):
            made = container.access.create_key("admin", {"admin", "read"})
            admin = _bearer(made.secret)
            secret = made.secret
            for params in (
                {"PatientID": "PID-9", "token": secret},
                {"PatientID": "PID-9", "api_key": secret},
                {"PatientID": "PID-9", "anything": secret},
            ):
                assert client.get("/studies", params=params).status_code == 401
            events = _events(client, admin, container)
    finally:
        access_log.removeHandler(keeper)
        access_log.setLevel(level)
    queries = [
        base64.b64decode(o["ParticipantObjectQuery"]).decode()
        for e in events
        for o in e.get("ParticipantObjectIdentification", [])
        if "ParticipantObjectQuery" in o
    ]
    assert any("PatientID=PID-9" in q for q in queries)
    assert all(secret not in q and secret.split("_")[2] not in q for q in queries)
    assert all(secret not in str(e) for e in events)
    assert any("PatientID=PID-9" in line for line in lines)
    assert all(secret not in line for line in lines)


def test_a_broken_sink_is_counted_and_never_fails_a_request(tmp_path: Path) -> None:
    unwritable = tmp_path / "a-directory"
    unwritable.mkdir()
    settings = make_settings(tmp_path, auth="api-key", audit="file,table", audit_file=unwritable)
    with private_server(settings) as (client, container):
        admin = _bearer(container.access.create_key("admin", {"admin", "read", "write"}).secret)
        study = generate_uid()
        _store(client, admin, study)
        assert client.get(f"/studies/{study}/metadata", headers=admin).status_code == 200
        assert container.audit.flush()
        answer = client.get("/audit", headers=admin).json()
        assert answer["sink_failures"]["file"] >= 2
        # The other sink still got every message.
        assert any(_studies(e) == [study] for e in answer["events"])


def test_a_slow_sink_never_holds_a_request() -> None:
    release = threading.Event()

    class Stuck:
        name = "stuck"

        def write(self, messages: list[AuditMessage]) -> None:
            release.wait(30)

        def close(self) -> None:
            pass

    trail = AuditTrail([Stuck()], capacity=2)
    caller = Caller.anonymous()
    started = time.monotonic()
    for _ in range(50):
        trail.record(audit.transfer(caller, ["1.2.3"], audit.SUCCESS, stored=False))
    assert time.monotonic() - started < 1.0
    assert trail.dropped >= 40
    release.set()
    trail.close()


def _certificate(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "audit repository")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "repo.pem", tmp_path / "repo.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_listener(tmp_path: Path) -> Iterator[tuple[int, Path, list[bytes]]]:
    """An audit record repository on 127.0.0.1: syslog over TLS (RFC 5425), collecting the
    messages of the octet-counted frames it receives."""
    cert_file, key_file = _certificate(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = socket.create_server(("127.0.0.1", 0))
    received: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                plain, _ = server.accept()
            except TimeoutError:
                continue
            with context.wrap_socket(plain, server_side=True) as conn:
                conn.settimeout(0.2)
                buffer = b""
                while not stop.is_set():
                    try:
                        chunk = conn.recv(65536)
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    buffer += chunk
                    while b" " in buffer:
                        length, _, rest = buffer.partition(b" ")
                        if len(rest) < int(length):
                            break
                        received.append(rest[: int(length)])
                        buffer = rest[int(length) :]

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], cert_file, received
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_syslog_over_tls_carries_rfc5424_frames(
    tmp_path: Path, tls_listener: tuple[int, Path, list[bytes]]
) -> None:
    port, ca, received = tls_listener
    settings = make_settings(
        tmp_path,
        auth="api-key",
        audit="syslog",
        audit_syslog=f"tls://127.0.0.1:{port}",
        audit_syslog_ca=str(ca),
    )
    with private_server(settings) as (client, container):
        writer = _bearer(container.access.create_key("modality", {"read", "write"}).secret)
        study = generate_uid()
        _store(client, writer, study)
        assert container.audit.flush()
        assert container.audit.failures == {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(study.encode() in m for m in received):
            time.sleep(0.05)
    stored = [m for m in received if study.encode() in m]
    assert stored, received
    frame = stored[0]
    # RFC 5424: <PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG (BOM + XML).
    header, _, body = frame.partition(b"\xef\xbb\xbf")
    fields = header.decode().split(" ")
    assert fields[0] == "<85>1" and fields[3] == "dicomweb-server" and fields[5] == "DICOM+RFC3881"
    assert fields[6] == "-"
    xml = body.decode()
    assert xml.startswith('<?xml version="1.0" encoding="UTF-8"?><AuditMessage>')
    assert 'csd-code="110104"' in xml and 'EventActionCode="C"' in xml
    assert f'ParticipantObjectID="{study}"' in xml


def test_syslog_over_udp(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind(("127.0.0.1", 0))
    listener.settimeout(10)
    port = listener.getsockname()[1]
    settings = make_settings(
        tmp_path, auth="api-key", audit="syslog", audit_syslog=f"udp://127.0.0.1:{port}"
    )
    try:
        with private_server(settings) as (client, container):
            reader = _bearer(container.access.create_key("r", {"read"}).secret)
            assert client.get("/studies", headers=reader).status_code == 200
            assert container.audit.flush()
            datagrams = [listener.recvfrom(65536)[0] for _ in range(2)]
    finally:
        listener.close()
    assert any(b'csd-code="110112"' in d for d in datagrams)


def test_bad_audit_settings_fail_at_start(tmp_path: Path) -> None:
    from dicomweb_server.container import build_container

    for extra in (
        {"audit": "carrier-pigeon"},
        {"audit": "file"},
        {"audit": "syslog"},
        {"audit": "syslog", "audit_syslog": "http://repo.example"},
    ):
        with pytest.raises(ValueError, match="DICOMWEB_AUDIT"):
            build_container(make_settings(tmp_path, **extra))
