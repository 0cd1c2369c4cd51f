"""The web application end to end (issue 20): Playwright driving the system Chromium on a
real server. Each test checks that no request left the server's origin."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

import httpx
import numpy as np
import pytest
from pydicom.uid import generate_uid

from tests.conftest import RunningServer
from tests.factories import make_instance, to_bytes
from tests.helpers import stow
from tests.interop.webapp import Visit, browser, visit  # noqa: F401 - the fixture

pytestmark = pytest.mark.parametrize("server", ["sqlite"], indirect=True)


def sine_study(
    client: httpx.Client, name: str = "Lovelace^Ada", modality: str = "CT", slices: int = 5
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


def test_search_open_a_study_and_scroll_the_quick_viewer(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,  # noqa: F811
) -> None:
    study, _ = sine_study(client)
    sine_study(client, "Hopper^Grace", "MR", 2)
    seen = visit(browser, archive.url)
    page = seen.page
    page.goto(archive.url + "/")
    page.wait_for_selector("#studies tbody tr >> nth=1")
    assert page.locator("#totals").inner_text().startswith("2 matching studies")
    assert "2 studies, 2 series, 7 instances" in page.locator("#totals").inner_text()
    assert page.locator("#status").inner_text() == "Studies 1 to 2 of 2"
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


def test_a_study_stored_elsewhere_appears_without_a_reload(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,  # noqa: F811
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


def test_upload_three_good_files_and_a_bad_one(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,  # noqa: F811
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
    assert reason and reason != "sending", reason
    assert page.locator("#upload-summary").inner_text() == "3 stored, 1 failed."
    seen.shot("upload")
    assert client.get("/studies", params={"StudyInstanceUID": study}).json()[0]["00201208"][
        "Value"
    ] == [3]
    assert seen.elsewhere() == []


def test_delete_asks_first(
    archive: RunningServer,
    client: httpx.Client,
    browser: Any,  # noqa: F811
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


def dumps(value: Any) -> str:
    return json.dumps(value)
