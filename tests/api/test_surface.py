"""The HTTP contract: every route is in openapi.yaml, the spec is served, CORS works."""

from __future__ import annotations

import re

import httpx
import yaml
from starlette.routing import Route

from dicomweb_server.web.routes import DICOMWEB_ROUTES
from tests.conftest import RunningServer


def test_openapi_describes_every_route(archive: RunningServer) -> None:
    r = httpx.get(archive.url + "/openapi.yaml")
    assert r.status_code == 200
    spec = yaml.safe_load(r.text)
    assert spec["openapi"].startswith("3.1")
    described = {
        (path, method.upper())
        for path, ops in spec["paths"].items()
        for method in ops
        if method != "parameters"
    }
    routes = set()
    for route in DICOMWEB_ROUTES:
        assert isinstance(route, Route)
        path = re.sub(r"\{(\w+):path\}", r"{\1}", route.path)
        for method in route.methods or ():
            if method != "HEAD":
                routes.add((path, method))
    assert routes == described


def test_cors_lets_a_viewer_on_another_origin_call(client: httpx.Client) -> None:
    origin = "http://viewer.example"
    preflight = client.options(
        "/studies",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "accept",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] in ("*", origin)
    r = client.get("/studies", headers={"Origin": origin})
    assert r.headers["access-control-allow-origin"] in ("*", origin)
    assert "Warning" in r.headers["access-control-expose-headers"]
