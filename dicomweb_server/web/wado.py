"""WADO-RS: Retrieve Transaction (PS3.18 10.4): instances, metadata, frames, bulk data."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from dicomweb_server.services.ports import StoredInstance
from dicomweb_server.services.retrieve import ByteParts, RetrieveService, parse_frame_numbers
from dicomweb_server.web.context import base_url, container, json_bytes_with_base, path_uid
from dicomweb_server.web.media import (
    DICOM,
    DICOM_XML,
    negotiate_bytes,
    negotiate_dicom,
    negotiate_json,
)
from dicomweb_server.web.multipart import MultipartBody, OutgoingPart
from dicomweb_server.web.xml import xml_response


def _scope(request: Request) -> tuple[str, str | None, str | None]:
    study = path_uid(request, "study")
    series = path_uid(request, "series") if "series" in request.path_params else None
    instance = path_uid(request, "instance") if "instance" in request.path_params else None
    return study, series, instance


# Bodies up to this size are read in one thread hop and sent whole; larger ones stream in
# pieces of STREAM_PIECE bytes, so memory per response stays bounded either way.
BUFFER_LIMIT = 16 * 2**20
STREAM_PIECE = 4 * 2**20


async def _multipart(body: MultipartBody, related_type: str) -> Response:
    media_type = f'multipart/related; type="{related_type}"; boundary={body.boundary}'
    if body.content_length <= BUFFER_LIMIT:
        return Response(await run_in_threadpool(body.read), media_type=media_type)
    return StreamingResponse(
        body.coalesced(STREAM_PIECE),
        media_type=media_type,
        headers={"Content-Length": str(body.content_length)},
    )


async def retrieve_instances(request: Request) -> Response:
    """Study, series or instance as `multipart/related; type="application/dicom"`."""
    scope = _scope(request)
    retrieve = container(request).retrieve
    found = await run_in_threadpool(retrieve.instances, *scope)
    negotiate_dicom(request.headers.get("accept"), {i.transfer_syntax_uid for i in found})
    base = base_url(request)
    parts = [_instance_part(retrieve, i, base) for i in found]
    return await _multipart(MultipartBody(parts), DICOM)


def _instance_part(retrieve: RetrieveService, inst: StoredInstance, base: str) -> OutgoingPart:
    return OutgoingPart(
        content_type=f"{DICOM}; transfer-syntax={inst.transfer_syntax_uid}",
        length=inst.size,
        chunks=lambda: retrieve.stream(inst),
        content_location=(
            f"{base}/studies/{inst.study_uid}/series/{inst.series_uid}"
            f"/instances/{inst.sop_instance_uid}"
        ),
    )


async def retrieve_metadata(request: Request) -> Response:
    media_type = negotiate_json(request.headers.get("accept"))
    texts = await run_in_threadpool(container(request).retrieve.metadata, *_scope(request))
    body = json_bytes_with_base(texts, base_url(request))
    if media_type == DICOM_XML:
        return await run_in_threadpool(xml_response, body)
    return Response(body, media_type=media_type)


async def retrieve_frames(request: Request) -> Response:
    study, series, instance = _scope(request)
    assert series is not None and instance is not None
    numbers = parse_frame_numbers(request.path_params["frames"])
    retrieve = container(request).retrieve
    found = await run_in_threadpool(retrieve.frames, study, series, instance, numbers)
    return await _byte_parts(request, retrieve, found)


async def retrieve_bulk_data(request: Request) -> Response:
    study, series, instance = _scope(request)
    assert series is not None and instance is not None
    retrieve = container(request).retrieve
    found = await run_in_threadpool(
        retrieve.bulk_data, study, series, instance, request.path_params["path"]
    )
    return await _byte_parts(request, retrieve, found)


async def _byte_parts(request: Request, retrieve: RetrieveService, found: ByteParts) -> Response:
    media_type = negotiate_bytes(request.headers.get("accept"), found.transfer_syntax_uid)
    part_type = f"{media_type}; transfer-syntax={found.transfer_syntax_uid}"
    key = found.instance.blob_key
    parts = [
        OutgoingPart(
            content_type=part_type,
            length=sum(length for _, length in ranges),
            chunks=lambda ranges=ranges: retrieve.stream_ranges(key, ranges),  # type: ignore[misc]
        )
        for ranges in found.parts
    ]
    return await _multipart(MultipartBody(parts), media_type)
