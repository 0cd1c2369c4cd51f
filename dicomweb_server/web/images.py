"""Rendered images as responses, for the rendered and thumbnail resources and WADO-URI.

The entity tag comes from what the images are made of (each stored copy's blob key, the
frames and the parameters: `Rendering.key`) and the server's version, so a revalidation is
answered 304 before anything is decoded.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server import __version__
from dicomweb_server.dicom.media_types import MULTIPART_RELATED
from dicomweb_server.services.render import Rendering, RenderService
from dicomweb_server.web import caching
from dicomweb_server.web.multipart import MultipartBody, OutgoingPart
from dicomweb_server.web.threads import in_thread


async def rendered_response(
    request: Request,
    renderer: RenderService,
    renderings: list[Rendering],
    media_type: str,
    multipart: bool,
    immutable: bool,
) -> Response:
    """The images of `renderings`: one image, or a multipart/related of them. `immutable`
    unless they stand for a study or series that may grow."""
    tag = caching.etag(
        "rendered", __version__, media_type, str(multipart), *(r.key for r in renderings)
    )
    if (unchanged := caching.not_modified(request, tag, immutable)) is not None:
        return unchanged
    headers = caching.headers(tag, immutable)
    # Cached images are served without a thread hop; decoding runs off the event loop.
    bodies = renderer.cached(renderings)
    if bodies is None:
        bodies = await in_thread(renderer.render, renderings)
    if not multipart:
        (body,) = bodies
        return Response(body, media_type=media_type, headers=headers)
    parts = MultipartBody([OutgoingPart.of(media_type, b) for b in bodies])
    return Response(
        parts.read(),
        media_type=f'{MULTIPART_RELATED}; type="{media_type}"; boundary={parts.boundary}',
        headers=headers,
    )
