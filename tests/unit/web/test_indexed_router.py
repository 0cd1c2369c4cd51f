"""The router that tries only the routes of a path's first segment picks, for every path,
the route Starlette's own router picks (web/routes.py IndexedRouter)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest
from starlette.routing import BaseRoute, Mount, Route, Router, WebSocketRoute

from dicomweb_server.web.routes import IndexedRouter, Resource, ServiceCapabilities, url_surface

METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


def _paths(routes: list[BaseRoute], prefix: str = "") -> list[str]:
    """Every template with its parameters filled, with and without a trailing slash, and
    paths no route takes."""
    found = []
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(route, Mount):
            found += _paths(list(route.routes), prefix + route.path)
            found.append(prefix + route.path)
        elif isinstance(path, str):
            filled = re.sub(r"\{[^}]*\}", "1.2.3", prefix + path)
            found += [filled, filled.rstrip("/") + "/", filled + "/x"]
    return [*found, "/", "", "/nowhere", "/dicomweb", "/dicomweb/", "/dicomweb/nowhere/1"]


def _picked(router: Router, method: str, path: str, kind: str = "http") -> Any:
    """The route `router` hands the request to (None: its default), and its parameters."""
    picked: list[Any] = []
    scope = {"type": kind, "method": method, "path": path, "root_path": "", "headers": []}
    asyncio.run(router.app(scope, None, _recorded(picked)))  # type: ignore[arg-type]
    return picked[0]


def _recorded(picked: list[Any]) -> Any:
    async def send(message: Any) -> None:
        picked.append(message)

    return send


async def _handle(self: Any, scope: Any, _receive: Any, send: Any) -> None:
    # Routes are named by kind and template: the two tables are made apart.
    await send((type(self).__name__, getattr(self, "path", None), scope.get("path_params")))


async def _default(scope: Any, _receive: Any, send: Any) -> None:
    await send(None)


def _router(kind: type[Router], base: str) -> Router:
    routes = [
        Mount(r.path, app=kind(list(r.routes))) if isinstance(r, Mount) else r
        for r in url_surface(base)
    ]
    router = kind(routes, redirect_slashes=False, default=_default)
    for mount in routes:
        if isinstance(mount, Mount):
            mount.app.redirect_slashes = False  # type: ignore[attr-defined]
            mount.app.default = _default  # type: ignore[attr-defined]
    return router


@pytest.mark.parametrize("base", ["/dicomweb", ""])
def test_every_path_and_method_goes_where_starlettes_router_sends_it(
    base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for kind in (Route, WebSocketRoute, Resource, ServiceCapabilities):
        monkeypatch.setattr(kind, "handle", _handle)
    theirs, ours = _router(Router, base), _router(IndexedRouter, base)
    paths = _paths(list(theirs.routes))
    assert len(paths) > 200
    for path in paths:
        for method in METHODS:
            assert _picked(ours, method, path) == _picked(theirs, method, path), (method, path)
        websocket = _picked(ours, "GET", path, "websocket")
        assert websocket == _picked(theirs, "GET", path, "websocket"), path


def test_a_dicomweb_path_tries_only_the_routes_of_its_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for kind in (Route, WebSocketRoute, Resource, ServiceCapabilities):
        monkeypatch.setattr(kind, "handle", _handle)
    tried: list[str] = []
    matches = Route.matches

    def counted(self: Route, scope: Any) -> Any:
        tried.append(self.path)
        return matches(self, scope)

    monkeypatch.setattr(Route, "matches", counted)
    router = _router(IndexedRouter, "/dicomweb")
    assert _picked(router, "GET", "/dicomweb/studies/1.2/series/3.4/metadata")[1] == (
        "/studies/{study}/series/{series}/metadata"
    )
    # Of the 67 DICOMweb routes, those under /studies with five segments (of the root's,
    # none starts with studies).
    assert 0 < len(tried) < 8
    assert all(path.startswith("/studies/") and path.count("/") == 5 for path in tried)
    tried.clear()
    frame = "/dicomweb/studies/1/series/2/instances/3/frames/1,2"
    assert _picked(router, "GET", frame)[1].endswith("/frames/{frames}")
    assert len(tried) <= 2  # and the reject route, of the same shape, before it
