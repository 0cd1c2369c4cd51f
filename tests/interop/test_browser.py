"""A real browser (Debian's headless Chromium) loads a page from another origin that fetches
a study's thumbnails and a rendered frame from the server and decodes them: proves CORS,
media types and image formats as a web viewer meets them."""

from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, RunningServer
from tests.factories import bundled_bytes, make_instance, parse
from tests.helpers import stow

PAGE = """<!doctype html><html><body><pre id="out">pending</pre><script>
const base = %(base)s;
const urls = %(urls)s;
async function load(url) {
  const response = await fetch(base + url, {headers: {Accept: "image/jpeg"}});
  if (!response.ok) return {url, status: response.status};
  const blob = await response.blob();
  const bitmap = await createImageBitmap(blob);
  return {url, status: response.status, type: blob.type, width: bitmap.width,
          height: bitmap.height, etag: response.headers.get("ETag")};
}
Promise.all(urls.map(load)).then(
  r => { document.getElementById("out").textContent = "RESULT" + JSON.stringify(r) + "END"; },
  e => { document.getElementById("out").textContent = "ERROR" + e; });
</script></body></html>"""


@pytest.fixture
def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if IN_CI:
            pytest.fail("CI=true and chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed")
    return path


@pytest.fixture
def page_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Another origin: a static server on another loopback port."""
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path))  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


def test_viewer_page_loads_thumbnails_and_rendered_frame(
    archive: RunningServer, chromium: str, page_server: tuple[Path, str]
) -> None:
    if archive.backend != "sqlite":
        pytest.skip("the browser path does not depend on the index; run once")
    import httpx

    ct = parse(bundled_bytes("CT_small.dcm"))
    colour = parse(bundled_bytes("SC_rgb_jpeg_dcmtk.dcm"))
    extra = make_instance(ct.StudyInstanceUID, rows=64, columns=32)
    with httpx.Client(base_url=archive.base_url) as client:
        assert stow(client, [bundled_bytes("CT_small.dcm"), extra]).status_code == 200
        assert stow(client, [bundled_bytes("SC_rgb_jpeg_dcmtk.dcm")]).status_code == 200
    study = f"/studies/{ct.StudyInstanceUID}"
    instance = f"{study}/series/{ct.SeriesInstanceUID}/instances/{ct.SOPInstanceUID}"
    colour_instance = (
        f"/studies/{colour.StudyInstanceUID}/series/{colour.SeriesInstanceUID}"
        f"/instances/{colour.SOPInstanceUID}"
    )
    urls = [
        f"{study}/thumbnail",
        f"{study}/series/{ct.SeriesInstanceUID}/thumbnail",
        f"{instance}/thumbnail",
        f"{instance}/frames/1/rendered?window=40,400,LINEAR",
        f"{colour_instance}/rendered?viewport=50,50",
    ]
    folder, origin = page_server
    (folder / "viewer.html").write_text(
        PAGE % {"base": json.dumps(archive.base_url), "urls": json.dumps(urls)}, "utf-8"
    )
    run = subprocess.run(
        [
            chromium,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={folder / 'profile'}",
            "--virtual-time-budget=20000",
            "--dump-dom",
            f"{origin}/viewer.html",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r"<pre id=\"out\">RESULT(.*?)END</pre>", run.stdout, re.S)
    assert found, f"page did not finish: {run.stdout[-2000:]} {run.stderr[-2000:]}"
    results = json.loads(found.group(1))
    assert [r["status"] for r in results] == [200] * len(urls), results
    assert all(r["type"] == "image/jpeg" for r in results), results
    sizes = [(r["width"], r["height"]) for r in results]
    assert sizes[2] == (128, 128)  # CT_small is 128x128
    assert sizes[3] == (ct.Columns, ct.Rows)
    assert sizes[4] == (50, 50)
    assert all(r["etag"] for r in results)  # exposed to scripts by CORS
