"""The web application at `/ui` (issue 20): static files of `dicomweb_server/ui/`, which
call the public DICOMweb and admin API like any client and import nothing of the server's
code. The page is told where the DICOMweb root is; a Content-Security-Policy keeps every
request on the server's own origin (no CDN, nothing fetched from elsewhere)."""

from __future__ import annotations

import html
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from dicomweb_server.services.errors import NotFound
from dicomweb_server.web.context import container

# The files of the app and their media types: nothing else is served.
_ASSETS = {"app.js": "text/javascript", "app.css": "text/css"}
_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


def _file(name: str) -> bytes:
    return resources.files("dicomweb_server").joinpath("ui", name).read_bytes()


def _headers(cache: str) -> dict[str, str]:
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": _POLICY,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


async def to_app(_request: Request) -> Response:
    """The server's root: the web application."""
    return RedirectResponse("/ui/", status_code=307)


async def page(request: Request) -> Response:
    root = html.escape(container(request).root.base_path or "", quote=True)
    body = _file("index.html").decode("utf-8").replace("{{DICOMWEB_ROOT}}", root)
    return Response(body, media_type="text/html; charset=utf-8", headers=_headers("no-cache"))


async def asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound("no such file of the web application")
    return Response(_file(name), media_type=media_type, headers=_headers("no-cache"))
