"""Every domain error mapped to its HTTP status, in one place.

Bodies are JSON `{"error": reason}`; an unexpected error is logged with its request id and
answers 500 with no internals.
"""

from __future__ import annotations

import errno
import logging
import traceback
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dicomweb_server.dicom.errors import (
    DicomError,
    InvalidUID,
    InvalidValue,
    ObjectRejected,
    TranscodeError,
    backend_text,
    client_text,
)
from dicomweb_server.services import errors as e
from dicomweb_server.web.access import request_id as request_id_of

log = logging.getLogger("dicomweb_server.web")

# Most specific first: the first class an error is an instance of gives its status. Every
# ServiceError and DicomError has one (tests/unit/test_errors.py walks both trees).
STATUS: dict[type[Exception], int] = {
    e.InvalidRequest: 400,
    InvalidValue: 400,
    InvalidUID: 400,
    e.Unauthenticated: 401,
    e.Forbidden: 403,
    e.NotFound: 404,
    e.NotAcceptable: 406,
    TranscodeError: 406,
    e.RequestTimeout: 408,
    e.Conflict: 409,
    e.TooManyRequests: 429,
    e.PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.Unavailable: 503,
    e.InsufficientStorage: 507,
    # Its own status (PS3.18 chapter 11 names one per refusal); 409 is the common one.
    e.WorkitemRefused: 409,
    # A STOW failure is an outcome, never raised this far; any other object refusal is the
    # request's fault.
    ObjectRejected: 400,
    DicomError: 400,
    # A domain error of no finer kind: the request asked for something this server refuses.
    e.ServiceError: 400,
}


def status_of(kind: type[Exception]) -> int | None:
    """The status an error of this class answers with (None: unexpected, 500)."""
    for known, status in STATUS.items():
        if issubclass(kind, known):
            return status
    return None


# Statuses that close the connection: the rest of the body will not be read.
_CLOSE = frozenset({408, 413})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def domain_error(request: Request, exc: Exception) -> Response:
    status = status_of(type(exc))
    if isinstance(exc, e.WorkitemRefused):
        return workitem_refused(exc)
    if status is not None:
        headers = {"Retry-After": "5"} if status == 503 else {}
        if isinstance(exc, e.TooManyRequests):
            headers["Retry-After"] = str(exc.retry_after)
        if isinstance(exc, e.Unauthenticated):
            # RFC 6750 3: the scheme, and invalid_token when a token was sent but is not valid.
            challenge = 'Bearer realm="dicomweb"'
            if exc.invalid_token:
                challenge += ', error="invalid_token"'
            headers["WWW-Authenticate"] = challenge
        if status in _CLOSE:
            headers["Connection"] = "close"
        if status >= 500:
            log.warning(
                "%s on %s %s [request %s]: %s",
                status,
                request.method,
                request.url.path,
                request_id_of(request.scope),
                exc,
            )
        # ServiceErrors are made safe to show when raised; the core's errors here.
        text = str(exc) if isinstance(exc, e.ServiceError) else client_text(str(exc))
        return error_response(status, text, headers)
    return await unexpected_error(request, exc)


def workitem_refused(exc: e.WorkitemRefused) -> Response:
    """A UPS-RS refusal: its status, the Warning text PS3.18 chapter 11 gives it, and a
    body with the reason and the DICOM status (PS3.4 CC.2)."""
    response = JSONResponse(
        {"error": str(exc), "status": f"{exc.dicom_status:04X}"}, status_code=exc.status
    )
    if exc.warning:
        response.headers.append("Warning", f'299 dicomweb-server "{exc.warning}"')
    return response


async def http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))


async def unexpected_error(request: Request, exc: Exception) -> Response:
    request_id = request_id_of(request.scope)
    # Where it happened by file name and line, not by path: logs name no server folders.
    where = " < ".join(
        f"{Path(frame.filename).name}:{frame.lineno} {frame.name}"
        for frame in reversed(traceback.extract_tb(exc.__traceback__))
    )
    log.error(
        "unexpected error on %s %s [request %s]: %s: %s at %s",
        request.method,
        request.url.path,
        request_id,
        type(exc).__name__,
        backend_text(str(exc)),
        where,
    )
    return error_response(500, f"internal error; request id {request_id}")


# The storage's state, whatever code met it (spool, objects, SQLite file): the reason in
# words, never the path. The errors are dicom.errors.STORAGE_ERRNOS (a test keeps them so).
_STORAGE = {
    errno.ENOSPC: (507, "the archive's storage is full; nothing unfinished was kept"),
    errno.EDQUOT: (507, "the archive's storage quota is used up; nothing unfinished was kept"),
    errno.EROFS: (503, "the archive's storage is read-only"),
    errno.EACCES: (503, "the archive may not write to its storage"),
    errno.EPERM: (503, "the archive may not write to its storage"),
    errno.EIO: (503, "the archive's storage reports an input/output error"),
    errno.EMFILE: (503, "the server has no file handle free; try again shortly"),
    errno.ENFILE: (503, "the system has no file handle free; try again shortly"),
}


async def storage_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OSError)
    found = _STORAGE.get(exc.errno or 0)
    if found is None:
        return await unexpected_error(request, exc)
    status, reason = found
    log.warning(
        "%s on %s %s [request %s]: %s",
        reason,
        request.method,
        request.url.path,
        request_id_of(request.scope),
        type(exc).__name__,
    )
    headers = {"Retry-After": "30"} if status == 503 else {}
    return error_response(status, reason, headers)


HANDLERS = {
    **{kind: domain_error for kind in STATUS},
    HTTPException: http_error,
    OSError: storage_error,
    Exception: unexpected_error,
}
