"""The DIMSE gateway (issue 19) against dcmtk's tools as real peers: echoscu, storescu (a
folder of pydicom's test files in several transfer syntaxes) and findscu (study and patient
root), on every backend; what C-STORE stores is what QIDO-RS and WADO-RS serve, and what
C-FIND finds is what QIDO-RS finds for the same keys."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import dcmread
from pydicom.uid import generate_uid

from dicomweb_server.dimse.gateway import (
    DimseGateway,
    DimseSettings,
    parse_ae_access,
    tls_context,
)
from dicomweb_server.services.context import Caller
from tests.api.test_audit import _event_id, _events, _studies
from tests.conftest import IN_CI, RunningServer, make_settings, private_server, settings_env
from tests.factories import bundled_path, make_instance, to_bytes
from tests.helpers import stow


# pydicom's test files, and the storescu option that proposes each one's transfer syntax.
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The C-MOVE destination the gateway knows (a storescp the test starts).
DEST_PORT = _free_port()
STORED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CT_small.dcm", ()),
    ("MR_small.dcm", ()),
    ("rtplan.dcm", ()),
    ("JPEG2000.dcm", ("-xw",)),
    ("SC_rgb_rle.dcm", ("-xr",)),
)


@pytest.fixture
def gateway(archive: RunningServer) -> Iterator[DimseGateway]:
    if shutil.which("storescu") is None:
        if IN_CI:
            pytest.fail("CI=true and dcmtk is not installed (.ci/run installs it)")
        pytest.skip("dcmtk is not installed")
    container = archive.container
    config = DimseSettings(port=0, peers={"DEST": ("127.0.0.1", DEST_PORT)})
    found = DimseGateway(container.store, container.search, container.retrieve, config)
    found.start()
    try:
        yield found
    finally:
        found.stop()


def _peer(
    gateway: DimseGateway, tool: str, *args: str, last: bool = False
) -> subprocess.CompletedProcess[str]:
    """A dcmtk tool against the gateway; with `last`, the final argument (a file) goes after
    the peer's address."""
    options, files = (args[:-1], args[-1:]) if last else (args, ())
    command = [tool, "-aec", "DICOMWEB", "-aet", "TESTSCU", *options]
    command += ["127.0.0.1", str(gateway.port), *files]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_echo(gateway: DimseGateway) -> None:
    run = _peer(gateway, "echoscu")
    assert run.returncode == 0, run.stderr


def test_store_then_search_and_retrieve(
    gateway: DimseGateway, client: httpx.Client, tmp_path: Path
) -> None:
    files = []
    for name, _ in STORED:
        target = tmp_path / name
        target.write_bytes(bundled_path(name).read_bytes())
        files.append(target)
    # storescu proposes the native syntaxes, and a compressed one when told: each file goes
    # in the syntax it is in (dcmtk cannot convert JPEG 2000 or RLE to native).
    for (_, option), path in zip(STORED, files, strict=True):
        run = _peer(gateway, "storescu", *option, str(path), last=True)
        assert run.returncode == 0, run.stdout + run.stderr
    for path in files:
        sent = dcmread(path)
        url = (
            f"/studies/{sent.StudyInstanceUID}/series/{sent.SeriesInstanceUID}"
            f"/instances/{sent.SOPInstanceUID}"
        )
        answer = client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
        assert answer.status_code == 200, (path.name, answer.text)
        got = dcmread(io.BytesIO(answer.content))
        assert got.SOPInstanceUID == sent.SOPInstanceUID
        assert got.file_meta.TransferSyntaxUID in (
            sent.file_meta.TransferSyntaxUID,
            "1.2.840.10008.1.2.1",
        )
        if "PixelData" in sent:
            assert got.PixelData == sent.PixelData, path.name

    # The change feed has them, as for STOW-RS.
    entries = client.get("/changefeed", params={"limit": 100}).json()
    assert sum(e["Action"] == "create" for e in entries) == len(STORED)


