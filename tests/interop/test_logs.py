"""Logs and error bodies give an attacker nothing and carry no patient identifiers.

A real `dicomweb-server serve` writes its log to a file: the access log has one line per
request with its id, query values replaced by `*` (unless DICOMWEB_LOG_QUERY_VALUES asks for
them), no client address; responses carry the request id; `/ready` names no folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer, start_serve
from tests.factories import make_instance
from tests.helpers import stow

SECRET_NAME = "Secretname^Patient"
SECRET_ID = "PID-SECRET-4711"


def _run(archive: RunningServer, tmp_path: Path, keep_values: bool) -> str:
    log = tmp_path / f"server-{keep_values}.log"
    settings = archive.settings.model_copy(update={"log_query_values": keep_values})
    process, base = start_serve(settings, log=log)
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            ds = make_instance(patient_name=SECRET_NAME, patient_id=SECRET_ID)
            assert stow(c, [ds]).status_code == 200
            r = c.get("/studies", params={"PatientName": SECRET_NAME, "PatientID": SECRET_ID})
            assert r.status_code == 200 and len(r.json()) == 1
            assert r.headers["x-request-id"]
            given = c.get("/studies/1.2.3/metadata", headers={"X-Request-ID": "trace-42"})
            assert given.status_code == 404 and given.headers["x-request-id"] == "trace-42"
            ready = httpx.get(base.rsplit("/", 1)[0] + "/ready")
            assert str(archive.settings.data_dir) not in ready.text
    finally:
        process.terminate()
        process.wait(timeout=30)
    return log.read_text()


def test_access_log_without_patient_data(archive: RunningServer, tmp_path: Path) -> None:
    if archive.backend != "sqlite":
        pytest.skip("logging does not depend on the backends; run once")
    text = _run(archive, tmp_path, keep_values=False)
    assert "GET /dicomweb/studies?PatientName=*&PatientID=* 200" in text
    assert "[request trace-42]" in text
    assert "Secretname" not in text and "SECRET" not in text
    after_start = text.split("Uvicorn running", 1)[-1].split("\n", 1)[-1]
    # No client address (the server's own URL, said once when it is up, is no client's).
    assert "127.0.0.1:" not in "\n".join(
        line for line in after_start.splitlines() if "is up" not in line
    )


def test_query_values_logged_only_when_asked(archive: RunningServer, tmp_path: Path) -> None:
    if archive.backend != "sqlite":
        pytest.skip("logging does not depend on the backends; run once")
    text = _run(archive, tmp_path, keep_values=True)
    assert SECRET_ID in text


def test_json_lines_carry_the_request_fields(archive: RunningServer, tmp_path: Path) -> None:
    """DICOMWEB_LOG_FORMAT=auto writes JSON when not on a terminal (here: a file): every line
    is one object, the access lines with request id, route, status, duration and caller."""
    if archive.backend != "sqlite":
        pytest.skip("logging does not depend on the backends; run once")
    text = _run(archive, tmp_path, keep_values=False)
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    access = [line for line in lines if line["logger"] == "dicomweb_server.access"]
    traced = [line for line in access if line["request_id"] == "trace-42"]
    assert len(traced) == 1
    assert traced[0]["route"] == "/studies/{study}/metadata"
    assert traced[0]["status"] == 404 and traced[0]["method"] == "GET"
    assert traced[0]["duration_ms"] >= 0 and traced[0]["caller"] == "anonymous"
    assert any(line["logger"].startswith("uvicorn") for line in lines)


def test_a_request_cannot_forge_lines_of_the_text_log(
    archive: RunningServer, tmp_path: Path
) -> None:
    """CR and LF (and other control characters) of a request path are escaped in the text
    format, as the JSON format escapes them: one request, one line."""
    if archive.backend != "sqlite":
        pytest.skip("the log format does not depend on the backends")
    log = tmp_path / "text.log"
    settings = archive.settings.model_copy(update={"log_format": "text"})
    process, base = start_serve(settings, log=log)
    forged = "2026-12-07 12:00:00,000 INFO dicomweb_server.access: GET /admin 200 forged"
    try:
        answer = httpx.get(base + "/studies/x%0D%0A" + forged.replace(" ", "%20") + "%1b[2J")
        assert answer.status_code in (400, 404)
    finally:
        process.terminate()
        process.wait(timeout=30)
    lines = log.read_text().splitlines()
    assert not any(line.startswith("2026-12-07 12:00:00") for line in lines)
    [line] = [line for line in lines if "forged" in line]
    assert "/studies/x\\r\\n2026-12-07" in line and "\\x1b[2J" in line
