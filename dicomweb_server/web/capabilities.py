"""Retrieve Capabilities (PS3.18 8.9): `OPTIONS` on any resource describes it in WADL, and
`OPTIONS` on the service's root ({root} or {root}/) describes every resource of the service.

The description comes from the route table itself: the path, its methods and the media types
each returns, so it cannot drift from what the server does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from xml.sax.saxutils import quoteattr

from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.web.urls import base_url

F = TypeVar("F", bound=Callable[..., object])

WADL = "application/vnd.sun.wadl+xml"
_NAMESPACE = "http://wadl.dev.java.net/2009/02"


def produces(*media_types: str) -> Callable[[F], F]:
    """Mark a route handler with the media types it answers in (for its capabilities)."""

    def mark(handler: F) -> F:
        handler.media_types = media_types  # type: ignore[attr-defined]
        return handler

    return mark


def media_types_of(handler: object) -> tuple[str, ...]:
    return tuple(getattr(handler, "media_types", ()))


Representations = dict[str, tuple[str, ...]]


def _resource(path: str, representations: Representations) -> str:
    methods = []
    for method in sorted(representations):
        media = "".join(
            f"<representation mediaType={quoteattr(m)}/>" for m in representations[method]
        )
        methods.append(f"<method name={quoteattr(method)}><response>{media}</response></method>")
    return f"<resource path={quoteattr(path.lstrip('/'))}>{''.join(methods)}</resource>"


def describe(request: Request, resources: list[tuple[str, Representations]]) -> str:
    """The WADL document of resources: each method and the media types it answers in."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<application xmlns="{_NAMESPACE}">'
        f"<resources base={quoteattr(base_url(request) + '/')}>"
        f"{''.join(_resource(path, each) for path, each in resources)}"
        "</resources></application>"
    )


def capabilities_response(
    request: Request, resources: list[tuple[str, Representations]], allow: str
) -> Response:
    return Response(describe(request, resources), media_type=WADL, headers={"Allow": allow})
