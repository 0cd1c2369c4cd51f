"""Content coding of JSON responses (RFC 9110 8.4, 12.5.3).

Study metadata runs to megabytes and compresses about tenfold; DICOM objects and compressed
pixel data are never content-coded (they would not shrink and the CPU would be wasted).
"""

from __future__ import annotations

import zlib

from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.web.threads import in_thread

# Smaller bodies fit in a packet or two: coding them costs more than it saves.
MIN_GZIP_BYTES = 1024
# Level 3: JSON shrinks nearly as well as at level 6 at about twice the speed.
GZIP_LEVEL = 3
# Bodies this large are compressed off the event loop.
_INLINE_LIMIT = 256 * 1024


def accepts_gzip(request: Request) -> bool:
    for item in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "x-gzip", "*"):
            q = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
            try:
                return float(q) > 0
            except ValueError:
                return False
    return False


def gzip(body: bytes) -> bytes:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush()


async def json_response(
    request: Request, body: bytes, media_type: str, headers: dict[str, str] | None = None
) -> Response:
    """A JSON body, gzip-coded when the client accepts it and it is worth it."""
    out = {**(headers or {}), "Vary": "Accept, Accept-Encoding"}
    if len(body) >= MIN_GZIP_BYTES and accepts_gzip(request):
        body = gzip(body) if len(body) < _INLINE_LIMIT else await in_thread(gzip, body)
        out["Content-Encoding"] = "gzip"
    return Response(body, media_type=media_type, headers=out)
