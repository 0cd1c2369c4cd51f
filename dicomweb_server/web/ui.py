"""The web application at `/ui` (issue 20) and the installed viewer at `/viewer`.

The app is the static files of `dicomweb_server/ui/`: they call the public DICOMweb and
admin API like any client and import nothing of the server's code. The page is told where
the DICOMweb root is; `/ui/config.json` tells it how to sign in and where the viewer is; a
Content-Security-Policy keeps every request on the server's own origin (no CDN, nothing
fetched from elsewhere), the OpenID provider the app signs in at excepted.

`/viewer` serves the OHIF app `dicomweb-server viewer install` put in DICOMWEB_VIEWER_DIR
(cli/viewer.py); a path that is no file of it gets its index.html (OHIF routes in the
browser).
"""

from __future__ import annotations

import html
import mimetypes
import re
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response

from dicomweb_server.services.errors import NotFound
from dicomweb_server.web.admin import json_answer
from dicomweb_server.web.auth import caller
from dicomweb_server.web.context import WebApp, container

# The files of the app: a name of letters, digits and dashes with one of these endings.
_ASSET_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
_ASSET_NAME = re.compile(r"[a-z0-9-]{1,64}\.(js|css|svg)", re.ASCII)
# Where the installed viewer is served, and the folder of its app in DICOMWEB_VIEWER_DIR
# (cli/viewer.py fills it).
VIEWER_PATH = "/viewer/"
VIEWER_APP = "app"


def _policy(webapp: WebApp) -> str:
    connect = "'self'"
    if webapp.oidc_issuer:
        # The token endpoint of the provider the app signs in at (PKCE, RFC 7636).
        parts = urlsplit(webapp.oidc_issuer)
        connect += f" {parts.scheme}://{parts.netloc}"
    return (
        "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
        f"connect-src {connect}; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
    )


def _file(name: str) -> bytes:
    return resources.files("dicomweb_server").joinpath("ui", name).read_bytes()


# Pages that handle credentials (the viewer holds a session, the API explorer takes keys in
# its "Authorize") are never shown inside another site's frame (clickjacking): the header of
# old browsers and the CSP directive of new ones.
NOT_FRAMED = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}


def _headers(webapp: WebApp, cache: str) -> dict[str, str]:
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": _policy(webapp),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "X-Frame-Options": "DENY",
    }


async def to_app(_request: Request) -> Response:
    """The server's root: the web application."""
    return RedirectResponse("/ui/", status_code=307)


async def page(request: Request) -> Response:
    here = container(request)
    root = html.escape(here.root.base_path or "", quote=True)
    body = _file("index.html").decode("utf-8").replace("{{DICOMWEB_ROOT}}", root)
    return Response(
        body, media_type="text/html; charset=utf-8", headers=_headers(here.webapp, "no-cache")
    )


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    found = _ASSET_NAME.fullmatch(name)
    if found is None:
        raise NotFound("no such file of the web application")
    try:
        body = _file(name)
    except (FileNotFoundError, IsADirectoryError):
        raise NotFound("no such file of the web application") from None
    return Response(
        body,
        media_type=_ASSET_TYPES[found.group(1)],
        headers=_headers(container(request).webapp, "no-cache"),
    )


def installed_viewer(webapp: WebApp) -> Path | None:
    """The installed viewer's app folder, when there is one."""
    if webapp.viewer_dir is None:
        return None
    app = webapp.viewer_dir / VIEWER_APP
    return app if (app / "index.html").is_file() else None


async def app_config(request: Request) -> Response:
    """How the app signs in, and which viewer "open in viewer" opens."""
    webapp = container(request).webapp
    oidc = None
    if webapp.oidc_issuer and webapp.oidc_client_id:
        oidc = {
            "issuer": webapp.oidc_issuer,
            "client_id": webapp.oidc_client_id,
            "scope": webapp.oidc_scope,
        }
    if installed_viewer(webapp) is not None:
        viewer: str | None = VIEWER_PATH + "viewer?StudyInstanceUIDs={study}"
    else:
        viewer = webapp.viewer_url
    body = {
        "root": container(request).root.base_path,
        "auth": _kinds(request),
        "oidc": oidc,
        "viewer": viewer,
    }
    response = json_answer(body)
    response.headers.update(_headers(webapp, "no-cache"))
    return response


def _kinds(request: Request) -> list[str]:
    """The kinds of credential the server takes ("api-key", "oidc"; none: access off)."""
    return sorted(container(request).access.kinds)


async def who_am_i(request: Request) -> Response:
    """`GET {root}/whoami`: the caller as the server sees it (401 for a credential that does
    not work): its name, its scopes, and whether it sees only some studies."""
    found = caller(request)
    found.identified()
    return json_answer(
        {
            "principal": found.principal,
            "scopes": sorted(found.scopes),
            "limited": found.studies is not None,
            "auth": _kinds(request),
        }
    )


async def to_viewer(_request: Request) -> Response:
    return RedirectResponse(VIEWER_PATH, status_code=307)


async def viewer(request: Request) -> Response:
    app = installed_viewer(container(request).webapp)
    if app is None:
        raise NotFound("no viewer is installed here (dicomweb-server viewer install)")
    wanted = request.path_params.get("path", "")
    target = (app / wanted).resolve()
    if not target.is_relative_to(app.resolve()):
        raise NotFound("no such file of the viewer")
    if not target.is_file():
        if "." in wanted.rsplit("/", 1)[-1]:
            raise NotFound("no such file of the viewer")
        target = app / "index.html"
    media_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    if target.suffix == ".wasm":
        media_type = "application/wasm"
    cache = "no-cache" if target.name in ("index.html", "app-config.js") else "max-age=86400"
    return FileResponse(
        target,
        media_type=media_type,
        headers={"Cache-Control": cache, "X-Content-Type-Options": "nosniff", **NOT_FRAMED},
    )
