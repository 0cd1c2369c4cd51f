"""The web application end to end (issue 20): Playwright driving the system Chromium on a
real server. Each test checks that no request left the server's origin."""

from __future__ import annotations

import hashlib
import json
import os
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from playwright.sync_api import expect
from pydicom.uid import generate_uid

from tests.conftest import RunningServer, make_settings, private_server
from tests.factories import make_instance, make_workitem, to_bytes
from tests.helpers import origin_of, stow
from tests.interop.test_webhooks import Receiver, receiver  # noqa: F401 - the fixture
from tests.interop.webapp import ARTEFACTS, visit
from tests.oidc_provider import oidc_provider

# The app does not depend on the backends: the shared server on SQLite.
on_sqlite = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def sine_study(
    client: httpx.Client,
    name: str = "Lovelace^Ada",
    modality: str = "CT",
    slices: int = 5,
    **attributes: str,
) -> tuple[str, str]:
    """A study of one series of `slices` 128x128 sine slices (each looks different)."""
    study, series = generate_uid(), generate_uid()
    yy, xx = np.mgrid[0:128, 0:128]
    sent = []
    for i in range(slices):
        ds = make_instance(study, series, rows=128, columns=128, instance_number=i + 1)
        ds.Modality = modality
        ds.PatientName = name
        ds.PatientID = f"ID-{name[:4]}"
        ds.StudyDescription = f"{modality} sine study"
        ds.PixelData = (
            ((np.sin(xx / (6 + 3 * i)) * np.cos(yy / 13) + 1) * 1500).astype("<u2").tobytes()
        )
        ds.WindowCenter, ds.WindowWidth = 1500, 3000
        for keyword, value in attributes.items():
            setattr(ds, keyword, value)
        sent.append(ds)
    answer = stow(client, sent)
    assert answer.status_code == 200, answer.text
    return study, series


def image_digest(page: Any, selector: str) -> str:
    """What the <img> shows now: a digest of its pixels, drawn on a canvas."""
    data = page.eval_on_selector(
        selector,
        """img => { const c = document.createElement('canvas');
          c.width = img.naturalWidth; c.height = img.naturalHeight;
          const g = c.getContext('2d'); g.drawImage(img, 0, 0);
          const pixels = g.getImageData(0, 0, c.width, c.height).data;
          return Array.from(pixels.filter((_, i) => i % 4 === 0)).join(','); }""",
    )
    return hashlib.sha256(data.encode()).hexdigest()


def wait_new_image(page: Any, before: str | None) -> str:
    page.wait_for_function(
        "([old]) => { const i = document.querySelector('#frame');"
        " return i && i.complete && i.naturalWidth > 0 && i.dataset.path"
        " && i.dataset.path !== old; }",
        arg=[before],
    )
    return str(page.get_attribute("#frame", "data-path"))


