"""Request ids and the access log.

It also runs what a request must release once its response is sent or abandoned (memory
held for a transcoded body: `hold_until_sent`), whatever ends the request.

Every request gets an id: the client's `X-Request-ID` when it is a plain token, otherwise a
new one; it is returned in the response's `X-Request-ID` and names the request in every log
line about it, so an error body that gives only the id leads an operator to the details.

The access log (one line a request, in place of uvicorn's) never carries patient data: query
values (PatientName=..., PatientID=...) are replaced by `*` unless DICOMWEB_LOG_QUERY_VALUES
asks for them while debugging; the client's address is not logged.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qsl, quote

from starlette.datastructures import Headers
from starlette.exceptions import WebSocketException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, ExceptionHandler, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

log = logging.getLogger("dicomweb_server.access")

# The id of the request this code runs for (the thread pool carries it into worker threads).
_current: ContextVar[str | None] = ContextVar("request_id", default=None)


class RequestIdFilter(logging.Filter):
    """Names the current request in every log line written while it runs (the access and
    error lines name it already)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = _current.get()
        if rid is not None and "[request " not in str(record.msg):
            record.msg = f"{record.msg} [request {rid}]"
        return True


def name_requests_in_logs() -> None:
    """Add the request id to the lines of every handler of the root logger."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())


_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)


def request_id(scope: Scope) -> str:
    """The id of the request in `scope` (set by RequestLog)."""
    return str(scope.get("state", {}).get("request_id", "-"))


def after_response(scope: Scope, cleanup: Callable[[], None]) -> None:
    """Run `cleanup` when the request ends: its response sent, or the client gone."""
    scope["state"]["cleanups"].append(cleanup)


# Credentials in a query (a share link's token) are never logged, even with values kept.
# Parameters that carry credentials (a client that put its key in a URL by mistake), and
# values shaped like one: never written to a log or an audit message, whatever their name.
_SECRET_PARAMETERS = frozenset(
    {
        "token", "access_token", "id_token", "refresh_token", "code", "key", "api_key",
        "apikey", "x-api-key", "password", "secret", "client_secret", "authorization",
    }
)  # fmt: skip
# Matched at the start of a value (`match`): a bearer or basic credential, a key, share link
# or session of this archive, a webhook secret, a JWT.
_SECRET_VALUE = re.compile(
    r"\s*(bearer\s|basic\s|dw[kslc]_|whsec_|eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.)",
    re.ASCII | re.IGNORECASE,
)


def _secret(name: str, value: str) -> bool:
    return name.lower() in _SECRET_PARAMETERS or bool(_SECRET_VALUE.match(value))


@functools.lru_cache(maxsize=1024)
def without_credentials(query: str) -> str:
    """The query string with every credential-looking value replaced by `*` (the audit
    trail keeps the rest of a query as sent: PS3.15 A.5.3.10)."""
    if not query:
        return query
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(_secret(name, value) for name, value in pairs):
        return query
    return "&".join(
        f"{quote(name, safe='')}={'*' if _secret(name, value) else quote(value, safe='')}"
        for name, value in pairs
    )


@functools.lru_cache(maxsize=1024)
def redacted_query(query: str, keep_values: bool) -> str:
    """The query as the access log shows it (clients repeat theirs: kept by query)."""
    if not query:
        return query
    if keep_values:
        return without_credentials(query)
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{quote(name, safe='')}={'*' if value else ''}" for name, value in pairs)


# (method, route template, status, seconds, body bytes received, body bytes sent)
Observer = Callable[[str, str, int, float, int, int], None]
# Who a connection is from (web/auth.py), made once per request or WebSocket.
CallerMaker = Callable[[Scope], Awaitable[object]]


class RequestLog:
    """The one layer every request passes before the routes: its id, its log line and
    metrics, and, in the app (app.py), its caller, CORS and the answer to an exception no
    route handled. One wrapper of `send` instead of five stacked middlewares (Starlette's
    error and exception middlewares, CORS, the caller, the log): each layer cost a call
    and a wrapper per message on every request."""

    def __init__(
        self,
        app: ASGIApp,
        log_query_values: bool = False,
        observe: Observer | None = None,
        callers: CallerMaker | None = None,
        cors: CORSMiddleware | None = None,
        handlers: Mapping[Any, ExceptionHandler] | None = None,
    ) -> None:
        self.app = app
        self.log_query_values = log_query_values
        self.observe = observe
        self.callers = callers
        self.cors = cors
        # The handlers Starlette's routes look up (as its ExceptionMiddleware sets them).
        self.handlers: dict[Any, ExceptionHandler] | None = (
            None if handlers is None else {WebSocketException: _close_websocket, **handlers}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            if self.handlers is not None:
                scope["starlette.exception_handlers"] = (self.handlers, {})
            if self.callers is not None:
                scope.setdefault("state", {})["caller"] = await self.callers(scope)
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        origin = None
        preflight = False
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                given = value.decode("latin-1")
            elif name == b"origin":
                origin = value
            elif name == b"access-control-request-method":
                preflight = True
        rid = given if given and _TOKEN.fullmatch(given) else os.urandom(16).hex()
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        cleanups: list[Callable[[], None]] = []
        state["cleanups"] = cleanups
        started = time.perf_counter()
        status = 0
        received = sent = 0
        token = _current.set(rid)
        cors = self.cors if origin is not None else None
        vary_origin = self.cors is not None and origin is None

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", rid.encode())]
                if vary_origin:
                    headers = _vary_origin(headers)
                message["headers"] = headers
                if cors is not None:
                    await cors.send(message, send, Headers(scope=scope))
                    return
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        try:
            if cors is not None and preflight and scope["method"] == "OPTIONS":
                # A CORS preflight (Fetch standard 3.2.2) is answered here, before any route.
                await cors.preflight_response(Headers(scope=scope))(scope, receive, send_with_id)
                return
            if self.callers is not None:
                state["caller"] = await self.callers(scope)
            if self.handlers is not None:
                scope["starlette.exception_handlers"] = (self.handlers, {})
            await self.app(scope, counted_receive, send_with_id)
        except Exception as exc:
            handler = _handler_of(self.handlers, exc)
            if status or handler is None:
                raise  # the answer has begun: the server ends the connection
            response = await handler(Request(scope, receive), exc)
            await response(scope, receive, send_with_id)
        finally:
            _current.reset(token)
            for cleanup in cleanups:
                cleanup()
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            duration = time.perf_counter() - started
            if self.observe is not None:
                self.observe(scope["method"], route, status, duration, received, sent)
            if log.isEnabledFor(logging.INFO):
                query = redacted_query(
                    scope.get("query_string", b"").decode("latin-1"), self.log_query_values
                )
                who = getattr(state.get("caller"), "principal", None)
                log.info(
                    "%s %s%s %s %.1f ms [request %s]",
                    scope["method"],
                    scope["path"],
                    f"?{query}" if query else "",
                    status or "-",
                    duration * 1000,
                    rid,
                    extra={
                        "request_id": rid,
                        "method": scope["method"],
                        "route": route,
                        "path": scope["path"],
                        "status": status or None,
                        "duration_ms": round(duration * 1000, 2),
                        "caller": who or "anonymous",
                    },
                )


def _vary_origin(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response's Vary with Origin added (a CORS answer differs by Origin)."""
    varies = [v.decode("latin-1") for n, v in headers if n.lower() == b"vary"]
    if not varies:
        return [*headers, (b"vary", b"Origin")]
    kept = [(n, v) for n, v in headers if n.lower() != b"vary"]
    return [*kept, (b"vary", ", ".join([*varies, "Origin"]).encode("latin-1"))]


def _handler_of(
    handlers: Mapping[Any, ExceptionHandler] | None, exc: Exception
) -> Callable[[Request, Exception], Awaitable[Response]] | None:
    if handlers is None:
        return None
    for kind in type(exc).__mro__:
        if kind in handlers:
            return handlers[kind]  # type: ignore[return-value]
    return None


async def _close_websocket(websocket: WebSocket, exc: Exception) -> None:
    assert isinstance(exc, WebSocketException)
    await websocket.close(code=exc.code, reason=exc.reason)
