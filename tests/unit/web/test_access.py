"""Request ids (web/access.py): every response names its request, and so does every log line
written while it runs, in the event loop or in a worker thread."""

from __future__ import annotations

import io
import logging
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from dicomweb_server.web.access import RequestIdFilter, RequestLog

inner = logging.getLogger("dicomweb_server.test_access")


def _work() -> None:
    inner.warning("in a worker thread")


async def endpoint(_request: Request) -> PlainTextResponse:
    inner.warning("in the event loop")
    await run_in_threadpool(_work)
    return PlainTextResponse("ok")


@pytest.mark.anyio
async def test_every_log_line_of_a_request_names_it() -> None:
    app = Starlette(routes=[Route("/", endpoint)], middleware=[Middleware(RequestLog)])
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestIdFilter())
    inner.addHandler(handler)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            given = await client.get("/", headers={"X-Request-ID": "trace-7"})
            minted = await client.get("/")
        inner.warning("outside any request")
    finally:
        inner.removeHandler(handler)
    assert given.headers["x-request-id"] == "trace-7"
    rid = minted.headers["x-request-id"]
    assert rid and rid != "trace-7"
    lines = out.getvalue().splitlines()
    assert lines == [
        "in the event loop [request trace-7]",
        "in a worker thread [request trace-7]",
        f"in the event loop [request {rid}]",
        f"in a worker thread [request {rid}]",
        "outside any request",
    ]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_exception_no_route_handled_is_answered_by_the_edge() -> None:
    """The one edge layer answers what escaped every route: a 500 naming the request (and
    nothing of where it broke), with the request id header, logged as one line."""
    from dicomweb_server.web.errors import HANDLERS

    async def broken(_scope: object, _receive: object, _send: object) -> None:
        raise RuntimeError("/srv/secret/path went wrong")

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    errors = logging.getLogger("dicomweb_server")
    errors.addHandler(handler)
    try:
        app = RequestLog(broken, handlers=HANDLERS)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            answer = await client.get("/", headers={"X-Request-ID": "edge-1"})
    finally:
        errors.removeHandler(handler)
    assert answer.status_code == 500
    assert answer.headers["x-request-id"] == "edge-1"
    assert "edge-1" in answer.text and "/srv" not in answer.text
    assert "unexpected error" in out.getvalue() and "Traceback" not in out.getvalue()


@pytest.mark.anyio
async def test_the_edge_answers_cors_as_starlettes_middleware_did() -> None:
    from starlette.middleware.cors import CORSMiddleware

    async def ok(_scope: object, _receive: object, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"vary", b"Accept")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    cors = CORSMiddleware(ok, allow_origins=["https://viewer.example"], allow_headers=["*"])
    app = RequestLog(ok, cors=cors)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        plain = await client.get("/")
        allowed = await client.get("/", headers={"Origin": "https://viewer.example"})
        preflight = await client.options(
            "/",
            headers={
                "Origin": "https://viewer.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "authorization",
            },
        )
    # Without Origin the answer still says it varies by Origin (caches keep them apart).
    assert plain.headers["vary"] == "Accept, Origin"
    assert allowed.headers["access-control-allow-origin"] == "https://viewer.example"
    assert preflight.status_code == 200 and preflight.headers["x-request-id"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
