"""QIDO-RS: Search Transaction (PS3.18 10.6)."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dicomweb_server.dicom.attributes import Level
from dicomweb_server.dicom.matching import parse_search
from dicomweb_server.dicom.media_types import DICOM_JSON, DICOM_XML, MULTIPART_RELATED
from dicomweb_server.web.auth import caller
from dicomweb_server.web.capabilities import produces
from dicomweb_server.web.context import container, index_read, path_uid
from dicomweb_server.web.encoding import json_response
from dicomweb_server.web.media import negotiate_json
from dicomweb_server.web.urls import next_page, urls
from dicomweb_server.web.xml import xml_response


async def _search(request: Request, level: Level) -> Response:
    media_type = negotiate_json(request.headers.get("accept"))
    study_uid = path_uid(request, "study") if "study" in request.path_params else None
    series_uid = path_uid(request, "series") if "series" in request.path_params else None
    search = parse_search(request.query_params.multi_items())
    here = urls(request)
    found = await index_read(
        request,
        container(request).search.search,
        caller(request),
        level,
        search,
        here.resource,
        study_uid,
        series_uid,
    )
    body = here.with_base([orjson.dumps(r).decode() for r in found.results])
    response = (
        xml_response(body)
        if media_type == DICOM_XML
        else await json_response(request, body, media_type)
    )
    for warning in found.warnings:
        # PS3.18 8.3.4: parameters not honoured are reported with Warning: 299.
        response.headers.append("Warning", f'299 dicomweb-server "{warning}"')
    if found.next_offset is not None:
        # RFC 8288: where the next page of results starts.
        response.headers["Link"] = f'<{next_page(request, found.next_offset)}>; rel="next"'
    return response


@produces(DICOM_JSON, f'{MULTIPART_RELATED}; type="{DICOM_XML}"')
async def search_studies(request: Request) -> Response:
    return await _search(request, Level.STUDY)


@produces(DICOM_JSON, f'{MULTIPART_RELATED}; type="{DICOM_XML}"')
async def search_series(request: Request) -> Response:
    return await _search(request, Level.SERIES)


@produces(DICOM_JSON, f'{MULTIPART_RELATED}; type="{DICOM_XML}"')
async def search_instances(request: Request) -> Response:
    return await _search(request, Level.INSTANCE)