@on_sqlite
def test_search_open_a_study_and_scroll_the_quick_viewer(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
) -> None:
    study, _ = sine_study(client)
    sine_study(client, "Hopper^Grace", "MR", 2)
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(archive.url + "/")
    page.wait_for_selector("#studies tbody tr >> nth=1")
    expect(page.locator("#totals")).to_contain_text("2 matching studies")
    expect(page.locator("#totals")).to_contain_text("2 studies, 2 series, 7 instances")
    expect(page.locator("#status")).to_have_text("Studies 1 to 2 of 2")
    seen.shot("study-list")
    # Search by patient name (the QIDO engine: wildcards, fuzzy).
    page.fill("input[name=PatientName]", "Love*")
    page.click("#search button[type=submit]")
    page.wait_for_function("() => document.querySelectorAll('#studies tbody tr').length === 1")
    assert "Lovelace^Ada" in page.locator("#studies tbody").inner_text()
    # Any attribute: the "other" field.
    page.fill("input[name=PatientName]", "")
    page.fill("input[name=other]", "ModalitiesInStudy=MR")
    page.click("#search button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#studies tbody').innerText.includes('Hopper^Grace')"
        " && document.querySelectorAll('#studies tbody tr').length === 1"
    )
    page.fill("input[name=other]", "")
    page.click("#search button[type=submit]")
    page.wait_for_selector("#studies tbody tr >> nth=1")
    # Thumbnails load.
    page.wait_for_function(
        "() => [...document.querySelectorAll('#studies img.thumb')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    # The study page.
    page.click(f"#studies tr[data-study='{study}'] a")
    page.wait_for_selector("#series li")
    assert "Lovelace^Ada" in page.locator(".facts").inner_text()
    first_path = wait_new_image(page, None)
    first_image = image_digest(page, "#frame")
    assert page.locator("#frame-position").inner_text() == "Frame 1 of 5"
    # Scroll: the wheel, then the keyboard; the frame shown changes.
    page.hover(".stage")
    page.mouse.wheel(0, 120)
    second_path = wait_new_image(page, first_path)
    assert page.locator("#frame-position").inner_text() == "Frame 2 of 5"
    assert image_digest(page, "#frame") != first_image
    page.focus(".stage")
    page.keyboard.press("End")  # not a move
    page.keyboard.press("ArrowDown")
    third_path = wait_new_image(page, second_path)
    assert page.locator("#frame-position").inner_text() == "Frame 3 of 5"
    # A window preset: the server renders with it.
    before = image_digest(page, "#frame")
    page.select_option("#preset", label="Lung")
    windowed = wait_new_image(page, third_path)
    assert "window=-600%2C1500%2Clinear" in windowed
    assert image_digest(page, "#frame") != before
    # Drag sets the window.
    box = page.locator(".stage").bounding_box()
    page.mouse.move(box["x"] + 100, box["y"] + 100)
    page.mouse.down()
    page.mouse.move(box["x"] + 160, box["y"] + 130, steps=4)
    page.mouse.up()
    dragged = wait_new_image(page, windowed)
    assert "window=" in dragged and dragged != windowed
    # Zoom.
    page.click("#zoom-in")
    assert "scale(1.25)" in str(page.get_attribute("#frame", "style"))
    seen.shot("study-page")
    assert seen.elsewhere() == []
    assert seen.errors == []


@on_sqlite
def test_a_study_stored_elsewhere_appears_without_a_reload(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
) -> None:
    sine_study(client, "First^Patient", slices=1)
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(archive.url + "/ui/")
    page.wait_for_selector("#studies tbody tr")
    time.sleep(0.5)  # the stream is open
    stored_at = time.monotonic()
    sine_study(client, "Second^Patient", slices=1)
    page.wait_for_function(
        "() => document.querySelector('#studies tbody').innerText.includes('Second^Patient')",
        timeout=5000,
    )
    assert time.monotonic() - stored_at < 2.0
    assert seen.elsewhere() == []


@on_sqlite
def test_upload_three_good_files_and_a_bad_one(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
    tmp_path: Any,
) -> None:
    study = generate_uid()
    files = []
    for i in range(3):
        path = tmp_path / f"good-{i}.dcm"
        path.write_bytes(to_bytes(make_instance(study, instance_number=i + 1)))
        files.append(str(path))
    bad = tmp_path / "notes.txt"
    bad.write_bytes(b"this is not a DICOM file" * 10)
    files.append(str(bad))
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(archive.url + "/ui/#/upload")
    page.set_input_files("#files", files)
    page.wait_for_function(
        "() => document.querySelectorAll('#uploads tr.ok').length === 3"
        " && document.querySelectorAll('#uploads tr.failed').length === 1"
    )
    failed = page.locator("#uploads tr.failed")
    assert "notes.txt" in failed.inner_text()
    reason = failed.locator("td.outcome").inner_text()
    assert "not a DICOM object" in reason and "0xC000" in reason, reason
    expect(page.locator("#upload-summary")).to_have_text("3 stored, 1 failed.")
    seen.shot("upload")
    assert client.get("/studies", params={"StudyInstanceUID": study}).json()[0]["00201208"][
        "Value"
    ] == [3]
    assert seen.elsewhere() == []


@on_sqlite
def test_delete_asks_first(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
) -> None:
    study, _ = sine_study(client, slices=1)
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(f"{archive.url}/ui/#/study/{study}")
    page.wait_for_selector("#delete")
    page.click("#delete")
    page.wait_for_selector("dialog[open]")
    page.click("dialog button[value=cancel]")
    assert client.get("/studies", params={"StudyInstanceUID": study}).status_code == 200
    page.click("#delete")
    page.click("#dialog-ok")
    page.wait_for_function("() => location.hash === '#/studies'")
    assert client.get("/studies", params={"StudyInstanceUID": study}).json() == []
    assert seen.elsewhere() == []


EVERY = {"read", "write", "update", "delete", "workitems", "share", "admin"}


def test_sign_in_with_an_api_key_shows_only_what_its_scopes_allow(
    tmp_path: Path,
    browser: Any,
) -> None:
    settings = make_settings(tmp_path / "data", auth="api-key")
    with private_server(settings) as (client, container):
        reader = container.access.create_key("reader", {"read"}).secret
        admin = container.access.create_key("admin", set(EVERY)).secret
        client.headers["X-API-Key"] = admin
        study, _ = sine_study(client, slices=1)
        origin = origin_of(client)
        seen = visit(browser, origin)
        page = seen.page
        page.goto(origin + "/ui/")
        page.wait_for_selector("#key-form")
        assert page.locator("#nav a:visible").count() == 0
        page.fill("#apikey", "not-a-key")
        page.click("#key-form button")
        page.wait_for_function("() => document.querySelector('#status').dataset.kind === 'error'")
        assert "does not accept" in page.locator("#status").inner_text()
        page.fill("#apikey", reader)
        page.click("#key-form button")
        page.wait_for_selector("#studies tbody tr")
        assert page.locator("#signed-in").inner_text().startswith("Signed in as key:")
        assert page.locator("#nav a:visible").all_inner_texts() == ["Studies", "Worklist"]
        page.click(f"#studies tr[data-study='{study}'] a")
        page.wait_for_selector("#download")
        for hidden in ("#share", "#correct", "#reject", "#delete"):
            assert page.locator(hidden).count() == 0
        with page.expect_download() as download:
            page.click("#download")
        saved = tmp_path / "study.zip"
        download.value.save_as(saved)
        with zipfile.ZipFile(saved) as archive:
            assert len(archive.namelist()) == 1
        # The key revoked meanwhile: the next request leads back to the sign-in.
        page.goto(origin + "/ui/#/studies")
        page.wait_for_selector("#studies tbody tr")
        [reader_row] = [k for k in container.access.list_keys() if k.name == "reader"]
        assert container.access.revoke_key(reader_row.key_id)
        page.click("#search button[type=submit]")
        page.wait_for_selector("#key-form")
        expect(page.locator("#status")).to_contain_text("Sign in again")
        page.fill("#apikey", admin)
        page.click("#key-form button")
        page.wait_for_selector("#studies tbody tr")
        assert page.locator("#nav a:visible").all_inner_texts() == [
            "Studies",
            "Upload",
            "Worklist",
            "Admin",
        ]
        seen.shot("signed-in-with-key")
        assert seen.elsewhere() == []
        assert [e for e in seen.errors if "401" not in e] == []
        seen.context.close()


def test_sign_in_with_openid_connect(
    tmp_path: Path,
    browser: Any,
) -> None:
    with oidc_provider() as provider:
        provider.login = {"sub": "dr-who", "scope": "openid read download write"}
        settings = make_settings(
            tmp_path / "data",
            auth="oidc,api-key",
            oidc_issuer=provider.issuer,
            ui_oidc_client_id=provider.public_client,
            ui_oidc_scope="openid read write",
        )
        with private_server(settings) as (client, _):
            origin = origin_of(client)
            policy = client.get(origin + "/ui/").headers["content-security-policy"]
            assert f"connect-src 'self' {provider.issuer.split('/realms')[0]}" in policy
            client.headers["Authorization"] = f"Bearer {provider.token(scope='write')}"
            sine_study(client, "Oidc^Patient", slices=1)
            seen = visit(browser, origin)
            page = seen.page
            page.goto(origin + "/ui/#/studies")
            page.click("#oidc-sign-in")
            page.wait_for_selector("#studies tbody tr")
            assert page.locator("#signed-in").inner_text() == "Signed in as oidc:dr-who"
            assert "Oidc^Patient" in page.locator("#studies").inner_text()
            assert provider.codes == {}  # the code was used
            assert page.url.startswith(origin + "/ui/#/studies"), page.url
            # Nothing but the provider was asked, and the provider only for the sign-in.
            issuer_origin = provider.issuer.split("/realms")[0]
            assert seen.elsewhere(allowed=(issuer_origin,)) == []
            assert {u.split("?")[0] for u in seen.requests if u.startswith(issuer_origin)} == {
                provider.issuer + "/.well-known/openid-configuration",
                provider.issuer + "/authorize",
                provider.issuer + "/token",
            }
            seen.context.close()


def sign_in(page: Any, origin: str, key: str) -> None:
    page.goto(origin + "/ui/#/signin")
    page.fill("#apikey", key)
    page.click("#key-form button")
    page.wait_for_selector("#signed-in")


def test_share_link_made_then_opened_in_a_fresh_browser(
    tmp_path: Path,
    browser: Any,
) -> None:
    settings = make_settings(tmp_path / "data", auth="api-key")
    with private_server(settings) as (client, container):
        admin = container.access.create_key("admin", set(EVERY)).secret
        client.headers["X-API-Key"] = admin
        study, _ = sine_study(client, "Shared^Patient", slices=2)
        sine_study(client, "Not^Shared", slices=1)
        origin = origin_of(client)
        seen = visit(browser, origin)
        page = seen.page
        sign_in(page, origin, admin)
        page.goto(f"{origin}/ui/#/study/{study}")
        page.click("#share")
        page.fill("#share-form input[name=uses]", "3")
        page.click("#share-create")
        page.wait_for_selector("#share-link")
        link = page.input_value("#share-link")
        code = page.input_value("#share-code-made")
        page.wait_for_selector("#share-list tr[data-share]")
        seen.shot("share")
        # Someone else, in another browser: the link, a wrong code, then the right one.
        other = visit(browser, origin)
        other.page.goto(link)
        other.page.fill("#share-code", "000000" if code != "000000" else "111111")
        other.page.click("#share-form button")
        other.page.wait_for_function(
            "() => document.querySelector('#status').dataset.kind === 'error'"
        )
        other.page.fill("#share-code", code)
        other.page.click("#share-form button")
        other.page.wait_for_selector("#series li")
        assert "Shared^Patient" in other.page.locator(".facts").inner_text()
        wait_new_image(other.page, None)
        # A view link: no download, no action; the study list holds that study alone.
        assert other.page.locator(".actions button").count() == 0
        assert other.page.locator("#nav a:visible").all_inner_texts() == ["Studies", "Worklist"]
        other.shot("shared-study")
        other.page.click("#nav a[href='#/studies']")
        other.page.wait_for_selector("#studies tbody tr")
        assert other.page.locator("#studies tbody tr").count() == 1
        # Revoked: gone from the list of active links.
        page.click("#share-list button.revoke")
        page.wait_for_function("() => !document.querySelector('#share-list button.revoke')")
        assert seen.elsewhere() == [] and other.elsewhere() == []
        seen.context.close()
        other.context.close()


@on_sqlite
def test_download_correct_and_reject(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
) -> None:
    study, _ = sine_study(client, "Wrong^Name", slices=2)
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(f"{archive.url}/ui/#/study/{study}")
    # Without access control the zip streams from the server straight to disk.
    with page.expect_download() as download:
        page.click("#download")
    with zipfile.ZipFile(download.value.path()) as archived:
        assert len(archived.namelist()) == 2
    page.click("#correct")
    page.fill("dialog input[name=PatientName]", "Right^Name")
    page.click("#dialog-ok")
    page.wait_for_function("() => document.querySelector('h1').innerText === 'Right^Name'")
    found = client.get("/studies", params={"StudyInstanceUID": study}).json()[0]
    assert found["00100010"]["Value"] == [{"Alphabetic": "Right^Name"}]
    page.click("#reject")
    page.select_option("#reject-code", "113037")
    page.click("#dialog-ok")
    page.wait_for_function("() => location.hash === '#/studies'")
    assert client.get("/studies", params={"StudyInstanceUID": study}).json() == []
    assert seen.elsewhere() == []


@on_sqlite
def test_worklist_create_claim_and_complete(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
) -> None:
    other = generate_uid()
    answer = client.post(
        "/workitems",
        params={"workitem": other},
        content=json.dumps([make_workitem(label="Elsewhere", station="CT-9")]),
        headers={"Content-Type": "application/dicom+json"},
    )
    assert answer.status_code == 201, answer.text
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(f"{archive.url}/ui/#/worklist")
    page.wait_for_selector(f"#workitems tr[data-workitem='{other}']")
    page.fill("#worklist-create input[name=label]", "Read the chest CT")
    page.fill("#worklist-create input[name=patientName]", "Doe^Jane")
    page.fill("#worklist-create input[name=station]", "CT-1")
    page.click("#workitem-create")
    row = page.locator("#workitems tr", has_text="Read the chest CT")
    row.wait_for()
    # Filter by station.
    page.fill("#worklist-filter input[name=station]", "CT-1")
    page.click("#worklist-filter button")
    page.wait_for_function("() => document.querySelectorAll('#workitems tbody tr').length === 1")
    row.locator("button.claim").click()
    page.wait_for_function(
        "() => document.querySelector('#workitems tbody tr').dataset.state === 'IN PROGRESS'"
    )
    seen.shot("worklist")
    row.locator("button.complete").click()
    page.wait_for_function(
        "() => document.querySelector('#workitems tbody tr').dataset.state === 'COMPLETED'"
    )
    # Cancel: a claimed one by its holder, a scheduled one by a request.
    page.fill("#worklist-create input[name=label]", "Not needed")
    page.click("#workitem-create")
    spare = page.locator("#workitems tr", has_text="Not needed")
    page.fill("#worklist-filter input[name=station]", "")
    page.click("#worklist-filter button")
    spare.locator("button.claim").click()
    expect(spare).to_have_attribute("data-state", "IN PROGRESS")
    spare.locator("button.cancel").click()
    expect(spare).to_have_attribute("data-state", "CANCELED")
    # Live: a change made elsewhere shows without a reload, and without polling: while the
    # worklist is quiet, the page asks nothing (its change stream is open).
    page.fill("#worklist-filter input[name=station]", "")
    page.click("#worklist-filter button")
    page.wait_for_timeout(500)
    asked = len(seen.requests)
    page.wait_for_timeout(3000)
    assert seen.requests[asked:] == [], seen.requests[asked:]
    assert any("/workitems/stream" in url for url in seen.requests)
    txn = generate_uid()
    claimed = client.put(
        f"/workitems/{other}/state",
        content=json.dumps(
            [
                {
                    "00741000": {"vr": "CS", "Value": ["IN PROGRESS"]},
                    "00081195": {"vr": "UI", "Value": [txn]},
                }
            ]
        ),
        headers={"Content-Type": "application/dicom+json"},
    )
    assert claimed.status_code == 200, claimed.text
    page.wait_for_function(
        f"() => document.querySelector(\"tr[data-workitem='{other}']\")?.dataset.state"
        " === 'IN PROGRESS'",
        timeout=5000,
    )
    assert seen.elsewhere() == []


def test_admin_pages_load(
    tmp_path: Path,
    browser: Any,
) -> None:
    with private_server(
        make_settings(tmp_path / "data", audit="table", webhook_allow_private=True)
    ) as (client, _):
        sine_study(client, slices=2)
        origin = origin_of(client)
        seen = visit(browser, origin)
        page = seen.page
        page.goto(f"{origin}/ui/#/admin")
        page.wait_for_selector("#aggregate table")
        expect(page.locator("#aggregate")).to_contain_text("CT")
        expect(page.locator("#totals")).to_contain_text("2")
        seen.shot("admin-statistics")
        page.click("text=Consistency")
        page.wait_for_selector("#consistent, #admin-panel table")
        page.click("text=API keys")
        page.wait_for_selector("#key-create")
        page.fill("#key-create input[name=name]", "robot")
        page.click("#key-create button[type=submit]")
        page.wait_for_selector("#new-key")
        expect(page.locator("#admin-panel tr", has_text="robot")).to_have_count(1)
        page.click("text=Webhooks")
        page.wait_for_selector("#webhook-create")
        page.fill("#webhook-create input[name=url]", "http://127.0.0.1:9/hook")
        page.click("#webhook-create button")
        page.wait_for_selector("#admin-panel td:has-text('127.0.0.1:9')")
        page.click("text=Share links")
        page.wait_for_selector("#admin-panel table")
        page.click("text=Audit log")
        page.wait_for_selector("#audit tbody tr")
        expect(page.locator("#audit")).to_contain_text("DICOM Instances Transferred")
        page.fill("#audit-filter input[name=study]", generate_uid())
        page.click("#audit-filter button")
        expect(page.locator("#audit tbody tr")).to_have_count(0)
        seen.shot("admin-audit")
        assert seen.elsewhere() == []
        assert seen.refused == []
        assert seen.errors == []
        seen.context.close()


@on_sqlite
def test_pages_sorting_and_keyboard(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
) -> None:
    names = [f"Patient^{i:02d}" for i in range(27)]
    for i, name in enumerate(names):
        ds = make_instance(study_uid=generate_uid())
        ds.PatientName = name
        ds.StudyDate = f"2026{1 + i % 12:02d}{1 + i:02d}"
        assert stow(client, [ds]).status_code == 200
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(archive.url + "/ui/")
    expect(page.locator("#status")).to_have_text("Studies 1 to 25 of 27")
    expect(page.locator("#studies tbody tr")).to_have_count(25)
    page.click("#next")
    expect(page.locator("#status")).to_have_text("Studies 26 to 27 of 27")
    expect(page.locator("#studies tbody tr")).to_have_count(2)
    page.click("#previous")
    expect(page.locator("#studies tbody tr")).to_have_count(25)
    # Sorted by the server (orderby), over every page; then the other way.
    page.click("#studies th button:text('Patient')")
    expect(page.locator("#studies th[aria-sort='ascending']")).to_have_count(1)
    expect(page.locator("#studies tbody tr td:nth-child(2)").first).to_have_text(names[0])
    page.click("#studies th button:text('Patient')")
    expect(page.locator("#studies tbody tr td:nth-child(2)").first).to_have_text(names[-1])
    shown = page.locator("#studies tbody tr td:nth-child(2)").all_inner_texts()
    assert shown == sorted(names, reverse=True)[:25]
    page.click("#next")
    expect(page.locator("#studies tbody tr td:nth-child(2)").first).to_have_text(names[1])
    page.click("#previous")
    # By date, newest first.
    page.click("#studies th button:text('Date')")
    page.click("#studies th button:text('Date')")
    expect(page.locator("#studies th[aria-sort='descending']")).to_contain_text("Date")
    dates = page.locator("#studies tbody tr td:nth-child(4)").all_inner_texts()
    assert dates == sorted(dates, reverse=True)
    # The keyboard alone: to the name field, a search, Enter on a study's link.
    page.focus("input[name=PatientName]")
    page.keyboard.type("Patient^03")
    page.keyboard.press("Enter")
    expect(page.locator("#studies tbody tr")).to_have_count(1)
    page.focus("#studies tbody a")
    page.keyboard.press("Enter")
    page.wait_for_selector(".facts")
    expect(page.locator("h1")).to_have_text("Patient^03")
    # A dialog closes with Escape and does nothing.
    page.focus("#delete")
    page.keyboard.press("Enter")
    page.wait_for_selector("dialog[open]")
    page.keyboard.press("Escape")
    page.wait_for_selector("dialog[open]", state="detached")
    assert page.locator("dialog[open]").count() == 0
    expect(page.locator(".facts")).to_contain_text("Patient^03")
    assert seen.elsewhere() == []


UNLABELLED = """() => [...document.querySelectorAll('input, select, button')]
  .filter(e => e.type !== 'hidden' && !e.closest('[hidden]'))
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
               && !e.textContent.trim() && !e.getAttribute('aria-labelledby'))
  .map(e => e.outerHTML)"""


@on_sqlite
def test_every_page_is_labelled_fits_a_tablet_and_has_a_dark_theme(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
) -> None:
    study, _ = sine_study(client, slices=2)
    for scheme in ("light", "dark"):
        context = browser.new_context(viewport={"width": 768, "height": 1024}, color_scheme=scheme)
        page = context.new_page()
        requests: list[str] = []
        context.on("request", lambda r, seen=requests: seen.append(r.url))
        for hash_, ready in (
            ("#/studies", "#studies tbody tr"),
            (f"#/study/{study}", "#frame[data-path]"),
            ("#/upload", "#dropzone"),
            ("#/worklist", "#worklist-create"),
            ("#/admin", "#aggregate table"),
        ):
            page.goto(f"{archive.url}/ui/{hash_}")
            page.wait_for_selector(ready)
            assert page.evaluate(UNLABELLED) == [], hash_
            overflow = page.evaluate(
                "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{hash_} is wider than a tablet by {overflow}px"
            background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
            dark = background == "rgb(13, 17, 23)"
            assert dark == (scheme == "dark"), (scheme, background)
            if hash_ == f"#/study/{study}":
                ARTEFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTEFACTS / f"tablet-{scheme}-study.png"))
        assert all(u.startswith(archive.url) or u.startswith("blob:") for u in requests)
        context.close()


