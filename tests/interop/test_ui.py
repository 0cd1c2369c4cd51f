"""The web application (issue 20, first slice): the study list at /ui, in headless Chromium
against a real server; the root leads there; every request stays on the server's origin."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer
from tests.factories import make_instance
from tests.helpers import stow
from tests.interop.test_browser import chromium  # noqa: F401 - the fixture


def _dom(browser: str, url: str, tmp_path: Path) -> str:
    run = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run.stdout


def test_the_root_leads_to_the_app_and_it_stays_on_its_origin(archive: RunningServer) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the app does not depend on the backends")
    root = httpx.get(archive.url + "/", follow_redirects=False)
    assert root.status_code == 307 and root.headers["location"] == "/ui/"
    page = httpx.get(archive.url + "/ui/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "connect-src 'self'" in policy
    assert f'content="{archive.settings.base_path}"' in page.text
    for name in ("app.js", "app.css"):
        assert httpx.get(f"{archive.url}/ui/{name}").status_code == 200
    assert httpx.get(archive.url + "/ui/secrets.py").status_code == 404
    # Nothing the page loads names another origin.
    assert "http://" not in page.text and "https://" not in page.text


def test_the_study_list_shows_what_is_stored(
    archive: RunningServer,
    client: httpx.Client,
    chromium: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the app does not depend on the backends")
    for name, modality in (("Lovelace^Ada", "CT"), ("Hopper^Grace", "MR")):
        ds = make_instance(study_uid=generate_uid(), modality=modality)
        ds.PatientName = name
        ds.StudyDescription = f"{modality} study"
        assert stow(client, [ds]).status_code == 200
    dom = _dom(chromium, archive.url + "/ui/", tmp_path)
    assert "Lovelace^Ada" in dom and "Hopper^Grace" in dom, dom[-2000:]
    assert "CT study" in dom
    assert "Studies 1 to 2" in dom
