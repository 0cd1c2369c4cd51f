"""Exceptions raised by the pure DICOM core.

The services map them to their own domain errors; nothing here knows about HTTP.
"""

from __future__ import annotations


class DicomError(Exception):
    """Base of every error the DICOM core raises."""


class InvalidUID(DicomError):
    """A value that must be a UID (PS3.5 9.1) is not one."""


class InvalidQuery(DicomError):
    """A search request that cannot be parsed into matching keys (PS3.18 8.3.4)."""


class InvalidAttribute(InvalidQuery):
    """An attribute id that is neither a keyword of the data dictionary nor an 8-hex tag."""


class ObjectRejected(DicomError):
    """A received object that cannot be stored; carries the PS3.18 Table I.2-2 failure reason."""

    def __init__(self, failure_reason: int, message: str) -> None:
        super().__init__(message)
        self.failure_reason = failure_reason
        self.message = message


class TranscodeError(DicomError):
    """Pixel data that cannot be decoded, or encoded in the transfer syntax asked for."""
