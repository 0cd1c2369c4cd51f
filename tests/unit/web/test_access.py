"""Request ids (web/access.py): every response names its request, and so does every log line
written while it runs, in the event loop or in a worker thread."""

from __future__ import annotations

import io
import logging

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