@on_sqlite
def test_upload_by_dropping_files_and_choosing_a_folder(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
    tmp_path: Path,
) -> None:
    study = generate_uid()
    data = list(to_bytes(make_instance(study)))
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(archive.url + "/ui/#/upload")
    page.wait_for_selector("#dropzone")
    handle = page.evaluate_handle(
        """(bytes) => { const t = new DataTransfer();
          t.items.add(new File([new Uint8Array(bytes)], 'dropped.dcm'));
          return t; }""",
        data,
    )
    page.dispatch_event("#dropzone", "drop", {"dataTransfer": handle})
    page.wait_for_selector("#uploads tr.ok")
    expect(page.locator("#upload-summary")).to_have_text("1 stored, 0 failed.")
    assert client.get("/studies", params={"StudyInstanceUID": study}).json() != []
    # A folder, its subfolders with it.
    folder = tmp_path / "exam"
    (folder / "series-2").mkdir(parents=True)
    other = generate_uid()
    (folder / "one.dcm").write_bytes(to_bytes(make_instance(other, instance_number=1)))
    (folder / "series-2" / "two.dcm").write_bytes(to_bytes(make_instance(other)))
    page.set_input_files("#folder", str(folder))
    expect(page.locator("#upload-summary")).to_have_text("3 stored, 0 failed.")
    expect(page.locator("#uploads tr[data-file='exam/series-2/two.dcm']")).to_have_count(1)
    assert len(client.get("/studies", params={"StudyInstanceUID": other}).json()) == 1


