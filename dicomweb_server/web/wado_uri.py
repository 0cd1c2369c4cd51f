"""WADO-URI: Retrieve DICOM Objects by URI (PS3.18 Chapter 9; the older 8.2 parameters).

`GET {root}/wado?requestType=WADO&studyUID=…&seriesUID=…&objectUID=…` with every parameter of
PS3.18 9.4 / 8.2: the object as `application/dicom` (in a transfer syntax, optionally
de-identified), or rendered as `image/jpeg`, `image/png` or `image/gif` (window, size,
region, frame, quality, annotation, presentation state).
"""

from __future__ import annotations

from dataclasses import replace

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.dicom import numbers, render, uids
from dicomweb_server.dicom.media_types import DICOM
from dicomweb_server.dicom.render import RenderParams, Window
from dicomweb_server.services.context import DOWNLOAD
from dicomweb_server.services.errors import InvalidRequest, NotAcceptable
from dicomweb_server.services.ports import StoredPixels
from dicomweb_server.web import caching
from dicomweb_server.web.auth import caller
from dicomweb_server.web.capabilities import produces
from dicomweb_server.web.context import container, hold_memory
from dicomweb_server.web.images import rendered_response
from dicomweb_server.web.media import MediaRange, parse_accept
from dicomweb_server.web.ranges import whole_body
from dicomweb_server.web.threads import in_thread

_TYPES = (DICOM, *render.RENDERED_MEDIA_TYPES)
# PS3.18 9.4: parameters that only make sense for a rendered image.
_IMAGE_ONLY = (
    "annotation",
    "rows",
    "columns",
    "region",
    "windowCenter",
    "windowWidth",
    "frameNumber",
    "presentationUID",
    "presentationSeriesUID",
)
# Every parameter but contentType (a list) takes one value.
_ONE_VALUE = (
    "requestType",
    "studyUID",
    "seriesUID",
    "objectUID",
    "charset",
    "anonymize",
    "imageQuality",
    "transferSyntax",
    *_IMAGE_ONLY,
)


def _uid(query: QueryParams, name: str, required: bool = True) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        if required:
            raise InvalidRequest(f"WADO-URI needs the {name} parameter (PS3.18 9.4)")
        return None
    return uids.require_uid(value, name)


def _positive_int(query: QueryParams, name: str, maximum: int = 2**31 - 1) -> int | None:
    value = query.get(name)
    return None if value is None else numbers.parse_integer(value, name, 1, maximum)


def _number(query: QueryParams, name: str) -> float:
    return numbers.parse_decimal(query[name], name)


def content_type(query: QueryParams, accept: str | None, has_pixels: bool) -> str:
    """PS3.18 9.4.1.1 / 8.1.5: the contentType list (best first), else Accept; without
    either, image/jpeg for images and application/dicom for other objects."""
    wanted = query.get("contentType")
    ranges = parse_accept(wanted if wanted else accept)
    if not wanted and all(r.type == "*/*" for r in ranges):
        return render.JPEG if has_pixels else DICOM
    for media in ranges:
        for candidate in _TYPES:
            if MediaRange(media.type).matches(candidate) and (candidate == DICOM or has_pixels):
                return candidate
    offered = ", ".join(_TYPES if has_pixels else (DICOM,))
    raise NotAcceptable(
        f"this object is available as {offered}; the request asks for {wanted or accept!r}"
    )


@produces(DICOM, *render.RENDERED_MEDIA_TYPES)
async def retrieve_wado_uri(request: Request) -> Response:
    query = request.query_params
    for name in _ONE_VALUE:
        if len(query.getlist(name)) > 1:
            raise InvalidRequest(f"the {name} parameter may be given once")
    if query.get("requestType") != "WADO":
        raise InvalidRequest("requestType must be WADO (PS3.18 9.4.1)")
    study, series, instance = (_uid(query, n) for n in ("studyUID", "seriesUID", "objectUID"))
    assert study and series and instance
    archive = container(request)
    # One lookup serves the whole request: the object, its frames, its rendering.
    stored = await in_thread(
        archive.retrieve.stored_pixels, caller(request), study, series, instance
    )
    frames = stored.layout.number_of_frames
    media_type = content_type(query, request.headers.get("accept"), frames > 0)
    if media_type == DICOM:
        return await _dicom(request, query, stored)
    return await _image(request, query, stored, media_type)


