"""Domain errors of the services; `web/errors.py` maps each to one HTTP status, once."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the domain errors. The message is safe to show to the client."""


class NotFound(ServiceError):
    """No study, series, instance, frame or bulk data answers to the request."""


class InvalidRequest(ServiceError):
    """The request is malformed: a bad UID, query parameter or frame list."""


class NotAcceptable(ServiceError):
    """None of the media types the client accepts can be produced for this resource."""


class UnsupportedMediaType(ServiceError):
    """The request body's media type is not one this transaction takes."""


class PayloadTooLarge(ServiceError):
    """A request, an instance in it, or its number of parts exceeds a configured limit."""


class Unavailable(ServiceError):
    """A backend is unreachable; the client may try again later."""
