"""Single-part responses with byte ranges (RFC 9110 14): bulk data asked for as
`application/octet-stream` (not multipart) may be fetched piece by piece."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb_server.web.multipart import OutgoingPart
from dicomweb_server.web.threads import in_thread

_RANGE = re.compile(r"bytes=([0-9]{0,18})-([0-9]{0,18})", re.ASCII)
# Bodies up to this size are read in one thread hop and sent whole; larger ones stream in
# pieces, so memory per response stays bounded either way.
BUFFER_LIMIT = 16 * 2**20
# Bodies up to this size are read on the event loop when storage has them in memory (a
# frame, an instance): a copy of that size costs less than the thread hop it saves.
CACHED_LIMIT = 2**20


async def whole_body(
    content_type: str,
    length: int,
    chunks: Callable[[], Iterable[bytes]],
    headers: dict[str, str],
    cached: Callable[[], bytes | None] | None = None,
) -> Response:
    """A body of known length: read at once when small (on the event loop when `cached`
    has it without waiting), streamed otherwise."""
    if length <= CACHED_LIMIT and cached is not None and (body := cached()) is not None:
        return Response(body, media_type=content_type, headers=headers)
    if length <= BUFFER_LIMIT:
        body = await in_thread(lambda: b"".join(chunks()))
        return Response(body, media_type=content_type, headers=headers)
    return StreamingResponse(
        iter(chunks()), media_type=content_type, headers={**headers, "Content-Length": str(length)}
    )


def _slice(part: OutgoingPart, start: int, end: int) -> bytes:
    if part.read_slice is not None:
        return b"".join(part.read_slice(start, end + 1 - start))
    return b"".join(part.chunks())[start : end + 1]


async def single_part_response(
    request: Request, part: OutgoingPart, headers: dict[str, str]
) -> Response:
    """The one part as the whole body; a single `Range: bytes=a-b` answers 206, an
    unsatisfiable one 416 (several ranges at once are answered whole, as RFC 9110 allows)."""
    out = {**headers, "Accept-Ranges": "bytes"}
    if part.content_location:
        out["Content-Location"] = part.content_location
    header = request.headers.get("range")
    match = _RANGE.fullmatch(header.strip()) if header else None
    size = part.length
    if match is None or (not match.group(1) and not match.group(2)):
        return await whole_body(part.content_type, size, part.chunks, out, part.cached)
    first, last = match.group(1), match.group(2)
    if first:
        start, end = int(first), min(int(last) if last else size - 1, size - 1)
    else:
        start, end = max(0, size - int(last)), size - 1
    if start >= size or start > end:
        return Response(status_code=416, headers={**out, "Content-Range": f"bytes */{size}"})
    body = await in_thread(_slice, part, start, end)
    out["Content-Range"] = f"bytes {start}-{end}/{size}"
    return Response(body, status_code=206, media_type=part.content_type, headers=out)
