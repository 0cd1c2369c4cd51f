"""The HTTP contract: every route is in openapi.yaml, the spec is served, CORS works."""

from __future__ import annotations

import re
from xml.etree import ElementTree

import httpx
import yaml
from starlette.routing import Route, WebSocketRoute

from dicomweb_server.web.routes import DICOMWEB_ROUTES, url_surface
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
        if isinstance(route, WebSocketRoute):
            routes.add((route.path, "GET"))  # described as the GET that upgrades
            continue
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


def test_a_method_a_resource_lacks_names_the_methods_it_has(client: httpx.Client) -> None:
    """RFC 9110 15.5.6: 405 with Allow listing every method of the resource (GET, HEAD and
    POST on /studies, whichever route a method would have reached)."""
    expected = {
        "/studies": "GET, HEAD, OPTIONS, POST",
        "/studies/1.2.3": "DELETE, GET, HEAD, OPTIONS, POST",
        "/series": "GET, HEAD, OPTIONS",
        "/studies/1.2.3/series/1.2.4/instances/1.2.5/frames/1": "GET, HEAD, OPTIONS",
        "/wado": "GET, HEAD, OPTIONS",
    }
    for path, allow in expected.items():
        for method in ("PUT", "DELETE", "PATCH"):
            if method in allow:
                continue
            r = client.request(method, path)
            assert r.status_code == 405, (method, path, r.status_code)
            assert r.headers["allow"] == allow, (method, path)
            assert r.json()["error"]
    # The methods it has are served as before.
    assert client.get("/studies").status_code == 200
    assert client.head("/studies").status_code == 200


def test_options_answers_the_retrieve_capabilities_of_the_resource(client: httpx.Client) -> None:
    """PS3.18 8.9: OPTIONS on any resource describes it (WADL), its methods and the media types
    each answers in, from the same table that routes requests; Allow names them too."""
    r = client.options("/studies")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/vnd.sun.wadl+xml")
    assert r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
    root = ElementTree.fromstring(r.content)
    ns = {"w": "http://wadl.dev.java.net/2009/02"}
    (resource,) = root.findall("w:resources/w:resource", ns)
    assert resource.get("path") == "studies"
    methods = {
        m.get("name"): [x.get("mediaType") for x in m.findall("w:response/w:representation", ns)]
        for m in resource.findall("w:method", ns)
    }
    assert set(methods) == {"GET", "POST"}
    assert "application/dicom+json" in methods["GET"]
    frames = client.options("/studies/1.2.3/series/1.2.4/instances/1.2.5/frames/1")
    assert "image/jls" in frames.text and frames.headers["allow"] == "GET, HEAD, OPTIONS"


def test_options_on_the_service_root_describes_the_whole_service(
    archive: RunningServer, client: httpx.Client
) -> None:
    """PS3.18 8.9: the target of Retrieve Capabilities may be the service itself: OPTIONS
    {root} and {root}/ answer one WADL document with every resource of the service."""
    ns = {"w": "http://wadl.dev.java.net/2009/02"}
    root_url = str(client.base_url).rstrip("/")
    for url in (root_url, root_url + "/"):
        r = httpx.request("OPTIONS", url)
        assert r.status_code == 200, (url, r.status_code)
        assert r.headers["content-type"].startswith("application/vnd.sun.wadl+xml")
        document = ElementTree.fromstring(r.content)
        [resources] = document.findall("w:resources", ns)
        assert resources.get("base") == root_url + "/"
        paths = {x.get("path") for x in resources.findall("w:resource", ns)}
        assert {"studies", "series", "instances", "workitems", "wado"} <= paths
        assert "studies/{study}/series/{series}/instances/{instance}/frames/{frames}" in paths
    # Other methods on the root are what they were; the web app's root still leads to it.
    assert httpx.get(archive.url + "/").status_code in (302, 303, 307)


def test_the_route_table_is_the_whole_url_surface(archive: RunningServer) -> None:
    """/openapi.yaml, /health and /ready are routes of the table like the DICOMweb ones."""
    paths = {getattr(route, "path", None) for route in url_surface("")}
    assert {"/openapi.yaml", "/health", "/ready", "/studies"} <= paths
    for path in ("/health", "/ready"):
        assert httpx.get(archive.url + path).json()["status"] in ("ok", "ready")
        assert httpx.request("OPTIONS", archive.url + path).status_code == 200
