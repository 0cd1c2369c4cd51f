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

import logging
import re
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from urllib.parse import parse_qsl, quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

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


def redacted_query(query: str, keep_values: bool) -> str:
    if not query:
        return query
    if keep_values:
        return without_credentials(query)
    pairs = parse_qsl(query, keep_blank_values=True)
    return "&".join(f"{quote(name, safe='')}={'*' if value else ''}" for name, value in pairs)


# (method, route template, status, seconds, body bytes received, body bytes sent)
Observer = Callable[[str, str, int, float, int, int], None]


class RequestLog:
    def __init__(
        self, app: ASGIApp, log_query_values: bool = False, observe: Observer | None = None
    ) -> None:
        self.app = app
        self.log_query_values = log_query_values
        self.observe = observe

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = ""
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                given = value.decode("latin-1")
        rid = given if _TOKEN.fullmatch(given) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        cleanups: list[Callable[[], None]] = []
        state["cleanups"] = cleanups
        started = time.perf_counter()
        status = 0
        received = sent = 0
        token = _current.set(rid)

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
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
            await self.app(scope, counted_receive, send_with_id)
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
