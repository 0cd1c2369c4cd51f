"""WADO-RS: Retrieve Transaction (PS3.18 10.4): instances, metadata, frames, bulk data."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb_server.dicom.media_types import (
    BULK_DATA_MEDIA_TYPES,
    DICOM,
    DICOM_JSON,
    DICOM_XML,
    MULTIPART_RELATED,
    ZIP,
)
from dicomweb_server.services.errors import NotAcceptable
from dicomweb_server.services.retrieve import ByteParts, Part, parse_frame_numbers
from dicomweb_server.web import caching
from dicomweb_server.web.auth import caller
from dicomweb_server.web.capabilities import produces
from dicomweb_server.web.context import container, hold_memory, index_read, scope_uids
from dicomweb_server.web.encoding import json_response
from dicomweb_server.web.media import (
    accept_of,
    negotiate_bytes,
    negotiate_instances,
    negotiate_json,
)
from dicomweb_server.web.multipart import MultipartBody, OutgoingPart
from dicomweb_server.web.ranges import (
    BUFFER_LIMIT,
    CACHED_LIMIT,
    single_part_response,
    whole_body,
)
from dicomweb_server.web.threads import in_thread
from dicomweb_server.web.urls import urls
from dicomweb_server.web.xml import xml_response
from dicomweb_server.web.zipstream import ZipMember, zip_stream

# Larger multipart bodies (see BUFFER_LIMIT) stream in pieces of this many bytes.
STREAM_PIECE = 4 * 2**20
# Microsoft's request header for the original versions of corrected instances.
REQUEST_ORIGINAL = "msdicom-request-original"


async def _multipart(
    body: MultipartBody, related_type: str, headers: dict[str, str] | None = None
) -> Response:
    media_type = f'multipart/related; type="{related_type}"; boundary={body.boundary}'
    if body.content_length <= CACHED_LIMIT and (cached := body.read_cached()) is not None:
        # In memory already (the page cache): read on the event loop, no thread hop.
        return Response(cached, media_type=media_type, headers=headers)
    if body.content_length <= BUFFER_LIMIT:
        return Response(await in_thread(body.read), media_type=media_type, headers=headers)
    return StreamingResponse(
        body.coalesced(STREAM_PIECE),
        media_type=media_type,
        headers={**(headers or {}), "Content-Length": str(body.content_length)},
    )


def _outgoing(content_type: str, part: Part, location: str | None = None) -> OutgoingPart:
    return OutgoingPart(
        content_type, part.length, part.chunks, location, part.read_slice, part.cached
    )


@produces(f'{MULTIPART_RELATED}; type="{DICOM}"', DICOM, ZIP)
async def retrieve_instances(request: Request) -> Response:
    """Study, series or instance (PS3.18 10.4.1.1.1): `multipart/related;
    type="application/dicom"`, `application/dicom` for one instance, or `application/zip`;
    each instance in the transfer syntax negotiated for it (PS3.18 8.7.3.4)."""
    scope = scope_uids(request)
    archive = container(request)
    retrieve = archive.retrieve
    # Microsoft's header: the instances as first stored, before any correction.
    original = request.headers.get(REQUEST_ORIGINAL, "").strip().lower() == "true"
    if original:
        found = await in_thread(archive.corrections.originals, caller(request), *scope)
    else:
        found = await index_read(request, retrieve.objects, caller(request), *scope)
    one = scope[2] is not None
    accepted = accept_of(request.query_params.getlist("accept"), request.headers.get("accept"))
    choice = negotiate_instances(accepted, single=one)
    targets = retrieve.instance_syntaxes(found, choice.syntaxes)
    if original and any(t != i.transfer_syntax_uid for i, t in zip(found, targets, strict=True)):
        raise NotAcceptable(
            "original versions are sent as stored: ask for transfer-syntax=* (or the stored one)"
        )
    etag = caching.etag(
        choice.container,
        "original" if original else "current",
        *(f"{i.blob_key}>{t}" for i, t in zip(found, targets, strict=True)),
    )
    # Revalidated, even one instance: a correction gives it new attributes.
    if (unchanged := caching.not_modified(request, etag, immutable=False)) is not None:
        return unchanged
    headers = {**caching.headers(etag, immutable=False), "Vary": f"Accept, {REQUEST_ORIGINAL}"}
    # Transcoded instances are held in memory until sent: their cost is held as long.
    if all(t == i.transfer_syntax_uid for i, t in zip(found, targets, strict=True)):
        # Sent as stored: the parts only name what storage streams later, no hop for them.
        sent = retrieve.instance_parts(found, targets)
    else:
        await hold_memory(request, await in_thread(retrieve.transcode_cost, found, targets))
        sent = await in_thread(retrieve.instance_parts, found, targets)
    if choice.container == ZIP:
        names = [f"{i.study_uid}/{i.series_uid}/{i.sop_instance_uid}.dcm" for i in found]
        return StreamingResponse(
            zip_stream([ZipMember(n, p.chunks) for n, p in zip(names, sent, strict=True)]),
            media_type=ZIP,
            headers={**headers, "Content-Disposition": 'attachment; filename="dicom.zip"'},
        )
    if choice.container == DICOM:
        (part,), (target,) = sent, targets
        return await whole_body(
            f"{DICOM}; transfer-syntax={target}", part.length, part.chunks, headers, part.cached
        )
    here = urls(request)
    parts = [
        _outgoing(
            f"{DICOM}; transfer-syntax={target}",
            part,
            here.instance(inst.study_uid, inst.series_uid, inst.sop_instance_uid),
        )
        for inst, target, part in zip(found, targets, sent, strict=True)
    ]
    return await _multipart(MultipartBody(parts), DICOM, headers)


@produces(DICOM_JSON, f'{MULTIPART_RELATED}; type="{DICOM_XML}"')
async def retrieve_metadata(request: Request) -> Response:
    media_type = negotiate_json(request.headers.get("accept"))
    retrieve, who, here = container(request).retrieve, caller(request), urls(request)
    scope = scope_uids(request)

    def tag_of(blob_keys: list[str]) -> str:
        # From the index (each stored copy's blob key), never from the body; the body holds
        # absolute BulkDataURIs, so the base URL is part of it. Weak: the same JSON is sent
        # gzip-coded or not (RFC 9110 8.8.1).
        return "W/" + caching.etag("metadata", media_type, here.base, *blob_keys)

    if "if-none-match" in request.headers:
        # A revalidation (a viewer reopening a study) costs one small query, no metadata.
        found = await index_read(request, retrieve.instances, who, *scope)
        unchanged = caching.not_modified(
            request, tag_of([i.blob_key for i in found]), immutable=False
        )
        if unchanged is not None:
            return unchanged
    metadata = await index_read(request, retrieve.metadata, who, *scope)
    # The study may grow, so caches ask each time.
    headers = caching.headers(tag_of(metadata.blob_keys), immutable=False)
    body = here.with_base(metadata.texts)
    if media_type == DICOM_XML:
        response = await in_thread(xml_response, body)
        response.headers.update(headers)
        return response
    return await json_response(request, body, media_type, headers)


@produces(*BULK_DATA_MEDIA_TYPES)
async def retrieve_frames(request: Request) -> Response:
    study, series, instance = scope_uids(request)
    assert series is not None and instance is not None
    numbers = parse_frame_numbers(request.path_params["frames"])
    retrieve = container(request).retrieve
    found = await index_read(
        request, retrieve.frames, caller(request), study, series, instance, numbers
    )
    here = urls(request)
    return await _byte_parts(
        request, found, len(numbers), lambda n: here.frame(study, series, instance, n)
    )


@produces(*BULK_DATA_MEDIA_TYPES)
async def retrieve_bulk_data(request: Request) -> Response:
    study, series, instance = scope_uids(request)
    assert series is not None and instance is not None
    path = request.path_params["path"]
    retrieve = container(request).retrieve
    found = await index_read(
        request, retrieve.bulk_data, caller(request), study, series, instance, path
    )
    # PS3.18 10.4.3.3.5: each part's Content-Location is the BulkDataURI, Pixel Data sent
    # frame by frame included.
    uri = urls(request).bulk_data(study, series, instance, path)
    return await _byte_parts(request, found, len(found.parts), lambda _n: uri)


async def _byte_parts(
    request: Request, found: ByteParts, count: int, location: Callable[[int], str]
) -> Response:
    """Frames or bulk data: `count` parts asked for, each located by its frame number."""
    retrieve = container(request).retrieve
    accept = request.headers.get("accept")
    choices = negotiate_bytes(accept, single=True)
    plan = retrieve.plan_bytes(found, choices, single=count == 1, accepted=accept)
    etag = caching.etag(
        found.instance.blob_key, request.scope["path"], plan.media_type, plan.transfer_syntax
    )
    if (unchanged := caching.not_modified(request, etag, immutable=True)) is not None:
        return unchanged
    headers = caching.headers(etag, immutable=True)
    part_type = f"{plan.media_type}; transfer-syntax={plan.transfer_syntax}"
    if not plan.as_stored:
        await hold_memory(request, await in_thread(retrieve.frames_cost, found))
    if plan.as_stored:
        # Byte ranges of the stored object: nothing is read until the body is sent, so no
        # thread hop (a bare one costs about 0.3 ms).
        sent = retrieve.byte_parts(found, plan)
    else:
        sent = await in_thread(retrieve.byte_parts, found, plan)
    numbers = found.frame_numbers
    if numbers is not None and len(numbers) == len(sent):
        locations = [location(n) for n in numbers]
    else:
        locations = [location(0)] * len(sent)
    parts = [_outgoing(part_type, p, loc) for p, loc in zip(sent, locations, strict=True)]
    if not plan.multipart and len(parts) == 1:
        return await single_part_response(request, parts[0], headers)
    return await _multipart(MultipartBody(parts), plan.media_type, headers)
