"""OHIF Viewer 3 (the built app from npm) in headless Chromium against the server: the study
opens as a radiologist would open it, with the data source of docs/conformance.md.

The app is not committed: .ci/run fetches `@ohif/app` from the npm registry into a cache
folder and names it in DICOMWEB_TEST_OHIF_DIR. Without it the test skips (fails under CI).
"""

from __future__ import annotations

import contextlib
import http.server
import io
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image
from pydicom.uid import generate_uid

from dicomweb_server.app import create_app
from dicomweb_server.dicom.transcode import transcode
from tests.conftest import IN_CI, RunningServer, make_settings, private_server
from tests.factories import make_instance, to_bytes
from tests.helpers import stow
from tests.interop.test_browser import chromium  # noqa: F401 - the fixture

OHIF_DIR = Path(os.environ.get("DICOMWEB_TEST_OHIF_DIR", "/var/tmp/ohif-app-3.13.2"))


def _data_source(root: str) -> str:
    """The OHIF data source of docs/conformance.md ("Viewers: OHIF"), for `root`."""
    text = (Path(__file__).parents[2] / "docs" / "conformance.md").read_text("utf-8")
    block = re.search(r"```js\n(\{.*?\n\})\n```", text, re.S)
    assert block, "the conformance notes lost their OHIF data source"
    return block.group(1).replace("http://127.0.0.1:8080/dicomweb", root)


def _app_config(root: str, script: str = "") -> bytes:
    return f"""{script}
window.config = {{
  routerBasename: null, extensions: [], modes: [], showStudyList: true,
  maxNumberOfWebWorkers: 1, showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false, showLoadingIndicator: false,
  investigationalUseDialog: {{ option: 'never' }},
  defaultDataSourceName: 'dicomweb',
  dataSources: [{_data_source(root)}],
}};""".encode()


def _sine_series(study: str, stored_as: str | None = None) -> list[bytes]:
    """Five 128x128 slices of a sine pattern (easy to tell from a blank viewport)."""
    series = generate_uid()
    sent = []
    yy, xx = np.mgrid[0:128, 0:128]
    for i in range(5):
        ds = make_instance(study, series, rows=128, columns=128, instance_number=i + 1)
        ds.PixelData = ((np.sin(xx / 10 + i) * np.cos(yy / 13) + 1) * 1500).astype("<u2").tobytes()
        ds.WindowCenter, ds.WindowWidth = 1500, 3000
        ds.ImagePositionPatient = [0, 0, i * 2.0]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [1, 1]
        sent.append(to_bytes(ds) if stored_as is None else transcode(to_bytes(ds), stored_as))
    return sent


def _screenshot(browser: str, url: str, tmp_path: Path) -> tuple[Path, str]:
    """Headless Chromium at `url` (30 s of virtual time), its screenshot and its stderr."""
    shot = tmp_path / "viewer.png"
    run = subprocess.run(
        [
            browser,
            "--headless=new",
            "--no-sandbox",
            "--enable-unsafe-swiftshader",
            "--use-angle=swiftshader",
            "--no-first-run",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1280,800",
            "--virtual-time-budget=30000",
            f"--screenshot={shot}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=240,
    )
    return shot, run.stderr


def _shows_the_study(shot: Path) -> bool:
    """The viewport holds the sine pattern, not a blank area."""
    viewport = np.asarray(Image.open(shot).convert("L"))[250:650, 480:1040]
    return bool(viewport.std() > 30)


class OhifSite:
    url = ""
    dicomweb_root = ""
    script = ""  # run by app-config.js before the app starts


@pytest.fixture
def ohif_site() -> Iterator[OhifSite]:
    """The built app on its own origin, with an app-config.js for `dicomweb_root`; unknown
    paths get index.html (OHIF routes in the browser)."""
    dist = OHIF_DIR / "dist"
    if not (dist / "index.html").is_file():
        if IN_CI:
            pytest.fail(f"CI=true and the OHIF app is not in {dist} (.ci/run fetches it)")
        pytest.skip(f"the OHIF app is not in {dist}; see .ci/run to fetch it")
    site = OhifSite()

    class Site(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object) -> None:
            super().__init__(*args, directory=str(dist))  # type: ignore[arg-type]

        def send_head(self):  # type: ignore[no-untyped-def]
            path = self.path.split("?", 1)[0]
            if path == "/app-config.js":
                config = _app_config(site.dicomweb_root, site.script)
                self.send_response(200)
                self.send_header("Content-Type", "application/javascript")
                self.send_header("Content-Length", str(len(config)))
                self.end_headers()
                return io.BytesIO(config)
            if not Path(self.translate_path(path)).is_file():
                self.path = "/index.html"
            return super().send_head()

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Site)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    site.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield site
    finally:
        httpd.shutdown()