def test_a_store_that_fails_gets_its_failure_status(gateway: DimseGateway, tmp_path: Path) -> None:
    ds = make_instance()
    del ds.StudyInstanceUID
    path = tmp_path / "broken.dcm"
    path.write_bytes(to_bytes(ds))
    run = _peer(gateway, "storescu", "-v", str(path), last=True)
    # The failure status the STOW-RS outcome gives: A900, the data set does not match the
    # SOP class (its Study Instance UID is missing).
    assert run.returncode != 0
    assert "Received Store Response (Error: DataSetDoesNotMatchSOPClass)" in run.stderr


def _find(gateway: DimseGateway, tmp_path: Path, model: str, *keys: str) -> list[object]:
    out = tmp_path / f"find-{generate_uid()}"
    out.mkdir()
    args = [model, "-X", "-od", str(out)]
    for key in keys:
        args += ["-k", key]
    run = _peer(gateway, "findscu", *args)
    assert run.returncode == 0, run.stdout + run.stderr
    return [dcmread(p) for p in sorted(out.glob("rsp*.dcm"))]


def test_find_gives_what_qido_gives(
    gateway: DimseGateway, client: httpx.Client, tmp_path: Path
) -> None:
    study = generate_uid()
    items = [make_instance(study_uid=study, series_uid=generate_uid(), modality=m) for m in "CM"]
    for ds in items:
        ds.PatientName, ds.PatientID, ds.StudyDate = "Find^Me", "FIND-1", "20260105"
    other = make_instance()
    other.PatientName, other.StudyDate = "Other^One", "20250101"
    assert stow(client, [*items, other]).status_code == 200

    studies = _find(
        gateway,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=STUDY",
        "PatientName=Find*",
        "StudyInstanceUID",
        "StudyDate=20260101-20260131",
        "NumberOfStudyRelatedInstances",
    )
    assert [str(ds.StudyInstanceUID) for ds in studies] == [study]
    assert int(studies[0].NumberOfStudyRelatedInstances) == 2
    qido = client.get("/studies", params={"PatientName": "Find*", "StudyDate": "20260101-20260131"})
    assert [s["0020000D"]["Value"][0] for s in qido.json()] == [study]

    series = _find(
        gateway,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=SERIES",
        f"StudyInstanceUID={study}",
        "SeriesInstanceUID",
        "Modality",
    )
    assert sorted(str(ds.Modality) for ds in series) == ["CT", "MR"] or len(series) == 2
    images = _find(
        gateway,
        tmp_path,
        "-S",
        "QueryRetrieveLevel=IMAGE",
        f"StudyInstanceUID={study}",
        f"SeriesInstanceUID={items[0].SeriesInstanceUID}",
        "SOPInstanceUID",
    )
    assert [str(ds.SOPInstanceUID) for ds in images] == [str(items[0].SOPInstanceUID)]
    patients = _find(
        gateway, tmp_path, "-P", "QueryRetrieveLevel=PATIENT", "PatientID=FIND-1", "PatientName"
    )
    assert [str(ds.PatientName) for ds in patients] == ["Find^Me"]