async def _dicom(request: Request, query: QueryParams, stored: StoredPixels) -> Response:
    # The whole object: a share link with view rights may not have it.
    caller(request).require(DOWNLOAD)
    inst = stored.instance
    for name in _IMAGE_ONLY:
        if name in query:
            raise InvalidRequest(f"{name} applies to images, not to contentType={DICOM}")
    anonymize = query.get("anonymize")
    if anonymize not in (None, "yes"):
        raise InvalidRequest(f"anonymize={anonymize!r}: the only value is yes")
    wanted = _uid(query, "transferSyntax", required=False)
    syntaxes = container(request).retrieve.object_syntaxes(inst, wanted)
    tag = caching.etag(inst.blob_key, "wado-uri", wanted or "", anonymize or "")
    if (unchanged := caching.not_modified(request, tag, immutable=True)) is not None:
        return unchanged
    headers = caching.headers(tag, immutable=True)
    *first, last = syntaxes
    for target in first:
        try:
            return await _object(request, stored, target, anonymize == "yes", headers)
        except NotAcceptable:
            continue
    return await _object(request, stored, last, anonymize == "yes", headers)


async def _object(
    request: Request, stored: StoredPixels, target: str, anonymize: bool, headers: dict[str, str]
) -> Response:
    """The object in `target`: as stored, streamed from storage like WADO-RS whatever its
    size; transcoded or de-identified, in memory, its cost held until it has been sent."""
    retrieve = container(request).retrieve
    inst = stored.instance
    media_type = f"{DICOM}; transfer-syntax={target}"
    if target == inst.transfer_syntax_uid and not anonymize:
        return await whole_body(
            media_type,
            inst.size,
            lambda: retrieve.stream(inst),
            headers,
            lambda: retrieve.cached(inst.blob_key, [(0, inst.size)]),
        )
    cost = await in_thread(retrieve.object_cost, stored, target, anonymize)
    await hold_memory(request, cost)
    body = await in_thread(retrieve.object_bytes, inst, target, anonymize)
    return Response(body, media_type=media_type, headers=headers)


async def _image(
    request: Request, query: QueryParams, stored: StoredPixels, media_type: str
) -> Response:
    frames = stored.layout.number_of_frames
    if "transferSyntax" in query:
        raise InvalidRequest(f"transferSyntax applies to {DICOM} only (PS3.18 9.4.2.4)")
    if "anonymize" in query:
        raise InvalidRequest(f"anonymize applies to {DICOM} only")
    study, instance = stored.instance.study_uid, stored.instance.sop_instance_uid
    frame = _positive_int(query, "frameNumber")
    if frame is not None and frame > frames:
        # PS3.18 9.5.2.1 (and 8.2.x): a frame the object does not have is a bad request.
        raise InvalidRequest(f"frameNumber={frame}: the object has {frames} frame(s)")
    window = None
    if ("windowCenter" in query) != ("windowWidth" in query):
        raise InvalidRequest("windowCenter and windowWidth go together")
    if "windowCenter" in query:
        center, width = _number(query, "windowCenter"), _number(query, "windowWidth")
        if width < 1:
            raise InvalidRequest(f"windowWidth={width:g} must be at least 1")
        window = Window(center, width)
    rows = _positive_int(query, "rows", render.MAX_VIEWPORT)
    columns = _positive_int(query, "columns", render.MAX_VIEWPORT)
    viewport = None
    if rows or columns:
        viewport = (columns or render.MAX_VIEWPORT, rows or render.MAX_VIEWPORT)
    quality = 90
    if "imageQuality" in query:
        quality = render.parse_quality(query["imageQuality"])
    params = RenderParams(
        media_type=media_type,
        window=window,
        viewport=viewport,
        region=render.parse_region(query["region"]) if "region" in query else None,
        quality=quality,
        annotations=render.parse_annotations(query["annotation"]) if "annotation" in query else (),
    )
    renderer = container(request).render
    state_uid = _uid(query, "presentationUID", required=False)
    state_series = _uid(query, "presentationSeriesUID", required=False)
    if (state_uid is None) != (state_series is None):
        raise InvalidRequest("presentationUID and presentationSeriesUID go together")
    if state_uid is not None and state_series is not None:
        state = await in_thread(
            renderer.presentation, caller(request), study, state_series, state_uid, instance
        )
        params = replace(params, presentation=state)
    if frame is None and media_type == render.GIF:
        found = [renderer.instance_of(stored, params)]
    else:
        found = renderer.frames_of(stored, [frame or 1], params)
    return await rendered_response(
        request, renderer, found, media_type, multipart=False, immutable=True
    )
