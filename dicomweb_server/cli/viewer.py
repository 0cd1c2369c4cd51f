"""`dicomweb-server viewer install`: the OHIF viewer, one command away.

It fetches the built app (the npm package `@ohif/app`, a pinned version) from the npm
registry, or takes a tarball already on disk, checks the tarball's SHA-512 against the
pinned integrity (npm's `dist.integrity`), unpacks its `dist` folder, makes it work under
`/viewer/` (the build assumes the site's root), replaces its service-worker loader (which
fetches a script from a CDN) by one that only removes old workers, and writes its
configuration for this server: the DICOMweb data source on the page's own origin, reject
and upload on. The new copy replaces the old one in one rename; a failure leaves the old.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

from dicomweb_server.settings import Settings
from dicomweb_server.web.ui import VIEWER_APP, VIEWER_PATH

PACKAGE = "@ohif/app"
VERSION = "3.13.2"
# npm's dist.integrity of @ohif/app 3.13.2 (the registry's record of the tarball).
INTEGRITY = "sha512-" + (
    "WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
REGISTRY = "https://registry.npmjs.org/"
_CHUNK = 1 << 20
# The most the unpacked app may take: far above OHIF's ~200 MB, far below a bomb.
MAX_UNPACKED = 2 << 30

_NO_SERVICE_WORKER = """// Written by dicomweb-server viewer install: the app runs without a service
// worker (the original loader fetched one from a CDN); any left from earlier goes.
if (navigator.serviceWorker) {
  navigator.serviceWorker.getRegistrations().then(function (found) {
    for (const registration of found) registration.unregister();
  });
}
"""


class InstallError(Exception):
    """The viewer could not be installed (the reason is in the message)."""


def tarball_url(registry: str, version: str) -> str:
    """Where the npm registry keeps a version's tarball (its documented layout)."""
    return f"{registry.rstrip('/')}/{PACKAGE}/-/app-{version}.tgz"


def _fetch(source: str, into: Path) -> str:
    """Copy `source` (a URL or a file) to `into`, streaming; its npm integrity string."""
    digest = hashlib.sha512()
    try:
        if re.match(r"https?://", source):
            reader = urllib.request.urlopen(source, timeout=60)
        else:
            reader = open(source, "rb")  # noqa: SIM115 - closed below
    except (OSError, ValueError) as exc:
        raise InstallError(f"the package cannot be fetched: {exc}") from exc
    with reader, into.open("wb") as out:
        while chunk := reader.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode()


def _unpack(tarball: Path, into: Path) -> Path:
    """The package's `dist` folder, unpacked under `into` (members outside it refused)."""
    total = 0
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            members = []
            for member in archive:
                if not member.name.startswith("package/dist/"):
                    continue
                total += member.size
                if total > MAX_UNPACKED:
                    raise InstallError("the package unpacks to more than 2 GiB")
                members.append(member)
            # The "data" filter refuses links out, absolute paths and device files.
            archive.extractall(into, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InstallError(f"the package cannot be unpacked: {exc}") from exc
    dist = into / "package" / "dist"
    if not (dist / "index.html").is_file():
        raise InstallError("the package holds no built app (package/dist/index.html)")
    return dist


def _serve_under(dist: Path, public_path: str) -> None:
    """Make the build, made for the site's root, work under `public_path`."""
    index = dist / "index.html"
    page = index.read_text("utf-8")
    page = page.replace('window.PUBLIC_URL="/"', f'window.PUBLIC_URL="{public_path}"')
    page = re.sub(r'(href|src)="/(?!/)', rf'\1="{public_path}', page)
    index.write_text(page, "utf-8")
    # webpack's public path, where each bundle loads its chunks, workers and codecs from.
    for script in dist.glob("*.js"):
        text = script.read_text("utf-8", errors="surrogateescape")
        patched = text.replace(
            '__webpack_require__.p = "/";', f'__webpack_require__.p = "{public_path}";'
        )
        if patched != text:
            script.write_text(patched, "utf-8", errors="surrogateescape")
    (dist / "init-service-worker.js").write_text(_NO_SERVICE_WORKER, "utf-8")


def app_config(settings: Settings) -> str:
    """OHIF's app-config.js for this server: its data source on the page's own origin."""
    root = json.dumps(settings.base_path)
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "dicomweb",
        "configuration": {
            "friendlyName": "dicomweb-server",
            "name": "dicomweb-server",
            "qidoSupportsIncludeField": True,
            "supportsReject": True,
            "dicomUploadEnabled": True,
            "imageRendering": "wadors",
            "thumbnailRendering": "thumbnail",
            "enableStudyLazyLoad": True,
            "supportsFuzzyMatching": True,
            "supportsWildcard": True,
            "staticWado": False,
            "singlepart": "bulkdata,video",
            "omitQuotationForMultipartRequest": True,
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
        },
    }
    return f"""// Written by dicomweb-server viewer install for this server; run it again to renew.
(function () {{
  const root = window.location.origin + {root};
  const source = {json.dumps(source, indent=2)};
  source.configuration.qidoRoot = root;
  source.configuration.wadoRoot = root;
  source.configuration.wadoUriRoot = root + '/wado';
  window.config = {{
    routerBasename: {json.dumps(VIEWER_PATH.rstrip("/"))},
    extensions: [],
    modes: [],
    showStudyList: true,
    maxNumberOfWebWorkers: 2,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    investigationalUseDialog: {{ option: 'never' }},
    defaultDataSourceName: 'dicomweb',
    dataSources: [source],
  }};
}})();
"""


def install(
    settings: Settings,
    source: str | None = None,
    registry: str | None = None,
    version: str = VERSION,
    integrity: str = INTEGRITY,
) -> Path:
    """Install the viewer into DICOMWEB_VIEWER_DIR; the folder it serves from."""
    target = settings.resolved_viewer_dir
    target.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".install-", dir=target))
    try:
        tarball = work / "package.tgz"
        # npm's own variable for the registry (lower case, as npm spells it).
        npm_registry = os.environ.get("npm_config_registry")  # noqa: SIM112
        where = source or tarball_url(registry or npm_registry or REGISTRY, version)
        found = _fetch(where, tarball)
        if found != integrity:
            raise InstallError(
                f"the package's checksum is not the pinned one ({PACKAGE} {version}): refused"
            )
        dist = _unpack(tarball, work / "unpacked")
        _serve_under(dist, VIEWER_PATH)
        (dist / "app-config.js").write_text(app_config(settings), "utf-8")
        (dist / "dicomweb-viewer.json").write_text(
            json.dumps({"package": PACKAGE, "version": version, "integrity": integrity}),
            "utf-8",
        )
        app = target / VIEWER_APP
        old = target / ".previous"
        shutil.rmtree(old, ignore_errors=True)
        if app.exists():
            app.rename(old)
        dist.rename(app)
        shutil.rmtree(old, ignore_errors=True)
        return app
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_install(settings: Settings, source: str | None, registry: str | None) -> int:
    import sys

    try:
        app = install(settings, source, registry)
    except InstallError as exc:
        print(f"dicomweb-server: {exc}", file=sys.stderr)
        return 2
    print(f"{PACKAGE} {VERSION} installed; the server serves it at {VIEWER_PATH} ({app.name})")
    return 0