def test_serve_starts_the_dimse_service_when_its_port_is_set(tmp_path: Path) -> None:
    if shutil.which("echoscu") is None:
        pytest.skip("dcmtk is not installed")
    http_port, dimse_port = _free_port(), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(
        DICOMWEB_DATA_DIR=str(tmp_path),
        DICOMWEB_DIMSE_PORT=str(dimse_port),
        DICOMWEB_DIMSE_AE_TITLE="ARCHIVE",
        DICOMWEB_LOG_LEVEL="warning",
    )
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "dicomweb-server"), "serve", "--port", str(http_port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        echo = subprocess.run(
            ["echoscu", "-aec", "ARCHIVE", "127.0.0.1", str(dimse_port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert echo.returncode == 0, echo.stderr
    finally:
        server.terminate()
        server.wait(timeout=30)


def _study_of_three(client: httpx.Client) -> tuple[str, list[Any]]:
    study = generate_uid()
    items = [make_instance(study_uid=study, series_uid=generate_uid()) for _ in range(3)]
    assert stow(client, items).status_code == 200
    return study, items


def _dataset_bytes(data: bytes) -> bytes:
    """A PS3.10 file's data set as encoded, past preamble and File Meta (which each writer
    makes its own): File Meta Information Group Length (0002,0000) says where it ends."""
    assert data[128:132] == b"DICM" and data[132:140] == b"\x02\x00\x00\x00UL\x04\x00"
    return data[144 + int.from_bytes(data[140:144], "little") :]


def _stored(client: httpx.Client, study: str, ds: Any) -> bytes:
    url = f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"
    return client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"}).content


def test_get_returns_the_stored_objects(
    gateway: DimseGateway, client: httpx.Client, tmp_path: Path
) -> None:
    study, items = _study_of_three(client)
    out = tmp_path / "got"
    out.mkdir()
    run = _peer(
        gateway,
        "getscu",
        "-S",
        "-k",
        "QueryRetrieveLevel=STUDY",
        "-k",
        f"StudyInstanceUID={study}",
        "-od",
        str(out),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    received = {dcmread(p).SOPInstanceUID: p.read_bytes() for p in out.iterdir()}
    assert set(received) == {ds.SOPInstanceUID for ds in items}
    for ds in items:
        assert _dataset_bytes(received[ds.SOPInstanceUID]) == _dataset_bytes(
            _stored(client, study, ds)
        )
    # One series, one instance of it.
    one = tmp_path / "one"
    one.mkdir()
    run = _peer(
        gateway,
        "getscu",
        "-S",
        "-k",
        "QueryRetrieveLevel=IMAGE",
        "-k",
        f"StudyInstanceUID={study}",
        "-k",
        f"SeriesInstanceUID={items[1].SeriesInstanceUID}",
        "-k",
        f"SOPInstanceUID={items[1].SOPInstanceUID}",
        "-od",
        str(one),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert [dcmread(p).SOPInstanceUID for p in one.iterdir()] == [items[1].SOPInstanceUID]


def test_move_sends_to_a_known_destination(
    gateway: DimseGateway, client: httpx.Client, tmp_path: Path
) -> None:
    study, items = _study_of_three(client)
    moved = {ds.SOPInstanceUID for ds in _moved(gateway, study, tmp_path, 3)}
    assert moved == {ds.SOPInstanceUID for ds in items}
    # An unknown destination: A801.
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]
    unknown = _peer(gateway, "movescu", "-v", "-S", "-aem", "NOWHERE", *keys)
    assert "0xa801" in (unknown.stdout + unknown.stderr).lower() or unknown.returncode != 0


def _moved(gateway: DimseGateway, study: str, tmp_path: Path, count: int) -> list[Any]:
    """C-MOVE of a study to DEST, a dcmtk storescp with its defaults (it takes Explicit and
    Implicit VR Little Endian only); what arrived there."""
    out = tmp_path / "moved"
    out.mkdir()
    receiver = subprocess.Popen(
        ["storescp", "-aet", "DEST", "-od", str(out), str(DEST_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]
        run = _peer(gateway, "movescu", "-S", "-aem", "DEST", *keys)
        assert run.returncode == 0, run.stdout + run.stderr
        deadline = time.monotonic() + 10
        while len(list(out.iterdir())) < count and time.monotonic() < deadline:
            time.sleep(0.1)
        return [dcmread(p) for p in out.iterdir()]
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


def test_move_converts_for_a_destination_that_takes_only_native_syntaxes(
    archive: RunningServer, gateway: DimseGateway, client: httpx.Client, tmp_path: Path
) -> None:
    """storescp with its defaults takes Explicit and Implicit VR Little Endian only: a JPEG
    2000 and an RLE object are moved converted, their pixels equal (PS3.4 C.4.2.3.1), as
    C-GET and `send` do."""
    if archive.backend not in ("sqlite", "postgresql+s3"):
        pytest.skip("the embedded pair and the production pair cover the conversion")
    study = generate_uid()
    originals = {}
    for name in ("JPEG2000.dcm", "SC_rgb_rle.dcm"):
        original = dcmread(bundled_path(name))
        original.StudyInstanceUID, original.SeriesInstanceUID = study, generate_uid()
        original.SOPInstanceUID = generate_uid()
        buffer = io.BytesIO()
        original.save_as(buffer, enforce_file_format=True)
        assert stow(client, [buffer.getvalue()]).status_code == 200
        originals[original.SOPInstanceUID] = original
    got = _moved(gateway, study, tmp_path, 2)
    assert {g.SOPInstanceUID for g in got} == set(originals)
    for each in got:
        assert each.file_meta.TransferSyntaxUID in ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")
        assert (each.pixel_array == originals[each.SOPInstanceUID].pixel_array).all()


def test_send_stores_studies_in_another_archive(
    archive: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the SCU does not depend on the backends")
    if shutil.which("storescp") is None:
        pytest.skip("dcmtk is not installed")
    study, items = _study_of_three(client)
    out = tmp_path / "received"
    out.mkdir()
    port = _free_port()
    receiver = subprocess.Popen(
        ["storescp", "-aet", "OTHER", "-od", str(out), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(settings_env(archive.settings))
    try:
        time.sleep(0.5)
        cli = str(Path(sys.executable).parent / "dicomweb-server")
        run = subprocess.run(
            [cli, "send", study, "--to", f"OTHER@127.0.0.1:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "sent 3, failed 0" in run.stdout
        received = {dcmread(p).SOPInstanceUID: p.read_bytes() for p in out.iterdir()}
        assert set(received) == {ds.SOPInstanceUID for ds in items}
        for ds in items:
            assert _dataset_bytes(received[ds.SOPInstanceUID]) == _dataset_bytes(
                _stored(client, study, ds)
            )
        refused = subprocess.run(
            [cli, "send", study, "--to", "NOBODY@127.0.0.1:1"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert refused.returncode == 2 and "could not be reached" in refused.stderr
    finally:
        receiver.terminate()
        receiver.wait(timeout=10)


def test_access_per_calling_ae_title(
    archive: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    """DICOMWEB_DIMSE_AE_ACCESS: a modality may store, a workstation read and download; an
    AE title not named cannot associate; one limited to a label sees its studies only."""
    if archive.backend != "sqlite":
        pytest.skip("access control does not depend on the backends")
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed")
    ward = make_instance()
    assert stow(client, [ward], headers={"X-Access-Labels": "ward7"}).status_code == 200
    other = make_instance()
    assert stow(client, [other]).status_code == 200
    container = archive.container
    config = DimseSettings(
        port=0,
        access=parse_ae_access("CT1=write;WS1=read,download;WARD=read:ward7"),
    )
    gateway = DimseGateway(container.store, container.search, container.retrieve, config)
    gateway.start()

    def as_ae(title: str, tool: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [tool, "-aec", "DICOMWEB", "-aet", title, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    def find(title: str) -> subprocess.CompletedProcess[str]:
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"]
        return as_ae(title, "findscu", "-v", "-S", *keys, "127.0.0.1", str(gateway.port))

    try:
        sent = tmp_path / "new.dcm"
        sent.write_bytes(to_bytes(make_instance()))
        where = ["127.0.0.1", str(gateway.port)]
        assert as_ae("CT1", "storescu", *where, str(sent)).returncode == 0
        refused = as_ae("WS1", "storescu", "-v", *where, str(sent))
        # PS3.7 C.5.21 Refused: Not Authorized (dcmtk names it "Unknown Status: 0x124").
        assert "Status: 0x124" in refused.stderr, refused.stderr
        assert as_ae("NOBODY", "echoscu", *where).returncode != 0  # association rejected
        assert "Find Response: 1 (Pending)" not in find("CT1").stderr  # no read scope
        listed = find("WS1").stderr
        assert str(ward.StudyInstanceUID) in listed and str(other.StudyInstanceUID) in listed
        limited = find("WARD").stderr
        assert str(ward.StudyInstanceUID) in limited
        assert str(other.StudyInstanceUID) not in limited
    finally:
        gateway.stop()


def test_an_ae_title_is_taken_only_from_its_addresses(
    archive: RunningServer, tmp_path: Path
) -> None:
    """DICOMWEB_DIMSE_AE_ACCESS entries name where each AE title calls from: a client that
    names an allowed AE title from elsewhere gets no rights (0124 / nothing found) and is
    audited; an entry without addresses is taken from loopback only (issue 31)."""
    if archive.backend != "sqlite":
        pytest.skip("access control does not depend on the backends")
    if shutil.which("findscu") is None:
        pytest.skip("dcmtk is not installed")
    with private_server(make_settings(tmp_path / "archive", audit="table")) as (client, c):
        stored = make_instance()
        assert stow(client, [stored]).status_code == 200
        access = parse_ae_access("HOME@127.0.0.0/8=read;FAR@10.9.9.9|10.8.0.0/16=read;LOCAL=read")
        assert access["FAR"].allows("10.8.1.2") and not access["FAR"].allows("127.0.0.1")
        gateway = DimseGateway(
            c.store, c.search, c.retrieve, DimseSettings(port=0, access=access), c.audit
        )
        gateway.start()
        try:

            def find(title: str) -> str:
                keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID"]
                command = ["findscu", "-aec", "DICOMWEB", "-aet", title, "-v", "-S", *keys]
                command += ["127.0.0.1", str(gateway.port)]
                return subprocess.run(command, capture_output=True, text=True, timeout=60).stderr

            assert str(stored.StudyInstanceUID) in find("HOME")
            assert str(stored.StudyInstanceUID) in find("LOCAL")
            assert str(stored.StudyInstanceUID) not in find("FAR")  # named from elsewhere
        finally:
            gateway.stop()
        assert c.audit.flush()
        with c.engine.connect() as conn:
            from sqlalchemy import text

            messages = [m for (m,) in conn.execute(text("SELECT message FROM audit_events"))]
        assert any("ae:FAR" in m and "may not" in m for m in messages)
    with pytest.raises(ValueError, match="IP addresses or networks"):
        parse_ae_access("BAD@somewhere=read")


def test_dimse_operations_are_audited(archive: RunningServer, tmp_path: Path) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the audit trail does not depend on the backends")
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed")
    with private_server(make_settings(tmp_path / "archive", audit="table")) as (client, c):
        gateway = DimseGateway(c.store, c.search, c.retrieve, DimseSettings(port=0), c.audit)
        gateway.start()
        try:
            ds = make_instance()
            sent = tmp_path / "one.dcm"
            sent.write_bytes(to_bytes(ds))
            where = ["127.0.0.1", str(gateway.port)]
            store = ["storescu", "-aec", "DICOMWEB", "-aet", "MODALITY", *where, str(sent)]
            assert subprocess.run(store, capture_output=True, timeout=60).returncode == 0
            keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName"]
            find = ["findscu", "-S", "-aec", "DICOMWEB", "-aet", "WS", *keys, *where]
            assert subprocess.run(find, capture_output=True, timeout=60).returncode == 0
        finally:
            gateway.stop()
        events = _events(client, {}, c)
        stored = [e for e in events if _event_id(e) == "110104"]
        assert stored and _studies(stored[0]) == [str(ds.StudyInstanceUID)]
        assert stored[0]["ActiveParticipant"][0]["UserID"] == "ae:MODALITY"
        queries = [e for e in events if _event_id(e) == "110112"]
        assert queries and queries[0]["ActiveParticipant"][0]["UserID"] == "ae:WS"


def test_kill_during_a_storescu_run_keeps_every_acknowledged_instance(
    archive: RunningServer, tmp_path: Path
) -> None:
    """`dicomweb-server dimse` killed with SIGKILL while storescu sends: each instance it
    acknowledged (success) is retrievable afterwards; `check` finds nothing missing."""
    if archive.backend != "postgresql":
        pytest.skip("a kill does not depend on the blob store; run against PostgreSQL")
    if shutil.which("storescu") is None:
        pytest.skip("dcmtk is not installed")
    folder = tmp_path / "send"
    folder.mkdir()
    sops = {}
    for n in range(400):
        ds = make_instance()
        path = folder / f"{n:04d}.dcm"
        path.write_bytes(to_bytes(ds))
        sops[str(path)] = str(ds.SOPInstanceUID)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env.update(settings_env(archive.settings))
    env.update(DICOMWEB_DIMSE_PORT=str(port), DICOMWEB_LOG_LEVEL="warning")
    cli = str(Path(sys.executable).parent / "dicomweb-server")
    server = subprocess.Popen([cli, "dimse"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            echo = subprocess.run(
                ["echoscu", "-aec", "DICOMWEB", "127.0.0.1", str(port)], capture_output=True
            )
            if echo.returncode == 0:
                break
            time.sleep(0.2)
        sender = subprocess.Popen(
            ["storescu", "-v", "+sd", "-aec", "DICOMWEB", "127.0.0.1", str(port), str(folder)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        acknowledged: list[str] = []
        current = None
        assert sender.stdout is not None
        for line in sender.stdout:
            if "Sending file: " in line:
                current = line.split("Sending file: ", 1)[1].strip()
            elif "Received Store Response (Success)" in line and current:
                acknowledged.append(sops[current])
                if len(acknowledged) == 100:
                    server.kill()  # SIGKILL, mid-run
        sender.wait(timeout=60)
    finally:
        server.kill()
        server.wait(timeout=30)
    assert 100 <= len(acknowledged) < len(sops)
    stored = archive.container.retrieve
    for sop in acknowledged:
        ds = dcmread(folder / next(p for p, s in sops.items() if s == sop))
        found = stored.objects(
            Caller.anonymous(), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), sop
        )
        assert len(found) == 1
        assert b"".join(stored.stream(found[0]))
    assert archive.container.consistency.check().missing == []


def test_storage_commitment_reports_what_is_held(
    gateway: DimseGateway, client: httpx.Client
) -> None:
    """PS3.4 Annex J, with pynetdicom as the SCU (dcmtk has no commitment SCU): the N-ACTION
    is accepted, and the N-EVENT-REPORT on the same association commits the stored instance
    and fails the unknown one with 0112."""
    from pydicom.dataset import Dataset
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        StorageCommitmentPushModel,
        StorageCommitmentPushModelInstance,
    )

    held = make_instance()
    assert stow(client, [held]).status_code == 200
    missing = generate_uid()
    reports: list[tuple[int, Dataset]] = []

    def on_report(event: Any) -> int:
        reports.append((int(event.event_type), event.event_information))
        return 0x0000

    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(StorageCommitmentPushModel)
    assoc = ae.associate(
        "127.0.0.1",
        gateway.port,
        ae_title="DICOMWEB",
        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)],
    )
    assert assoc.is_established
    try:
        request = Dataset()
        request.TransactionUID = generate_uid()
        items = []
        for sop_class, sop in (
            (held.SOPClassUID, held.SOPInstanceUID),
            (held.SOPClassUID, missing),
        ):
            item = Dataset()
            item.ReferencedSOPClassUID, item.ReferencedSOPInstanceUID = sop_class, sop
            items.append(item)
        request.ReferencedSOPSequence = items
        status, _ = assoc.send_n_action(
            request, 1, StorageCommitmentPushModel, StorageCommitmentPushModelInstance
        )
        assert status.Status == 0x0000
        deadline = time.monotonic() + 10
        while not reports and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        assoc.release()
    [(event_type, report)] = reports
    assert event_type == 2  # some failed
    assert report.TransactionUID == request.TransactionUID
    assert [i.ReferencedSOPInstanceUID for i in report.ReferencedSOPSequence] == [
        held.SOPInstanceUID
    ]
    [failed] = report.FailedSOPSequence
    assert failed.ReferencedSOPInstanceUID == missing and failed.FailureReason == 0x0112


def test_dicom_tls(archive: RunningServer, tmp_path: Path) -> None:
    """DICOM TLS (PS3.15 B.1): dcmtk's echoscu over TLS is answered; a plain TCP peer is
    not."""
    if archive.backend != "sqlite":
        pytest.skip("TLS does not depend on the backends")
    if shutil.which("echoscu") is None or shutil.which("openssl") is None:
        pytest.skip("dcmtk or openssl is not installed")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    container = archive.container
    config = DimseSettings(port=0, tls=tls_context(str(cert), str(key)))
    gateway = DimseGateway(container.store, container.search, container.retrieve, config)
    gateway.start()
    try:
        where = ["127.0.0.1", str(gateway.port)]
        secure = subprocess.run(
            ["echoscu", "-aec", "DICOMWEB", "+tla", "+cf", str(cert), *where],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert secure.returncode == 0, secure.stdout + secure.stderr
        plain = subprocess.run(
            ["echoscu", "-aec", "DICOMWEB", "-to", "5", "-ta", "5", *where],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert plain.returncode != 0
    finally:
        gateway.stop()


def test_with_dicom_tls_an_ae_title_is_taken_only_with_its_certificate(
    archive: RunningServer, tmp_path: Path, client: httpx.Client
) -> None:
    """`AETITLE@addresses#name`: over DICOM TLS with client certificates, the AE title's
    rights hold only when the peer's verified certificate carries that name (issue 31)."""
    if archive.backend != "sqlite":
        pytest.skip("TLS does not depend on the backends")
    if shutil.which("findscu") is None or shutil.which("openssl") is None:
        pytest.skip("dcmtk or openssl is not installed")

    def certificate(name: str) -> tuple[Path, Path]:
        cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        return cert, key

    server_cert, server_key = certificate("127.0.0.1")
    ws1_cert, ws1_key = certificate("ws1")
    stored = make_instance()
    assert stow(client, [stored]).status_code == 200
    container = archive.container
    config = DimseSettings(
        port=0,
        tls=tls_context(str(server_cert), str(server_key), str(ws1_cert)),
        access=parse_ae_access("WS1@127.0.0.1#ws1=read;WS2@127.0.0.1#ws2=read"),
    )
    gateway = DimseGateway(container.store, container.search, container.retrieve, config)
    gateway.start()
    try:

        def find(title: str) -> str:
            keys = [
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                f"StudyInstanceUID={stored.StudyInstanceUID}",
            ]
            command = ["findscu", "-aec", "DICOMWEB", "-aet", title, "-v", "-S", *keys]
            command += ["+tls", str(ws1_key), str(ws1_cert), "+cf", str(server_cert)]
            command += ["127.0.0.1", str(gateway.port)]
            run = subprocess.run(command, capture_output=True, text=True, timeout=60)
            return run.stdout + run.stderr

        assert "Find Response: 1 (Pending)" in find("WS1")
        refused = find("WS2")  # with ws1's certificate
        assert "(Pending)" not in refused and "0x124" in refused
    finally:
        gateway.stop()


def test_move_to_orthanc_as_a_third_party(
    archive: RunningServer, client: httpx.Client, tmp_path: Path
) -> None:
    """C-MOVE to Orthanc (Debian's, a real third-party archive) when it is installed."""
    if archive.backend != "sqlite":
        pytest.skip("the destination does not depend on the backends")
    binary = shutil.which("Orthanc")
    if binary is None or shutil.which("movescu") is None:
        pytest.skip("Orthanc or dcmtk is not installed")
    from benchmarks.peers import orthanc_config

    http_port, dicom_port = _free_port(), _free_port()
    config = orthanc_config("third-party", tmp_path / "orthanc", http_port, [])
    config.update(
        DicomServerEnabled=True, DicomPort=dicom_port, DicomAet="ORTHANC", DicomCheckCalledAet=False
    )
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    orthanc = subprocess.Popen(
        [binary, str(tmp_path / "orthanc.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    container = archive.container
    gateway = DimseGateway(
        container.store,
        container.search,
        container.retrieve,
        DimseSettings(port=0, peers={"ORTHANC": ("127.0.0.1", dicom_port)}),
    )
    gateway.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{http_port}/system", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        study, items = _study_of_three(client)
        keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}"]
        run = _peer(gateway, "movescu", "-S", "-aem", "ORTHANC", *keys)
        assert run.returncode == 0, run.stdout + run.stderr
        found = httpx.get(f"http://127.0.0.1:{http_port}/instances", timeout=10).json()
        assert len(found) == 3
        tags = [
            httpx.get(f"http://127.0.0.1:{http_port}/instances/{i}/simplified-tags").json()
            for i in found
        ]
        assert {t["SOPInstanceUID"] for t in tags} == {str(ds.SOPInstanceUID) for ds in items}
    finally:
        gateway.stop()
        orthanc.terminate()
        orthanc.wait(timeout=30)


def test_get_converts_when_the_peer_takes_no_stored_syntax(
    gateway: DimseGateway, client: httpx.Client, tmp_path: Path
) -> None:
    """Stored as JPEG-LS; getscu proposes only the native syntaxes: the instance arrives
    Explicit VR Little Endian with the same pixels (PS3.4 C.4.3: the SCP converts)."""
    import numpy as np

    from dicomweb_server.dicom.transcode import transcode

    ds = make_instance(rows=16, columns=16)
    ds.PixelData = (np.arange(256, dtype="<u2") * 7).tobytes()
    stored = transcode(to_bytes(ds), "1.2.840.10008.1.2.4.80")
    assert stow(client, [stored]).status_code == 200
    out = tmp_path / "got"
    out.mkdir()
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={ds.StudyInstanceUID}"]
    run = _peer(gateway, "getscu", "-S", *keys, "-od", str(out))
    assert run.returncode == 0, run.stdout + run.stderr
    [got] = [dcmread(p) for p in out.iterdir()]
    assert got.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert got.PixelData == ds.PixelData


def test_what_c_store_sends_wado_rs_serves_byte_for_byte(
    gateway: DimseGateway, client: httpx.Client, tmp_path: Path
) -> None:
    """Objects storescu sends as they are (Explicit VR Little Endian, no group lengths or
    padding for it to drop): WADO-RS serves the same data set bytes."""
    items = [make_instance(rows=8, columns=8) for _ in range(3)]
    files = []
    for n, ds in enumerate(items):
        path = tmp_path / f"{n}.dcm"
        path.write_bytes(to_bytes(ds))
        files.append(path)
    for path in files:
        run = _peer(gateway, "storescu", "-xe", str(path), last=True)
        assert run.returncode == 0, run.stdout + run.stderr
    for ds, path in zip(items, files, strict=True):
        served = _stored(client, str(ds.StudyInstanceUID), ds)
        assert _dataset_bytes(served) == _dataset_bytes(path.read_bytes())
