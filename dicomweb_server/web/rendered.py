"""WADO-RS rendered resources and thumbnails (PS3.18 10.4.1.1.3, 10.4.1.1.4, 8.3.5)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.dicom import render
from dicomweb_server.dicom.media_types import MULTIPART_RELATED
from dicomweb_server.dicom.render import RenderParams
from dicomweb_server.services.errors import NotAcceptable
from dicomweb_server.services.retrieve import parse_frame_numbers
from dicomweb_server.web.auth import caller
from dicomweb_server.web.capabilities import produces
from dicomweb_server.web.context import container, scope_uids
from dicomweb_server.web.images import rendered_response
from dicomweb_server.web.media import MediaRange, parse_accept
from dicomweb_server.web.threads import in_thread


def negotiate_rendered(accept: str | None, single: bool) -> tuple[str, bool]:
    """(image media type, multipart?): single-part types only for one image (PS3.18
    10.4.4); `*/*` and `image/*` get JPEG, the default rendered type (Table 8.7.4-1)."""
    for media in parse_accept(accept):
        if media.type == MULTIPART_RELATED:
            wanted = MediaRange(media.params.get("type", render.JPEG).lower())
            for candidate in render.RENDERED_MEDIA_TYPES:
                if wanted.matches(candidate):
                    return candidate, True
            continue
        for candidate in render.RENDERED_MEDIA_TYPES:
            if media.matches(candidate):
                if single:
                    return candidate, False
                if media.type == "*/*":
                    return candidate, True
                break
    offered = ", ".join(render.RENDERED_MEDIA_TYPES)
    shape = offered if single else f"{MULTIPART_RELATED} of {offered}"
    raise NotAcceptable(f"this resource is rendered as {shape}; the request accepts {accept!r}")


def render_params(request: Request, media_type: str) -> RenderParams:
    """PS3.18 8.3.5.1: annotation, quality, viewport, window (others are ignored)."""
    query = request.query_params
    viewport, source = (None, None)
    if "viewport" in query:
        viewport, source = render.parse_viewport(query["viewport"])
    return RenderParams(
        media_type=media_type,
        window=render.parse_window(query["window"]) if "window" in query else None,
        viewport=viewport,
        source=source,
        quality=render.parse_quality(query["quality"]) if "quality" in query else 90,
        annotations=render.parse_annotations(query["annotation"]) if "annotation" in query else (),
    )


@produces(*render.RENDERED_MEDIA_TYPES, MULTIPART_RELATED)
async def retrieve_rendered(request: Request) -> Response:
    """Study, series and instance rendered resources."""
    study, series, instance = scope_uids(request)
    renderer = container(request).render
    media_type, multipart = negotiate_rendered(request.headers.get("accept"), instance is not None)
    params = render_params(request, media_type)
    if instance is not None:
        assert series is not None
        one = await in_thread(renderer.instance, caller(request), study, series, instance, params)
        # One instance as multipart is revalidated like a study (as before: no-cache).
        return await rendered_response(
            request, renderer, [one], media_type, multipart, immutable=not multipart
        )
    found = await in_thread(renderer.instances, caller(request), study, series, params)
    return await rendered_response(
        request, renderer, found, media_type, multipart=True, immutable=False
    )


@produces(*render.RENDERED_MEDIA_TYPES, MULTIPART_RELATED)
async def retrieve_rendered_frames(request: Request) -> Response:
    study, series, instance = scope_uids(request)
    assert series is not None and instance is not None
    numbers = parse_frame_numbers(request.path_params["frames"])
    accept = request.headers.get("accept")
    media_type, multipart = negotiate_rendered(accept, single=len(numbers) == 1 or _gif(accept))
    params = render_params(request, media_type)
    renderer = container(request).render
    found = await in_thread(
        renderer.frames, caller(request), study, series, instance, numbers, params
    )
    several = multipart or len(found) > 1
    return await rendered_response(
        request, renderer, found, media_type, several, immutable=not several
    )


def _gif(accept: str | None) -> bool:
    """Several frames in one image/gif answer as one animation."""
    return any(m.type == render.GIF for m in parse_accept(accept))


@produces(*render.RENDERED_MEDIA_TYPES)
async def retrieve_thumbnail(request: Request) -> Response:
    """PS3.18 10.4.1.1.4: one small image for a study, series, instance or frame."""
    study, series, instance = scope_uids(request)
    frame = None
    if "frames" in request.path_params:
        numbers = parse_frame_numbers(request.path_params["frames"])
        if len(numbers) != 1:
            raise NotAcceptable("a thumbnail is of one frame")
        frame = numbers[0]
    media_type, _ = negotiate_rendered(request.headers.get("accept"), single=True)
    params = render_params(request, media_type)
    renderer = container(request).render
    found = await in_thread(
        renderer.thumbnail, caller(request), study, series, instance, frame, params
    )
    return await rendered_response(
        request, renderer, [found], media_type, multipart=False, immutable=instance is not None
    )
