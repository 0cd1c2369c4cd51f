"""The API explorer (issue 18): headless Chromium loads `/docs`, Swagger UI renders every
operation of `/openapi.yaml`, and not one request leaves loopback (Chromium's own network
log is read back)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from tests.conftest import RunningServer
from tests.interop.test_browser import chromium as chromium_path

chromium = chromium_path  # the fixture, under its own name


def test_swagger_ui_renders_the_contract_from_loopback_alone(
    archive: RunningServer,
    chromium: str,
    tmp_path: Path,
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the page does not depend on the backends")
    assert httpx.get(archive.url + "/docs/not-there.js").status_code == 404
    netlog = tmp_path / "net.json"
    run = subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--log-net-log={netlog}",
            "--virtual-time-budget=30000",
            "--dump-dom",
            f"{archive.url}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    contract = yaml.safe_load(httpx.get(archive.url + "/openapi.yaml").text)
    operations = [
        op["operationId"]
        for item in contract["paths"].values()
        for method, op in item.items()
        if isinstance(op, dict) and "operationId" in op
    ]
    shown = set(re.findall(r'id="operations-[^"]*?-([A-Za-z]+)"', run.stdout))
    assert shown, f"Swagger UI rendered no operation: {run.stdout[-1500:]} {run.stderr[-1500:]}"
    assert set(operations) <= shown, sorted(set(operations) - shown)
    # Every request the page made (Chromium's own background requests have no page origin as
    # their initiator) went to the server on loopback.
    events = json.loads(netlog.read_text("utf-8", "replace"))["events"]
    origin = archive.url.rstrip("/")
    asked = {
        e["params"]["url"]
        for e in events
        if (e.get("params") or {}).get("initiator") == origin and "url" in e["params"]
    }
    assert len(asked) >= 4, asked  # the styles, two scripts, the contract
    assert {urlsplit(url).hostname for url in asked} == {"127.0.0.1"}, asked