@contextlib.contextmanager
def _recorded(
    archive: RunningServer, frame_types: set[str] | None = None
) -> Iterator[tuple[str, list[tuple[str, str, int]]]]:
    """The archive's app again, on a port of its own, recording what the viewer asks and
    gets (method, path, status), and the transfer syntaxes of the frames it gets: its
    DICOMweb root and the record."""
    seen: list[tuple[str, str, int]] = []
    app = create_app(archive.container)

    async def recorder(scope, receive, send):  # type: ignore[no-untyped-def]
        async def record(message):  # type: ignore[no-untyped-def]
            if message["type"] == "http.response.start":
                seen.append((scope["method"], scope["path"], message["status"]))
            if (
                frame_types is not None
                and message["type"] == "http.response.body"
                and "/frames/" in scope["path"]
            ):
                # The head of the first part names the transfer syntax of the frame.
                head = message.get("body", b"")[:400]
                frame_types.update(re.findall(r"transfer-syntax=([0-9.]+)", head.decode("latin-1")))
            await send(message)

        await app(scope, receive, record)

    server = uvicorn.Server(
        uvicorn.Config(recorder, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}{archive.settings.base_path}", seen
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.mark.parametrize("stored_as", [None, "1.2.840.10008.1.2.4.80"])
def test_ohif_opens_a_study(
    archive: RunningServer,
    chromium: str,  # noqa: F811
    ohif_site: OhifSite,
    tmp_path: Path,
    stored_as: str | None,
) -> None:
    """Stored natively, and stored as JPEG-LS (the viewer asks for frames with
    transfer-syntax=* and decodes the stored code-streams itself)."""
    if archive.backend != "sqlite":
        pytest.skip("the viewer path does not depend on the index; run once")
    study = generate_uid()
    sent = _sine_series(study, stored_as)
    with httpx.Client(base_url=archive.base_url) as client:
        assert stow(client, sent).status_code == 200

    frame_types: set[str] = set()
    with _recorded(archive, frame_types) as (root, seen):
        ohif_site.dicomweb_root = root
        shot, stderr = _screenshot(
            chromium, f"{ohif_site.url}/viewer?StudyInstanceUIDs={study}", tmp_path
        )
    assert shot.is_file(), stderr[-2000:]
    failures = [s for s in seen if s[2] >= 400]
    assert failures == [], failures
    paths = [p for _, p, _ in seen]
    assert any(p.endswith("/studies") for p in paths), seen
    assert any(p.endswith("/metadata") for p in paths), seen
    frames = {p for p in paths if p.endswith("/frames/1")}
    assert len(frames) >= 1, seen
    assert any(p.endswith("/thumbnail") for p in paths), seen
    # The frames went out as stored (the viewer asks with transfer-syntax=*).
    assert frame_types == {stored_as or "1.2.840.10008.1.2.1"}, frame_types
    # The image is on screen: the viewport holds the sine pattern, not a blank area.
    assert _shows_the_study(shot)


def test_ohif_opens_a_shared_study_with_auth_on(
    chromium: str,  # noqa: F811
    ohif_site: OhifSite,
    tmp_path: Path,
) -> None:
    """Access control on: the recipient of a share link opens it in a browser; the archive
    redeems it and redirects to OHIF with the session as the `token` URL parameter, which
    OHIF sends as a bearer token on every request (docs/conformance.md, "Share links")."""
    settings = make_settings(
        tmp_path / "archive",
        auth="api-key",
        audit="table",
        cors_allow_origins=ohif_site.url,
        share_viewer_url=ohif_site.url + "/viewer?StudyInstanceUIDs={study}&token={token}",
    )
    with private_server(settings) as (client, container):
        admin = {
            "Authorization": f"Bearer {container.access.create_key('a', {'admin', 'write'}).secret}"
        }
        study = generate_uid()
        assert stow(client, _sine_series(study), headers=admin).status_code == 200
        other = generate_uid()
        assert stow(client, _sine_series(other), headers=admin).status_code == 200
        share = client.post("/shares", json={"study": study, "max_uses": 1}, headers=admin).json()
        ohif_site.dicomweb_root = str(client.base_url).rstrip("/")
        shot, stderr = _screenshot(chromium, share["url"], tmp_path)
        assert shot.is_file(), stderr[-2000:]
        assert container.audit.flush()
        events = client.get("/audit", params={"limit": 1000}, headers=admin).json()["events"]
        # Everything the viewer asked for, it asked as the share, and got.
        viewer = [
            e for e in events if e["ActiveParticipant"][0]["UserID"] == f"share:{share['id']}"
        ]
        outcomes = {e["EventIdentification"]["EventOutcomeIndicator"] for e in viewer}
        assert len(viewer) > 5 and outcomes == {"0"}, [e["EventIdentification"] for e in viewer]
        for event in viewer:
            named = [
                o["ParticipantObjectID"] for o in event.get("ParticipantObjectIdentification", [])
            ]
            assert other not in named
        assert _shows_the_study(shot)
        # The link was used once (max_uses=1): opening it again is refused.
        again = client.get("/shares/open", params={"token": share["token"]})
        assert again.status_code == 401 and "used up" in again.json()["error"]


def test_ohif_rejects_a_series_through_its_data_source(
    archive: RunningServer,
    chromium: str,  # noqa: F811
    ohif_site: OhifSite,
    tmp_path: Path,
) -> None:
    """With `supportsReject: true` (docs/conformance.md) OHIF's data source has `reject`,
    the call its UI makes. OHIF 3.13.2's throws before sending anything (it captures the
    auth header function before `initialize` sets it: "getAuthrorizationHeader is not a
    function"); then the page sends the request that function builds (dcm4chee's route, the
    `^` as %5E, from the viewer's origin) itself. The archive answers 204 and the series is
    gone from QIDO-RS at once."""
    if archive.backend != "sqlite":
        pytest.skip("the viewer path does not depend on the index; run once")
    study = generate_uid()
    first, second = _sine_series(study), _sine_series(study)
    with httpx.Client(base_url=archive.base_url) as client:
        assert stow(client, first + second).status_code == 200
        rejected = client.get(f"/studies/{study}/series").json()[1]["0020000E"]["Value"][0]
    with _recorded(archive) as (root, seen):
        ohif_site.dicomweb_root = root
        ohif_site.script = f"""
const report = what => fetch('{root}/report/' + encodeURIComponent(what));
const asOhifDoes = source => {{
  const xhr = new XMLHttpRequest();
  const url = source.getConfig().wadoRoot + '/studies/{study}/series/{rejected}';
  xhr.open('POST', url + '/reject/113001%5EDCM', true);
  xhr.onreadystatechange = () => xhr.readyState == 4 && report('sent/' + xhr.status);
  xhr.send();
}};
const rejectOnce = setInterval(() => {{
  const manager = window.extensionManager;
  const source = manager && manager.getActiveDataSource && manager.getActiveDataSource()[0];
  if (!source || !source.reject) return;
  clearInterval(rejectOnce);
  source.reject.series('{study}', '{rejected}').then(
    () => report('ohif/204'),
    e => {{ report('ohif-failed/' + e); asOhifDoes(source); }});
}}, 250);"""
        shot, stderr = _screenshot(
            chromium, f"{ohif_site.url}/viewer?StudyInstanceUIDs={study}", tmp_path
        )
    assert shot.is_file(), stderr[-2000:]
    reports = [p.rsplit("/report/", 1)[1] for _, p, _ in seen if "/report/" in p]
    assert reports in (
        ["ohif/204"],
        ["ohif-failed/TypeError: getAuthrorizationHeader is not a function", "sent/204"],
    ), reports
    posts = [s for s in seen if s[0] == "POST"]
    assert posts == [
        ("POST", f"/dicomweb/studies/{study}/series/{rejected}/reject/113001^DCM", 204)
    ]
    with httpx.Client(base_url=archive.base_url) as client:
        left = client.get(f"/studies/{study}/series").json()
        assert len(left) == 1 and rejected not in str(left)
        assert client.post(f"/studies/{study}/series/{rejected}/restore").status_code == 200
