"""How `serve` runs the app under uvicorn.

With `--workers N`, uvicorn binds the socket in the parent and hands it to each worker. A
socket that crossed processes this way no longer reports IPPROTO_TCP, so asyncio does not
set TCP_NODELAY on the connections it accepts; responses (headers and body written
separately) then wait for the client's delayed ACK, about 40 ms each. The protocol below
sets TCP_NODELAY on every connection itself.

uvicorn bounds the wait between requests on a kept-alive connection, not the wait for a
request's headers: a client that connects and sends its headers a byte at a time (or never)
would hold its connection, and a file descriptor, forever. The protocol closes a connection
whose request headers are not complete within DICOMWEB_HEADER_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import math
import os
import resource
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dicomweb_server.settings import Settings

# One log line format for the server and its worker processes.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# What a log record may carry besides its message (the access log's fields), as JSON keys.
LOG_FIELDS = ("request_id", "method", "route", "path", "status", "duration_ms", "caller")


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)} | {
    0x0A: "\\n",
    0x0D: "\\r",
    0x09: "\\t",
}


class TextFormatter(logging.Formatter):
    """The text format: one line per record, whatever the record holds. Control characters
    of the line (a CR or LF in a request path would start a forged line) are escaped as the
    JSON format escapes them; a traceback, added after, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return super().formatMessage(record).translate(_CONTROL)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, and the request's fields when
    the record has them (the access log: request id, route, status, duration, caller)."""

    _second = -1.0
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        # ISO 8601 in UTC to the millisecond; the part to the second is made once a second.
        second, fraction = divmod(record.created, 1)
        if second != self._second:
            made = datetime.datetime.fromtimestamp(second, datetime.UTC)
            self._stamp, self._second = made.strftime("%Y-%m-%dT%H:%M:%S"), second
        millis = min(int(fraction * 1000), 999)
        line: dict[str, Any] = {
            "time": f"{self._stamp}.{millis:03d}+00:00",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in LOG_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return orjson.dumps(line).decode()


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes its lines in batches: one write and flush per batch
    instead of per line (the access log's line was about a fifth of an empty query's CPU,
    most of it the write). A line at WARNING or above is written at once, with every line
    before it; the others within FLUSH_SECONDS, or as soon as LIMIT bytes wait. Lines are
    kept in order, and whatever waits is written when the process ends (logging's own
    shutdown flushes every handler)."""

    FLUSH_SECONDS = 0.2
    LIMIT = 64 * 1024

    def __init__(self) -> None:
        super().__init__()
        self._lines: list[str] = []
        self._size = 0
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle holds self.lock around this call.
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own convention
            self.handleError(record)
            return
        self._lines.append(line)
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= self.LIMIT:
            self._write()
        elif self._flusher is None:
            # Started in the process that logs (a worker started by spawn has its own).
            self._flusher = threading.Thread(target=self._flush_often, daemon=True)
            self._flusher.start()

    def _write(self) -> None:
        if self._lines:
            try:
                self.stream.write("".join(self._lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed or broken stream: nothing can be written anywhere
            self._lines.clear()
            self._size = 0

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()

    def _flush_often(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            self.flush()


def configure_logging(settings: Settings, verbose: bool = False) -> None:
    """The root logger's handler: JSON lines (DICOMWEB_LOG_FORMAT=json, or auto when stderr
    is no terminal), else the text format; once per process. Alembic's steps ("Context impl
    SQLiteImpl", "Running upgrade ...") only when `verbose` (the command line's -v)."""
    root = logging.getLogger()
    # Fields no format of ours shows, skipped when each record is made (the logging
    # documentation's "Optimization" settings): about a third of a line's cost.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the caller's file and line
    if not verbose:
        logging.getLogger("alembic").setLevel(logging.WARNING)
    if root.handlers:
        return
    handler = BatchingStreamHandler()
    as_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty()
    )
    handler.setFormatter(JsonFormatter() if as_json else TextFormatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    # Alembic names each of its plugins at info on every start: noise, not news.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@functools.cache
def header_timeout() -> float:
    return Settings().header_timeout_seconds


class _HeaderDeadline:
    """TCP_NODELAY and the header deadline, for either of uvicorn's HTTP protocols: armed when
    the connection opens and after each response, stopped once a request's headers are in."""

    _header_timer: asyncio.TimerHandle | None = None
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any

    def _await_headers(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(header_timeout(), self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.cycle is None or self.cycle.response_complete:
            # Still no complete request: the connection is given up.
            self.transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        set_nodelay(transport)
        super().connection_made(transport)  # type: ignore[misc]
        self._await_headers()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():
            self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)  # type: ignore[misc]


class NoDelayH11Protocol(_HeaderDeadline, H11Protocol):
    """uvicorn's pure-Python protocol (h11)."""

    def handle_events(self) -> None:
        super().handle_events()
        if self.cycle is not None and not self.cycle.response_complete:
            self._stop_header_timer()  # a request is being served


class NoDelayHttpToolsProtocol(_HeaderDeadline, HttpToolsProtocol):
    """uvicorn's protocol on httptools (llhttp, C): the default."""

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._stop_header_timer()  # a request is being served


def http_protocol(name: str) -> type[asyncio.Protocol]:
    """The protocol class `DICOMWEB_HTTP` names."""
    return NoDelayHttpToolsProtocol if name == "httptools" else NoDelayH11Protocol


def usable_cores(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The cores this process may run on: its CPU affinity, bounded by the cgroup's quota
    (`cpu_max`, cgroup v2's "quota period"): a container given 2 CPUs of a 64-core host gets
    2 workers, not 64."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def raise_file_limit() -> int:
    """Let the process open as many files as the system allows it (the soft limit up to the
    hard one): each connection and each spooled part holds one. The limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