DEMO = [
    ("Lovelace^Ada", "CT", "CT chest with contrast", "20261128", 4),
    ("Hopper^Grace", "MR", "MR brain", "20261127", 3),
    ("Curie^Marie", "CR", "Chest PA and lateral", "20261126", 2),
    ("Turing^Alan", "CT", "CT abdomen pelvis", "20261125", 3),
    ("Franklin^Rosalind", "MR", "MR knee left", "20261124", 2),
    ("Noether^Emmy", "US", "Abdominal ultrasound", "20261121", 2),
    ("Meitner^Lise", "PT", "PET-CT whole body", "20261120", 3),
    ("Johnson^Katherine", "MG", "Screening mammography", "20261119", 2),
]


@on_sqlite
def test_the_readme_opens_with_the_study_list(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,
) -> None:
    """The README's first picture is the study list; DICOMWEB_UPDATE_SCREENSHOTS=1 draws it
    again from this demo archive."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    picture = readme.split("\n\n")[1]
    assert picture.startswith("![The study list") and "(docs/images/study-list.png)" in picture
    target = Path(__file__).parents[2] / "docs" / "images" / "study-list.png"
    assert target.is_file()
    for i, (name, modality, description, date, slices) in enumerate(DEMO):
        sine_study(
            client,
            name,
            modality,
            slices,
            StudyDescription=description,
            StudyDate=date,
            PatientID=f"MRN{4711 + i * 37}",
            AccessionNumber=f"A{26110 + i}",
        )
    seen = visit(browser, archive.url, 1280, 960)
    page = seen.page
    page.goto(archive.url + "/ui/")
    expect(page.locator("#studies tbody tr")).to_have_count(len(DEMO))
    page.wait_for_function(
        "() => [...document.querySelectorAll('#studies img.thumb')]"
        ".every(i => i.complete && i.naturalWidth > 0)"
    )
    expect(page.locator("#status")).to_contain_text("of 8")
    shot = seen.shot("readme-study-list")
    if os.environ.get("DICOMWEB_UPDATE_SCREENSHOTS") == "1":
        page.screenshot(path=str(target))
    assert shot.stat().st_size > 10_000


def test_webhook_dead_letters_seen_and_sent_again_from_the_admin_page(
    tmp_path: Path,
    browser: Any,
    receiver: Receiver,  # noqa: F811
) -> None:
    settings = make_settings(
        tmp_path / "data",
        webhook_max_attempts=1,
        webhook_retry_base_seconds=0.02,
        webhook_retry_max_seconds=0.05,
        changes_poll_seconds=0.1,
        webhook_allow_private=True,
    )
    receiver.answer = lambda _: 500
    with private_server(settings) as (client, _):
        origin = origin_of(client)
        seen = visit(browser, origin)
        page = seen.page
        page.goto(f"{origin}/ui/#/admin/webhooks")
        page.fill("#webhook-create input[name=url]", receiver.url)
        page.fill("#webhook-create input[name=filter]", "action=create")
        page.click("#webhook-create button")
        page.wait_for_selector("#admin-panel td:has-text('action=create')")
        assert stow(client, [make_instance()]).status_code == 200
        [sub] = client.get("/subscriptions").json()
        deadline = time.monotonic() + 30
        while not client.get(f"/subscriptions/{sub['id']}/dead-letters").json():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        page.click("#admin-panel button:text('Dead letters')")
        expect(page.locator("#dead-letters tbody tr")).to_have_count(1)
        expect(page.locator("#dead-letters tbody")).to_contain_text("500")
        receiver.answer = lambda _: 200
        page.click("#dead-letters button:text('Send all again')")
        receiver.wait_for(1)
        expect(page.locator("#dead-letters tbody tr")).to_have_count(0)
        seen.shot("admin-dead-letters")
        assert seen.elsewhere() == []
        seen.context.close()
