"""Domain errors of the services; `web/errors.py` maps each to one HTTP status, once."""

from __future__ import annotations

from dicomweb_server.dicom.errors import backend_text, client_text


class ServiceError(Exception):
    """Base of the domain errors. The message is safe to show to the client: it is made so
    here (one line, no traceback, no file path), whatever text it is built from."""

    def __init__(self, message: str = "") -> None:
        super().__init__(client_text(message))


class NotFound(ServiceError):
    """No study, series, instance, frame or bulk data answers to the request."""


class InvalidRequest(ServiceError):
    """The request is malformed: a bad UID, query parameter or frame list."""


class Unauthenticated(ServiceError):
    """The request carries no credentials, or ones that cannot be verified (401)."""

    def __init__(self, message: str = "", invalid_token: bool = False) -> None:
        super().__init__(message)
        # RFC 6750 3.1: a token was sent and is not valid (not merely missing).
        self.invalid_token = invalid_token


class Forbidden(ServiceError):
    """The caller is known but may not do this, or not to this study (403)."""


class TooManyRequests(ServiceError):
    """The client has failed too often; it may try again after `retry_after` seconds (429)."""

    def __init__(self, message: str = "", retry_after: int = 60) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Conflict(ServiceError):
    """The request contradicts what is stored (409), e.g. a UID already elsewhere."""


class NotAcceptable(ServiceError):
    """None of the media types the client accepts can be produced for this resource."""


class UnsupportedMediaType(ServiceError):
    """The request body's media type is not one this transaction takes."""


class PayloadTooLarge(ServiceError):
    """A request, an instance in it, or its number of parts exceeds a configured limit."""


class Unavailable(ServiceError):
    """A backend is unreachable; the client may try again later. The message names no host
    or port of the backend."""

    def __init__(self, message: str = "") -> None:
        super().__init__(backend_text(message))


class RequestTimeout(ServiceError):
    """The client stopped sending its request body; what it sent is discarded (408)."""


class Busy(Unavailable):
    """This process serves as many requests of this kind as it is allowed to; the client may
    try again shortly (503 with Retry-After)."""


class InsufficientStorage(ServiceError):
    """The storage is full: nothing of the instance or request was kept (507)."""


class WorkitemRefused(ServiceError):
    """A UPS-RS request the state machine or the attribute rules refuse (PS3.4 CC, PS3.18
    chapter 11): with its own HTTP status, the `Warning: 299` text the standard names for it,
    and the DICOM status (C300-C312, 0x0120 ...)."""

    def __init__(
        self, message: str, status: int, dicom_status: int, warning: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.dicom_status = dicom_status
        self.warning = warning


def not_stored(study: str, series: str | None = None, instance: str | None = None) -> str:
    """What is not stored (or not visible to the caller), in words, for a NotFound."""
    if instance is not None:
        return f"no instance {instance} in series {series} of study {study} is stored"
    if series is not None:
        return f"no series {series} in study {study} is stored"
    return f"no study {study} is stored"
