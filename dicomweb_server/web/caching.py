"""HTTP caching of retrieve responses (RFC 9110 8.8.3, 13.1.2; RFC 9111 5.2).

A stored copy never changes (a replaced instance gets a new blob key), so an entity tag made
from the blob keys and the representation asked for is exact, and revalidation is cheap:
the server answers 304 before reading any object.
"""

from __future__ import annotations

import hashlib

from starlette.requests import Request
from starlette.responses import Response

# Instance-level resources (an instance, its frames, bulk data, renderings) can be kept a
# day; studies and series gain instances, so caches revalidate them each time. "private":
# these are patient data, never for shared caches.
IMMUTABLE = "private, max-age=86400"
REVALIDATE = "private, no-cache"


def etag(*parts: str) -> str:
    return '"' + hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest() + '"'


def body_etag(body: bytes) -> str:
    """For computed bodies (renderings): the digest of the bytes themselves."""
    return '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'


def headers(tag: str, immutable: bool) -> dict[str, str]:
    return {"ETag": tag, "Cache-Control": IMMUTABLE if immutable else REVALIDATE}


def not_modified(request: Request, tag: str, immutable: bool) -> Response | None:
    """304 when If-None-Match names this representation (weak comparison, RFC 9110 13.1.2)."""
    header = request.headers.get("if-none-match")
    if header is None:
        return None
    wanted = {t.strip().removeprefix("W/") for t in header.split(",")}
    if "*" in wanted or tag.removeprefix("W/") in wanted:
        return Response(status_code=304, headers=headers(tag, immutable))
    return None
