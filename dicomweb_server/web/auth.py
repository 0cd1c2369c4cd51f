"""Who the request is from: the middleware that makes each request's `Caller`.

It runs inside the request log (which gives the request its id) and before any route; the
handlers take the caller with `caller(request)` and hand it to every service call. Today
every request is anonymous and may do everything; the access control issue reads tokens and
API keys here.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from dicomweb_server.services.context import Caller
from dicomweb_server.web.access import request_id


class Callers:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope.setdefault("state", {})["caller"] = Caller.anonymous(request_id(scope))
        await self.app(scope, receive, send)


def caller(request: Request) -> Caller:
    """The caller of this request (made by `Callers`)."""
    found = request.scope.get("state", {}).get("caller")
    return found if isinstance(found, Caller) else Caller.anonymous(request_id(request.scope))
