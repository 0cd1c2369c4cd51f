"""WADO-RS: Retrieve Transaction (PS3.18 10.4): instances, metadata, frames, bulk data."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb_server.dicom import uids
from dicomweb_server.dicom.frames import Ranges
from dicomweb_server.dicom.media_types import (
    DICOM,
    DICOM_XML,
    OCTET_STREAM,
    ZIP,
    BytesChoice,
    choose_bytes,
    choose_instance_syntax,
)
from dicomweb_server.services.errors import NotAcceptable
from dicomweb_server.services.ports import StoredInstance
from dicomweb_server.services.retrieve import (
    ByteParts,
    RetrieveService,
    parse_frame_numbers,
    slice_ranges,
)
from dicomweb_server.web import caching
from dicomweb_server.web.context import (
    base_url,
    container,
    hold_memory,
    json_bytes_with_base,
    scope_uids,
)
from dicomweb_server.web.encoding import json_response
from dicomweb_server.web.media import (
    InstancesChoice,
    MediaRange,
    negotiate_bytes,
    negotiate_instances,
    negotiate_json,
)
from dicomweb_server.web.multipart import MultipartBody, OutgoingPart
from dicomweb_server.web.ranges import BUFFER_LIMIT, single_part_response, whole_body
from dicomweb_server.web.xml import xml_response
from dicomweb_server.web.zipstream import ZipMember, zip_stream

# Larger multipart bodies (see BUFFER_LIMIT) stream in pieces of this many bytes.
STREAM_PIECE = 4 * 2**20


async def _multipart(
    body: MultipartBody, related_type: str, headers: dict[str, str] | None = None
) -> Response:
    media_type = f'multipart/related; type="{related_type}"; boundary={body.boundary}'
    if body.content_length <= BUFFER_LIMIT:
        return Response(await run_in_threadpool(body.read), media_type=media_type, headers=headers)
    return StreamingResponse(
        body.coalesced(STREAM_PIECE),
        media_type=media_type,
        headers={**(headers or {}), "Content-Length": str(body.content_length)},
    )


def _instance_url(base: str, inst: StoredInstance) -> str:
    return (
        f"{base}/studies/{inst.study_uid}/series/{inst.series_uid}"
        f"/instances/{inst.sop_instance_uid}"
    )


async def retrieve_instances(request: Request) -> Response:
    """Study, series or instance (PS3.18 10.4.1.1.1): `multipart/related;
    type="application/dicom"`, `application/dicom` for one instance, or `application/zip`;
    each instance in the transfer syntax negotiated for it (PS3.18 8.7.3.4)."""
    scope = scope_uids(request)
    retrieve = container(request).retrieve
    found = await run_in_threadpool(retrieve.instances, *scope)
    one = scope[2] is not None
    choice = negotiate_instances(request.headers.get("accept"), single=one)
    targets = _targets(choice, found)
    etag = caching.etag(
        choice.container, *(f"{i.blob_key}>{t}" for i, t in zip(found, targets, strict=True))
    )
    if (unchanged := caching.not_modified(request, etag, immutable=one)) is not None:
        return unchanged
    headers = caching.headers(etag, immutable=one)
    base = base_url(request)
    # Transcoded instances are held in memory until sent: their cost is held as long.
    await hold_memory(request, await run_in_threadpool(retrieve.transcode_cost, found, targets))
    members = await run_in_threadpool(_members, retrieve, found, targets)
    if choice.container == ZIP:
        names = [f"{i.study_uid}/{i.series_uid}/{i.sop_instance_uid}.dcm" for i in found]
        return StreamingResponse(
            zip_stream(
                [ZipMember(n, chunks) for n, (_, _, chunks) in zip(names, members, strict=True)]
            ),
            media_type=ZIP,
            headers={**headers, "Content-Disposition": 'attachment; filename="dicom.zip"'},
        )
    if choice.container == DICOM:
        ((length, target, chunks),) = members
        return await whole_body(f"{DICOM}; transfer-syntax={target}", length, chunks, headers)
    parts = [
        OutgoingPart(
            content_type=f"{DICOM}; transfer-syntax={target}",
            length=length,
            chunks=chunks,
            content_location=_instance_url(base, inst),
        )
        for inst, (length, target, chunks) in zip(found, members, strict=True)
    ]
    return await _multipart(MultipartBody(parts), DICOM, headers)


def _targets(choice: InstancesChoice, found: list[StoredInstance]) -> list[str]:
    """The transfer syntax each instance is sent in; 406 naming the first that has none."""
    targets = []
    for inst in found:
        target = choose_instance_syntax(choice.syntaxes, inst.transfer_syntax_uid)
        if target is None:
            raise NotAcceptable(
                f"instance {inst.sop_instance_uid} (stored in {inst.transfer_syntax_uid}) "
                f"cannot be sent in any transfer syntax the request accepts "
                f"({', '.join(t or 'default' for t in choice.syntaxes)})"
            )
        targets.append(target)
    return targets


Member = tuple[int, str, Callable[[], Iterable[bytes]]]


def _members(
    retrieve: RetrieveService, found: list[StoredInstance], targets: list[str]
) -> list[Member]:
    """(length, transfer syntax, chunks) of each instance: stored ones stream from storage,
    transcoded ones are made now, so a failure is a clean 406 before anything is sent."""
    transcoded = dict(retrieve.transcoded_all(found, targets))
    out: list[Member] = []
    for inst, target in zip(found, targets, strict=True):
        data = transcoded.get(inst.sop_instance_uid)
        if data is None:
            out.append((inst.size, target, _streamer(retrieve, inst)))
        else:
            out.append((len(data), target, _held(data)))
    return out


def _streamer(retrieve: RetrieveService, inst: StoredInstance) -> Callable[[], Iterable[bytes]]:
    return lambda: retrieve.stream(inst)


def _held(data: bytes) -> Callable[[], Iterable[bytes]]:
    return lambda: (data,)


async def retrieve_metadata(request: Request) -> Response:
    media_type = negotiate_json(request.headers.get("accept"))
    texts = await run_in_threadpool(container(request).retrieve.metadata, *scope_uids(request))
    body = json_bytes_with_base(texts, base_url(request))
    # Revalidation saves a viewer reopening a study the whole download (the study may grow,
    # so caches ask each time).
    # Weak: the same JSON is sent gzip-coded or not (RFC 9110 8.8.1).
    etag = "W/" + caching.body_etag(body + media_type.encode())
    if (unchanged := caching.not_modified(request, etag, immutable=False)) is not None:
        return unchanged
    headers = caching.headers(etag, immutable=False)
    if media_type == DICOM_XML:
        response = await run_in_threadpool(xml_response, body)
        response.headers.update(headers)
        return response
    return await json_response(request, body, media_type, headers)


async def retrieve_frames(request: Request) -> Response:
    study, series, instance = scope_uids(request)
    assert series is not None and instance is not None
    numbers = parse_frame_numbers(request.path_params["frames"])
    retrieve = container(request).retrieve
    found = await run_in_threadpool(retrieve.frames, study, series, instance, numbers)
    base = _instance_url(base_url(request), found.instance)
    locations = [f"{base}/frames/{n}" for n in numbers]
    return await _byte_parts(request, retrieve, found, locations)


async def retrieve_bulk_data(request: Request) -> Response:
    study, series, instance = scope_uids(request)
    assert series is not None and instance is not None
    retrieve = container(request).retrieve
    path = request.path_params["path"]
    found = await run_in_threadpool(retrieve.bulk_data, study, series, instance, path)
    base = _instance_url(base_url(request), found.instance)
    # PS3.18 10.4.3.3.5: each part's Content-Location is its BulkDataURI; Pixel Data sent
    # frame by frame names each frame.
    if found.frame_numbers is not None and len(found.parts) == len(found.frame_numbers):
        locations = [f"{base}/frames/{n}" for n in found.frame_numbers]
    else:
        locations = [f"{base}/bulkdata/{path}"] * len(found.parts)
    return await _byte_parts(request, retrieve, found, locations)


async def _byte_parts(
    request: Request, retrieve: RetrieveService, found: ByteParts, locations: list[str]
) -> Response:
    accept = request.headers.get("accept")
    stored = found.transfer_syntax_uid
    pixel_frames = found.frame_numbers is not None
    chosen = _choose_bytes(accept, found, single=len(locations) == 1)
    several_frames = len(found.frame_numbers or []) > 1
    if chosen and not chosen[0].multipart and several_frames and not _as_stored(chosen[1], found):
        # Transcoded Pixel Data goes frame by frame, one part each: a single-part media type
        # fits only one frame (PS3.18 10.4.4).
        chosen = _choose_bytes(accept, found, single=False)
    if chosen is None:
        raise NotAcceptable(
            f"this resource is available as {OCTET_STREAM} (transfer syntax {stored}"
            + (", or transcoded" if pixel_frames else "")
            + f"); the request accepts {accept!r}"
        )
    choice, target = chosen
    etag = caching.etag(found.instance.blob_key, request.url.path, choice.media_type, target)
    if (unchanged := caching.not_modified(request, etag, immutable=True)) is not None:
        return unchanged
    headers = caching.headers(etag, immutable=True)
    part_type = f"{choice.media_type}; transfer-syntax={target}"
    if _as_stored(target, found):
        parts = _stored_parts(retrieve, found, part_type, locations)
    else:
        await hold_memory(request, await run_in_threadpool(retrieve.frames_cost, found))
        encoded = await run_in_threadpool(retrieve.transcoded_frames, found, target)
        # Transcoded Pixel Data is sent frame by frame: each part names its frame.
        frames_url = _instance_url(base_url(request), found.instance) + "/frames"
        assert found.frame_numbers is not None
        parts = [
            OutgoingPart.of(part_type, data, f"{frames_url}/{n}")
            for data, n in zip(encoded, found.frame_numbers, strict=True)
        ]
    if not choice.multipart and len(parts) == 1:
        return await single_part_response(request, parts[0], headers)
    return await _multipart(MultipartBody(parts), choice.media_type, headers)


def _choose_bytes(
    accept: str | None, found: ByteParts, single: bool
) -> tuple[BytesChoice, str] | None:
    stored = found.transfer_syntax_uid
    choices = negotiate_bytes(accept, single)
    if found.frame_numbers is not None:
        return choose_bytes(choices, stored)
    # Other bulk data is little-endian bytes, sent as they are.
    return next(((c, stored) for c in choices if _accepts_octets(c, stored)), None)


def _as_stored(target: str, found: ByteParts) -> bool:
    """Whether the parts can be read straight from the stored object in `target`."""
    stored = found.transfer_syntax_uid
    same = target == stored or (
        target == uids.EXPLICIT_VR_LITTLE_ENDIAN and stored in uids.NATIVE_TRANSFER_SYNTAXES
    )
    return same and bool(found.parts)


def _stored_parts(
    retrieve: RetrieveService, found: ByteParts, part_type: str, locations: list[str]
) -> list[OutgoingPart]:
    """Parts read straight from the stored object, each one or more byte ranges."""
    key = found.instance.blob_key

    def part(ranges: Ranges, location: str) -> OutgoingPart:
        return OutgoingPart(
            content_type=part_type,
            length=sum(length for _, length in ranges),
            chunks=lambda: retrieve.stream_ranges(key, ranges),
            content_location=location,
            read_slice=lambda start, length: retrieve.stream_ranges(
                key, slice_ranges(ranges, start, length)
            ),
        )

    return [part(r, loc) for r, loc in zip(found.parts, locations, strict=True)]


def _accepts_octets(choice: BytesChoice, stored: str) -> bool:
    return MediaRange(choice.media_type).matches(OCTET_STREAM) and choice.transfer_syntax in (
        None,
        "*",
        stored,
    )
