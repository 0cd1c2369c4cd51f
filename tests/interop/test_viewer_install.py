"""`dicomweb-server viewer install` (issue 20): the OHIF app fetched from a registry (the
test serves the real tarball on loopback, as the npm registry lays it out), its checksum
checked, configured for this server and served at /viewer, where it opens a study; a
tarball that is not the pinned one is refused and the installed copy kept."""

from __future__ import annotations

import http.server
import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import IN_CI, make_settings, private_server
from tests.helpers import origin_of
from tests.interop.test_webapp import sign_in, sine_study
from tests.interop.webapp import ARTEFACTS, visit

OHIF_DIR = Path(os.environ.get("DICOMWEB_TEST_OHIF_DIR", "/var/tmp/ohif-app-3.13.2"))
TARBALL = OHIF_DIR / "ohif-app-3.13.2.tgz"
CLI = str(Path(sys.executable).parent / "dicomweb-server")


class Registry:
    url = ""
    tarball: bytes | Path = b""
    asked: list[str]


@pytest.fixture
def registry() -> Iterator[Registry]:
    """An npm registry on loopback holding one tarball of @ohif/app 3.13.2."""
    if not TARBALL.is_file():
        if IN_CI:
            pytest.fail(f"CI=true and {TARBALL} is missing (.ci/run keeps it)")
        pytest.skip(f"{TARBALL} is missing; see .ci/run")
    found = Registry()
    found.tarball = TARBALL
    found.asked = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found.asked.append(self.path)
            if self.path != "/@ohif/app/-/app-3.13.2.tgz":
                self.send_error(404)
                return
            data = found.tarball.read_bytes() if isinstance(found.tarball, Path) else found.tarball
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    found.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    try:
        yield found
    finally:
        httpd.shutdown()


def install(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DICOMWEB_")}
    env["DICOMWEB_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [CLI, "viewer", "install", *args], env=env, capture_output=True, text=True, timeout=300
    )


def shows_an_image(path: Path) -> bool:
    """OHIF's viewport holds the sine pattern, not a blank area (the middle of the page)."""
    pixels = np.asarray(Image.open(path).convert("L"))
    height, width = pixels.shape
    middle = pixels[height // 4 : 3 * height // 4, width // 3 : 5 * width // 6]
    return bool(middle.std() > 30)


def wait_for_an_image(viewer: Any, shot: Path, seconds: float = 60) -> Path:
    """Screenshots of the viewer every two seconds until one shows an image (or time is
    up); the last one."""
    deadline = time.monotonic() + seconds
    while True:
        viewer.wait_for_timeout(2000)
        viewer.screenshot(path=str(shot))
        if shows_an_image(shot) or time.monotonic() > deadline:
            return shot


def test_viewer_install_then_ohif_opens_a_study(
    tmp_path: Path,
    registry: Registry,
    browser: Any,
) -> None:
    data = tmp_path / "data"
    done = install(data, "--registry", registry.url)
    assert done.returncode == 0, done.stderr
    assert registry.asked == ["/@ohif/app/-/app-3.13.2.tgz"]
    app = data / "viewer" / "app"
    assert 'window.PUBLIC_URL="/viewer/"' in (app / "index.html").read_text()
    assert "workbox-cdn" not in (app / "init-service-worker.js").read_text()
    with private_server(make_settings(data)) as (client, _):
        origin = origin_of(client)
        config = httpx.get(origin + "/ui/config.json").json()
        assert config["viewer"] == "/viewer/viewer?StudyInstanceUIDs={study}"
        assert httpx.get(origin + "/viewer").headers.get("location") == "/viewer/"
        assert httpx.get(origin + "/viewer/../index.sqlite3").status_code == 404
        assert httpx.get(origin + "/viewer/no-such.js").status_code == 404
        # The viewer holds a session: never inside another site's frame; nor is the API
        # explorer (keys are pasted there) or the web app.
        for page in ("/viewer/", "/docs", "/ui/"):
            headers = httpx.get(origin + page).headers
            assert headers["x-frame-options"] == "DENY", page
            assert "frame-ancestors 'none'" in headers["content-security-policy"], page
        study, _ = sine_study(client, slices=5)
        seen = visit(browser, origin, 1280, 800)
        page = seen.page
        # From the study page's "Open in OHIF".
        page.goto(f"{origin}/ui/#/study/{study}")
        with page.expect_popup() as popup:
            page.click("#open-viewer")
        viewer = popup.value
        viewer.wait_for_load_state()
        assert viewer.url.startswith(f"{origin}/viewer/viewer?StudyInstanceUIDs={study}")
        shot = wait_for_an_image(viewer, tmp_path / "ohif.png")
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(path=str(ARTEFACTS / "ohif-at-viewer.png"))
        assert shows_an_image(shot), "OHIF at /viewer shows no image"
        assert seen.elsewhere() == [], seen.elsewhere()
        seen.context.close()


def test_a_package_that_is_not_the_pinned_one_is_refused(
    tmp_path: Path, registry: Registry
) -> None:
    data = tmp_path / "data"
    first = install(data, "--from", str(TARBALL))
    assert first.returncode == 0, first.stderr
    # The same name, other bytes: a package/dist/index.html of someone else's.
    forged = io.BytesIO()
    with tarfile.open(fileobj=forged, mode="w:gz") as archive:
        page = b"<html>not OHIF</html>"
        member = tarfile.TarInfo("package/dist/index.html")
        member.size = len(page)
        archive.addfile(member, io.BytesIO(page))
    registry.tarball = forged.getvalue()
    refused = install(data, "--registry", registry.url)
    assert refused.returncode == 2
    assert "checksum" in refused.stderr and "refused" in refused.stderr
    # The installed copy is the one before, and nothing was left about.
    assert "OHIF" in (data / "viewer" / "app" / "index.html").read_text()
    assert sorted(p.name for p in (data / "viewer").iterdir()) == ["app"]


def test_open_in_ohif_hands_it_a_session_of_its_own_when_access_control_is_on(
    tmp_path: Path,
    registry: Registry,
    browser: Any,
) -> None:
    """OHIF gets a short-lived session limited to the study in its `token` parameter, never
    the tab's API key."""
    data = tmp_path / "data"
    assert install(data, "--from", str(TARBALL)).returncode == 0
    with private_server(make_settings(data, auth="api-key")) as (client, container):
        key = container.access.create_key("radiologist", {"read", "write"}).secret
        client.headers["X-API-Key"] = key
        study, _ = sine_study(client, slices=3)
        origin = origin_of(client)
        seen = visit(browser, origin, 1280, 800)
        page = seen.page
        sign_in(page, origin, key)
        page.goto(f"{origin}/ui/#/study/{study}")
        with page.expect_popup() as popup:
            page.click("#open-viewer")
        viewer = popup.value
        viewer.wait_for_url(f"{origin}/viewer/**")
        assert "token=dws_" in viewer.url and key not in viewer.url, viewer.url
        shot = wait_for_an_image(viewer, tmp_path / "ohif.png")
        assert shows_an_image(shot), "OHIF at /viewer shows no image with a key"
        assert seen.elsewhere() == []
        seen.context.close()
