"""Exceptions raised by the pure DICOM core.

The services map them to their own domain errors; nothing here knows about HTTP.
"""

from __future__ import annotations

import errno
import re


class DicomError(Exception):
    """Base of every error the DICOM core raises."""


class InvalidUID(DicomError):
    """A value that must be a UID (PS3.5 9.1) is not one."""


class InvalidValue(DicomError):
    """A value in a request (a number, a path, a structure) that cannot be accepted."""


class InvalidNumber(InvalidValue):
    """A number in a request that is not ASCII digits of bounded length, or out of range."""


class NestedTooDeeply(InvalidValue):
    """A recursive structure (sequences, a key path, JSON) deeper than MAX_DEPTH."""


class InvalidQuery(InvalidValue):
    """A search request that cannot be parsed into matching keys (PS3.18 8.3.4)."""


class InvalidAttribute(InvalidQuery):
    """An attribute id that is neither a keyword of the data dictionary nor an 8-hex tag."""


class ObjectRejected(DicomError):
    """A received object that cannot be stored; carries the PS3.18 Table I.2-2 failure reason."""

    def __init__(self, failure_reason: int, message: str) -> None:
        # The message becomes an Error Comment of the response: made safe here, once.
        message = client_text(message)
        super().__init__(message)
        self.failure_reason = failure_reason
        self.message = message


class TranscodeError(DicomError):
    """Pixel data that cannot be decoded, or encoded in the transfer syntax asked for."""


# What an error text may not show a client (or a log): the server's files, the hosts and
# ports of its backends, and tracebacks (pydicom appends one to some of its messages).
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s\"'<>]+", re.ASCII)
_PATH = re.compile(r"(?<![\w.:/])(?:/[\w.@+-]+){2,}/?", re.ASCII)
_IPV4 = re.compile(r"(?<![\w.])(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?::[0-9]{1,5})?(?![\w.])", re.ASCII)
_PORT = re.compile(r"\bport [0-9]{1,5}\b", re.ASCII)
MAX_TEXT = 1024


def client_text(text: str) -> str:
    """One line of an error text that is safe to show: no traceback, no file path, at most
    MAX_TEXT characters."""
    line = text.strip().split("\n", 1)[0].strip()
    line = _PATH.sub("<file>", _URL.sub("<url>", line))
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 3] + "..."


def backend_text(text: str) -> str:
    """An error text of a backend (database, object store), for the log: client_text with
    the addresses and ports of hosts removed as well."""
    return _PORT.sub("port <port>", _IPV4.sub("<host>", client_text(text)))


# OS errors that are the storage's state, never the object's fault: they are raised on to
# the caller (507 or 503 with the reason), not reported as a failure of the instance.
STORAGE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EMFILE,
     errno.ENFILE, errno.EIO}
)  # fmt: skip


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS
